"""Rules on plain text that several layers share, each written once.

- File names: which names are uploads in progress or hidden (:func:`is_temporary`) and whether a
  name matches a source's pattern, a glob or ``re:`` and a regex (:func:`name_matches`).
- Values as settings and listings give them: durations such as ``24h`` (:func:`parse_duration`)
  and the modification time of a listing entry (:func:`listed_time`).
- Secrets: a password in a connection string, and the values of secret options, become ``***``
  wherever they would be shown (:func:`mask_url`, :func:`secret_values`, :func:`mask_values`).

Nothing here imports anything of the package.
"""

from __future__ import annotations

import fnmatch
import re
import urllib.parse
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

__all__ = [
    "plural",
    "MASK",
    "TEMPORARY_SUFFIXES",
    "is_temporary",
    "listed_time",
    "mask_url",
    "mask_values",
    "name_matches",
    "parse_duration",
    "secret_values",
    "url_password",
]

# -- file names ---------------------------------------------------------------------------------

#: Names ending like this are uploads in progress and never importable (SPEC 4).
TEMPORARY_SUFFIXES = (".part", ".tmp", ".filepart", ".partial")


def is_temporary(name: str) -> bool:
    """Whether a file name is an upload in progress or hidden (never importable)."""
    return name.startswith(".") or name.lower().endswith(TEMPORARY_SUFFIXES)


def name_matches(pattern: str, name: str, *, ignore_case: bool = False) -> bool:
    """Whether a file name matches a source's pattern: a glob (case-sensitive), or a regex written
    ``re:...`` that must match the whole name. ``ignore_case`` folds case on both sides."""
    if pattern.startswith("re:"):
        regex = re.compile(pattern[3:], re.IGNORECASE if ignore_case else 0)
        return regex.fullmatch(name) is not None
    if ignore_case:
        return fnmatch.fnmatchcase(name.casefold(), pattern.casefold())
    return fnmatch.fnmatchcase(name, pattern)


# -- settings and listings ----------------------------------------------------------------------

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> timedelta:
    """``"90s"``, ``"15m"``, ``"24h"``, ``"7d"``, ``"2w"`` -> a timedelta."""
    m = _DURATION.match(text)
    if not m:
        msg = f"expect_every must be a duration like '24h' or '7d', got {text!r}"
        raise ValueError(msg)
    return timedelta(seconds=float(m.group(1)) * _UNITS[m.group(2)])


def listed_time(entry: Mapping[str, Any]) -> datetime:
    """The modification time of an fsspec listing entry, in UTC (its creation time when it has no
    modification time, and the epoch when it has neither)."""
    value = entry.get("mtime") or entry.get("created")
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, tz=UTC)
    return datetime.fromtimestamp(0, tz=UTC)


# -- secrets ------------------------------------------------------------------------------------

#: What a secret is shown as.
MASK = "***"
_KEYWORD_PASSWORD = re.compile(r"(\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)
_SECRET_KEYS = re.compile(r"pass|secret|token|key|credential", re.IGNORECASE)


def mask_url(url: str) -> str:
    """The connection string with its password (if any) replaced by ``***``.

    Handles URLs (``postgresql://user:secret@host/db``, ``?password=secret``) and libpq
    keyword strings (``host=h password=secret``).
    """
    if "://" not in url:
        return _KEYWORD_PASSWORD.sub(lambda m: m.group(1) + MASK, url)
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return "<an unparsable PostgreSQL URL>"
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hostinfo = netloc.rpartition("@")
        user, sep, _password = userinfo.partition(":")
        netloc = f"{user}:{MASK}@{hostinfo}" if sep else netloc
    query = parts.query
    if query:
        pairs = urllib.parse.parse_qsl(query, keep_blank_values=True)
        query = "&".join(
            f"{urllib.parse.quote(k)}={MASK if k.lower() == 'password' else urllib.parse.quote(v)}" for k, v in pairs
        )
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def url_password(value: str) -> str | None:
    """The password in a URL's ``user:password@`` part, if it has one."""
    try:
        return urllib.parse.urlsplit(value).password or None
    except ValueError:
        return None


def secret_values(options: Mapping[str, object]) -> set[str]:
    """The values of ``options`` that must never be shown: those of options named like a secret
    (``password``, ``api_token``, ``private_key`` ...) and the passwords inside URLs."""
    values: set[str] = set()
    for name, value in options.items():
        if isinstance(value, str) and value:
            if _SECRET_KEYS.search(name):
                values.add(value)
            password = url_password(value)
            if password:
                values.add(password)
    return values


def mask_values(text: str, values: Iterable[str]) -> str:
    """``text`` with every occurrence of each of ``values`` replaced by ``***`` (longest first)."""
    for value in sorted((v for v in values if v), key=len, reverse=True):
        text = text.replace(value, MASK)
    return text


def plural(n: int, noun: str) -> str:
    """``1 file``, ``2 files``."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"
