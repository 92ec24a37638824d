"""Near misses: names in a folder that almost match a source's pattern, and how they differ.

Matching is the source's own rule (:func:`truagents_import._text.name_matches`); this module only
tries the usual ways a name goes wrong: another case, another extension, another date format, a
similar spelling.
"""

from __future__ import annotations

import difflib
import posixpath
import re
from collections.abc import Callable, Sequence
from datetime import date

import attrs

from truagents_import._text import is_temporary, name_matches

__all__ = ["NearMiss", "near_misses"]


@attrs.frozen
class NearMiss:
    """A name in the folder that almost matches the pattern, and how it differs."""

    name: str
    reason: str


_DATE_PATTERNS = (
    (re.compile(r"(?<!\d)(\d{4})([-_.]?)(\d{2})\2(\d{2})(?!\d)"), ("y", "m", "d")),
    (re.compile(r"(?<!\d)(\d{2})([-_.]?)(\d{2})\2(\d{4})(?!\d)"), ("d", "m", "y")),
    (re.compile(r"(?<!\d)(\d{2})([-_.]?)(\d{2})\2(\d{4})(?!\d)"), ("m", "d", "y")),
)
_DATE_FORMATS = (
    "%Y-%m-%d",
    "%Y%m%d",
    "%Y_%m_%d",
    "%Y.%m.%d",
    "%d-%m-%Y",
    "%d.%m.%Y",
    "%d%m%Y",
    "%d_%m_%Y",
    "%m-%d-%Y",
    "%m%d%Y",
)
#: Pattern syntax and digits, left out when a name's spelling is compared with the pattern's.
_SYNTAX = re.compile(r"^re:|\\[A-Za-z]|\(\?P<\w+>|\[[^\]]*\]|\{[^}]*\}|[*?+()|^$\\]|\d")


def _other_date_format(name: str, matches: Callable[[str], bool]) -> str | None:
    for regex, order in _DATE_PATTERNS:
        for m in regex.finditer(name):
            parts = dict(zip(order, (m.group(1), m.group(3), m.group(4)), strict=True))
            try:
                day = date(int(parts["y"]), int(parts["m"]), int(parts["d"]))
            except ValueError:
                continue
            for fmt in _DATE_FORMATS:
                candidate = name[: m.start()] + day.strftime(fmt) + name[m.end() :]
                if candidate != name and matches(candidate):
                    return candidate
    return None


def _extensions(pattern: str) -> list[str]:
    """Extensions to try on a name: the glob's own (``.csv`` of ``contacts_*.csv``) and the usual ones."""
    found = []
    tail = posixpath.basename(pattern)
    if not pattern.startswith("re:") and "." in tail:
        ext = tail[tail.rindex(".") :]
        if not any(c in ext for c in "*?["):
            found.append(ext)
    return found + [e for e in (".csv", ".csv.gz", ".txt", ".tsv", ".gz") if e not in found]


def _near_miss(name: str, pattern: str, extensions: list[str], literal: str) -> NearMiss | None:
    """How a name that does not match ``pattern`` nearly does, if it does."""

    def matches(candidate: str) -> bool:
        return name_matches(pattern, candidate)

    if name_matches(pattern, name, ignore_case=True):
        return NearMiss(name, "other case (patterns are case-sensitive)")
    dots = [i for i, c in enumerate(name) if c == "." and i > 0]
    other = next((e for i in dots for e in extensions if matches(name[:i] + e)), None)
    if other is not None:
        return NearMiss(name, f"other extension (the pattern wants {other})")
    dated = _other_date_format(name, matches)
    if dated is not None:
        return NearMiss(name, f"another date format (the pattern wants names like {dated})")
    shape = re.sub(r"\d+", "", name).casefold()
    if literal and difflib.SequenceMatcher(None, literal, shape).ratio() >= 0.75:
        return NearMiss(name, "similar name")
    return None


def near_misses(names: Sequence[str], pattern: str) -> list[NearMiss]:
    """Names that do not match ``pattern`` (a glob, or ``re:`` and a regex) but nearly do: other
    case, other extension, another date format, or a similar spelling. Hidden and temporary
    names are left out."""
    extensions = _extensions(pattern)
    literal = _SYNTAX.sub("", pattern).casefold()
    found = []
    for name in names:
        if is_temporary(name) or name_matches(pattern, name):
            continue
        miss = _near_miss(name, pattern, extensions, literal)
        if miss is not None:
            found.append(miss)
    return found
