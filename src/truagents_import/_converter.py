"""The one cattrs converter of the package (never cattrs' global one).

Unknown keys are refused, datetimes travel as ISO 8601 strings and paths as strings, so
configuration and reports go to and from dicts, TOML and JSON the same way everywhere.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import cattrs

__all__ = ["converter"]

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
