"""An example truagents_import plugin for a vendor's contact exports.

The entry point ``vendor = "truagents_import_vendor"`` (group ``truagents_import``) points at
this module, so its hook implementations are the ``@hookimpl`` functions imported here.
"""

from truagents_import_vendor.mapping import VENDOR_COLUMNS, map_columns
from truagents_import_vendor.sink import AuditSink, register_sinks
from truagents_import_vendor.validators import ROLE_ADDRESSES, validate_contacts

__all__ = ["ROLE_ADDRESSES", "VENDOR_COLUMNS", "AuditSink", "map_columns", "register_sinks", "validate_contacts"]
