"""Untrusted text made safe to show and to open (SPEC 8), written once for the whole package.

Remote names are shown with their control characters escaped; cells written to a CSV that people
open in spreadsheets are neutralised when a spreadsheet would run them as a formula.
"""

from __future__ import annotations

__all__ = ["FORMULA_START", "escape_name", "neutralise_cell"]

#: A cell starting with one of these is a formula (or becomes one) in a spreadsheet.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def escape_name(name: str) -> str:
    """Show an untrusted name safely: control characters become escapes (SPEC 8)."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in name)


def neutralise_cell(value: str) -> str:
    """A cell a spreadsheet would execute gets a leading apostrophe (SPEC 8)."""
    return "'" + value if value.startswith(FORMULA_START) else value
