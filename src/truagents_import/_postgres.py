"""What the ``postgres`` sink and the PostgreSQL state store share: loading psycopg lazily,
connecting, and keeping passwords out of every message.

psycopg is an optional dependency (``pip install 'truagents-import[postgres]'``): nothing here
imports it at module level, so the core never needs it.
"""

from __future__ import annotations

import hashlib
import urllib.parse
from typing import TYPE_CHECKING, Any

from truagents_import._text import mask_url, mask_values
from truagents_import.errors import ConfigError, PostgresError

if TYPE_CHECKING:
    import psycopg

__all__ = ["PostgresError", "connect", "lock_key", "mask_url", "psycopg_module", "scrub"]

INSTALL_HINT = "pip install 'truagents-import[postgres]'"


def psycopg_module(what: str) -> Any:
    """Import psycopg, or raise a :class:`ConfigError` that says how to install it."""
    try:
        import psycopg
    except ImportError:
        msg = f"{what} needs psycopg 3, which is not installed: {INSTALL_HINT}"
        raise ConfigError(msg) from None
    return psycopg


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
        message = mask_values(message, {password, urllib.parse.quote(password, safe="")})
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
