"""What the ``postgres`` sink and the PostgreSQL state store share: loading psycopg lazily,
connecting, and keeping passwords out of every message.

psycopg is an optional dependency (``pip install 'truagents-import[postgres]'``): nothing here
imports it at module level, so the core never needs it.
"""

from __future__ import annotations

import hashlib
import re
import urllib.parse
from typing import TYPE_CHECKING, Any

from truagents_import.errors import ConfigError, PostgresError

if TYPE_CHECKING:
    import psycopg

__all__ = ["PostgresError", "connect", "lock_key", "mask_url", "psycopg_module", "scrub"]

INSTALL_HINT = "pip install 'truagents-import[postgres]'"

_KEYWORD_PASSWORD = re.compile(r"(\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)
_MASK = "***"


def psycopg_module(what: str) -> Any:
    """Import psycopg, or raise a :class:`ConfigError` that says how to install it."""
    try:
        import psycopg
    except ImportError:
        msg = f"{what} needs psycopg 3, which is not installed: {INSTALL_HINT}"
        raise ConfigError(msg) from None
    return psycopg


def mask_url(url: str) -> str:
    """The connection string with its password (if any) replaced by ``***``.

    Handles URLs (``postgresql://user:secret@host/db``, ``?password=secret``) and libpq
    keyword strings (``host=h password=secret``).
    """
    if "://" not in url:
        return _KEYWORD_PASSWORD.sub(lambda m: m.group(1) + _MASK, url)
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return "<an unparsable PostgreSQL URL>"
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hostinfo = netloc.rpartition("@")
        user, sep, _password = userinfo.partition(":")
        netloc = f"{user}:{_MASK}@{hostinfo}" if sep else netloc
    query = parts.query
    if query:
        pairs = urllib.parse.parse_qsl(query, keep_blank_values=True)
        query = "&".join(
            f"{urllib.parse.quote(k)}={_MASK if k.lower() == 'password' else urllib.parse.quote(v)}" for k, v in pairs
        )
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def _password(url: str) -> str | None:
    try:
        from psycopg.conninfo import conninfo_to_dict
    except ImportError:  # pragma: no cover - only called once psycopg imported
        return None
    try:
        value = conninfo_to_dict(url).get("password")
    except Exception:
        return None
    return None if value is None else str(value)


def scrub(message: str, url: str) -> str:
    """A message on one line, with the URL's password removed wherever it appears."""
    message = " ".join(message.split())
    password = _password(url)
    if password:
        for form in {password, urllib.parse.quote(password, safe="")}:
            message = message.replace(form, _MASK)
    return message


def connect(url: str, what: str, *, autocommit: bool, connect_timeout: int = 10) -> psycopg.Connection[Any]:
    """Open a connection, or raise a :class:`ConfigError` that names the (masked) URL and what to check."""
    pg = psycopg_module(what)
    try:
        conn: psycopg.Connection[Any] = pg.connect(url, autocommit=autocommit, connect_timeout=connect_timeout)
    except pg.Error as exc:
        detail = scrub(str(exc), url)
        msg = (
            f"{what} cannot connect to {mask_url(url)}: {detail}; check that the server is up, the URL's host, "
            "port and database, and the credentials (a password can also come from PGPASSWORD or ~/.pgpass)"
        )
        raise ConfigError(msg) from None
    return conn


def lock_key(*parts: str) -> int:
    """A signed 64-bit advisory-lock key for ``parts`` (stable across processes and machines)."""
    digest = hashlib.sha256("\0".join(("truagents_import", *parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)
