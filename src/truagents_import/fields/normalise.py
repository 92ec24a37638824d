"""The other field normalisers of SPEC 3: time zones, tags, booleans and full names.

Each takes one cell's text and returns the normalised value, or raises :class:`FieldError`
whose ``code`` is the problem code (``invalid_<field>``).
"""

from __future__ import annotations

import difflib
import functools
import re
import zoneinfo

import phonenumbers
from phonenumbers import timezone as phone_timezone

from truagents_import.errors import FieldError

__all__ = ["infer_timezone", "normalise_bool", "normalise_tags", "normalise_timezone", "read_flag", "split_full_name"]

#: Names in the zoneinfo folder that are not IANA time zones for people (``localtime`` is the
#: machine's own setting, ``Factory`` means "not set").
_NOT_ZONES = frozenset({"localtime", "posixrules", "Factory"})


@functools.cache
def _zones_by_folded_name() -> dict[str, str]:
    return {name.casefold(): name for name in zoneinfo.available_timezones() if name not in _NOT_ZONES}


@functools.lru_cache(maxsize=1024)
def _timezone_error(value: str) -> FieldError:
    zones = _zones_by_folded_name()
    close = difflib.get_close_matches(value.casefold(), list(zones), n=1, cutoff=0.8)
    hint = f"did you mean {zones[close[0]]}?" if close else "for example America/New_York or Europe/Paris"
    return FieldError("invalid_timezone", f"not an IANA time zone name: {hint}")


@functools.lru_cache(maxsize=4096)
def _timezone_name(value: str) -> str | None:
    return _zones_by_folded_name().get(value.strip().casefold())


def normalise_timezone(value: str) -> str:
    """Match an IANA time zone name case-insensitively and return its canonical spelling.

    ``america/new_york`` -> ``America/New_York``. Names are those of the machine's time zone
    database (``zoneinfo.available_timezones()``); a link such as ``US/Eastern`` is kept as
    written, not resolved. Answers are remembered per distinct value (files repeat a few zones).
    """
    name = _timezone_name(value)
    if name is None:
        error = _timezone_error(value.strip())
        raise FieldError(error.code, error.message)
    return name


def infer_timezone(phone_e164: str) -> str | None:
    """The single time zone phonenumbers gives for a number, or ``None`` when it gives none or several."""
    number = phonenumbers.parse(phone_e164, None)
    zones = phone_timezone.time_zones_for_number(number)
    if len(zones) != 1:
        return None
    return _zones_by_folded_name().get(str(zones[0]).casefold())


_TAG_SPLIT = re.compile(r"[;,|]| ::: ")


def normalise_tags(value: str) -> tuple[str, ...]:
    """Split tags on ``;``, ``,``, ``|`` and Google's `` ::: ``; strip them and the quotes around
    them (``"VIP"``), drop empties and duplicates, keep order."""
    return _split_tags(value) if value else ()


@functools.lru_cache(maxsize=4096)
def _split_tags(value: str) -> tuple[str, ...]:
    # Remembered per distinct cell: files repeat a limited set of tag combinations.
    return tuple(dict.fromkeys(t for t in (_unquote(p.strip()) for p in _TAG_SPLIT.split(value)) if t))


def _unquote(tag: str) -> str:
    if len(tag) >= 2 and tag[0] == tag[-1] and tag[0] in "\"'":
        return tag[1:-1].strip()
    return tag


_TRUE = frozenset({"true", "yes", "y", "1"})
_FALSE = frozenset({"false", "no", "n", "0"})


def normalise_bool(value: str) -> bool | None:
    """true/false, yes/no, y/n, 1/0 in any case; empty means unknown (``None``).

    Raises :class:`FieldError` with code ``invalid_unsubscribed`` (the only boolean field).
    """
    return read_flag(value, _TRUE, _FALSE, "expected true/false, yes/no, y/n or 1/0 (any case), or empty for unknown")


def read_flag(value: str, true: frozenset[str], false: frozenset[str], expected: str) -> bool | None:
    """``value`` (any case, stripped) as True when it is one of ``true``, False for ``false``, None when
    empty; otherwise :class:`FieldError` ``invalid_unsubscribed`` saying what was ``expected``."""
    v = value.strip().lower()
    if not v:
        return None
    if v in true:
        return True
    if v in false:
        return False
    raise FieldError("invalid_unsubscribed", expected)


def split_full_name(value: str) -> tuple[str | None, str | None]:
    """Split a full name at its last space: ``"Mary Ann Smith"`` -> ``("Mary Ann", "Smith")``.

    Runs of whitespace count as one space; a single word is a first name only.
    """
    name = " ".join(value.split())
    if not name:
        return None, None
    first, _, last = name.rpartition(" ")
    if not first:
        return last, None
    return first, last
