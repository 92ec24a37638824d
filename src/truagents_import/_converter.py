"""The one cattrs converter of the package (never cattrs' global one).

Unknown keys are refused, datetimes travel as ISO 8601 strings, paths as strings and tuples as
lists, so configuration and reports go to and from dicts, TOML and JSON the same way everywhere.
Every object that becomes a dict (``to_dict()``, ``--json``) goes through :func:`to_dict`; a class
whose document differs from its fields (a renamed key, an added total) registers its hook next to
its definition.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import cattrs

__all__ = ["converter", "to_dict"]

converter = cattrs.Converter(forbid_extra_keys=True)
converter.register_unstructure_hook(datetime, lambda d: d.isoformat())
converter.register_structure_hook(datetime, lambda v, _: v if isinstance(v, datetime) else datetime.fromisoformat(v))
converter.register_unstructure_hook(Path, str)


def _strict_bool(value: object, _: type) -> bool:
    # cattrs would call bool("false") and get True: only real booleans are accepted.
    if isinstance(value, bool):
        return value
    raise TypeError(f"expected true or false (a TOML boolean, without quotes), got {value!r}")


converter.register_structure_hook(bool, _strict_bool)
converter.register_structure_hook(Path, lambda v, _: Path(v))


def to_dict(obj: object) -> dict[str, Any]:
    """An attrs instance as a JSON-ready dict, through the converter."""
    data: dict[str, Any] = converter.unstructure(obj)
    return data
