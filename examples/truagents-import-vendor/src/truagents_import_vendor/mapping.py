"""The vendor's column names, mapped to contact fields."""

from __future__ import annotations

from truagents_import import DataSource, hookimpl
from truagents_import.fields.mapping import fold_header

__all__ = ["VENDOR_COLUMNS", "map_columns"]

#: The vendor's header -> contact field (or ``attributes.<name>`` to keep a column under a new name).
VENDOR_COLUMNS: dict[str, str] = {
    "EMAIL_ADDR_1": "email",
    "EMAIL_ADDR_2": "attributes.secondary_email",
    "MOB_NO": "phone",
    "CUST_REF": "external_id",
    "FIRST_NM": "first_name",
    "LAST_NM": "last_name",
    "OPT_OUT_FLG": "unsubscribed",
}

# Headers compare like the built-in aliases: case, spaces, "_" and "-" do not matter.
_BY_FOLDED = {fold_header(column): field for column, field in VENDOR_COLUMNS.items()}


@hookimpl
def map_columns(header: list[str], source: DataSource) -> dict[str, str]:
    """Map the vendor's columns that this header has; leave every other column alone."""
    return {column: _BY_FOLDED[fold_header(column)] for column in header if fold_header(column) in _BY_FOLDED}
