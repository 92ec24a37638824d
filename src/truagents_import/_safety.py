"""Untrusted text made safe to show and to open (SPEC 8), written once for the whole package.

Remote names are shown with their control characters, DEL and bidirectional controls escaped,
in text output (:func:`escape_name`) and in JSON output (:func:`json_safe`, which keeps the value
exact); cells written to a CSV that people open in spreadsheets are neutralised when a spreadsheet
would run them as a formula.
"""

from __future__ import annotations

import re

__all__ = ["BIDI_CONTROLS", "FORMULA_START", "escape_name", "is_unsafe", "json_safe", "neutralise_cell", "quoted"]

#: A cell starting with one of these is a formula (or becomes one) in a spreadsheet.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")

#: Bidirectional embeddings, overrides and isolates (U+202A-U+202E, U+2066-U+2069): shown raw, they
#: reorder the text around them (``invoice_<U+202E>vsc.exe`` reads as ``invoice_exe.csv``).
BIDI_CONTROLS = frozenset(map(chr, [*range(0x202A, 0x202F), *range(0x2066, 0x206A)]))

#: In JSON text, a raw character that is not printable can only be inside a string (json.dumps
#: writes the structure with newlines and spaces only).
_JSON_UNSAFE = re.compile(r"[^\n ]")


def is_unsafe(c: str) -> bool:
    """Whether one character is escaped when shown: control characters (DEL too), bidirectional
    controls, and every other character Python does not call printable (format, separator, unassigned)."""
    return c in BIDI_CONTROLS or not c.isprintable()


def escape_name(name: str) -> str:
    """Show an untrusted name safely: control characters, DEL and bidirectional controls become escapes (SPEC 8)."""
    return "".join(repr(c)[1:-1] if is_unsafe(c) else c for c in name)


def quoted(text: str) -> str:
    """Text in single quotes, escaped like a name, but with its backslashes as written (a regex
    pattern ``re:contacts_\\d+`` is shown as the configuration has it, not doubled as ``repr`` would)."""
    return f"'{escape_name(text)}'"


def json_safe(text: str) -> str:
    """JSON text with every unsafe character in its strings written as a ``\\uXXXX`` escape.

    The document means exactly the same (a JSON reader gets the original names back); only a
    terminal or a log viewer no longer sees the raw characters.
    """
    if text.replace("\n", "").isprintable() and not BIDI_CONTROLS.intersection(text):
        return text  # the usual case, checked at C speed
    return "".join(_json_escape(c) if is_unsafe(c) and _JSON_UNSAFE.match(c) else c for c in text)


def _json_escape(c: str) -> str:
    code = ord(c)
    if code > 0xFFFF:  # outside the BMP: a surrogate pair, as JSON writes it
        code -= 0x10000
        return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"
    return f"\\u{code:04x}"


def neutralise_cell(value: str) -> str:
    """A cell a spreadsheet would execute gets a leading apostrophe (SPEC 8)."""
    return "'" + value if value.startswith(FORMULA_START) else value
