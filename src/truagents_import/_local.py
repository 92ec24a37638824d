"""Failures of this machine's own resources, recognised and worded once: a full disk, and a database
that another process holds locked past the time waited for it.

The importer (its spool folder), the state database and the sinks all meet them. Each turns one
into a :class:`~truagents_import.errors.LocalResourceError` through here, so that the message
always names the path, says what happened, and what to do; the importer then fails that one file
and goes on with the next.
"""

from __future__ import annotations

import contextlib
import errno
import sqlite3
from collections.abc import Iterator
from pathlib import Path

from truagents_import.errors import LocalResourceError

__all__ = ["database_locked", "disk_full", "is_disk_full", "is_locked", "spool_full", "sqlite_failures"]

#: ``errno`` values that mean "no room left": the disk, or the user's quota.
_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})
#: SQLite's result codes for a lock held by another connection (primary codes, without the extended bits).
_BUSY = frozenset({sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED})


def is_disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` says a disk (or quota) is full: ``ENOSPC``, ``EDQUOT``, or SQLite's ``SQLITE_FULL``."""
    if isinstance(exc, sqlite3.Error):
        code = getattr(exc, "sqlite_errorcode", None)
        return (code is not None and code & 0xFF == sqlite3.SQLITE_FULL) or "disk is full" in str(exc)
    return isinstance(exc, OSError) and exc.errno in _FULL


def is_locked(exc: BaseException) -> bool:
    """Whether ``exc`` is SQLite giving up on a lock another connection holds (``database is locked``)."""
    if not isinstance(exc, sqlite3.OperationalError):
        return False
    code = getattr(exc, "sqlite_errorcode", None)
    return (code is not None and code & 0xFF in _BUSY) or "is locked" in str(exc)


def _said(exc: BaseException) -> str:
    """What the operating system or SQLite said, in a few words."""
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__


def spool_full(spool: Path, exc: BaseException) -> LocalResourceError:
    """The error for the run's spool folder running out of space while a file downloaded or was staged."""
    msg = (
        f"the spool folder {spool} ran out of space ({_said(exc)}): nothing of this file reached the sink, "
        f"and the next run imports it again. Free space in {spool.parent}, or set TMPDIR to a folder on a disk "
        "with room for about twice the largest file (its download and its staging)"
    )
    return LocalResourceError(msg, path=str(spool))


def disk_full(what: str, path: Path | str, exc: BaseException) -> LocalResourceError:
    """The error for a full disk under ``what`` (``"csv sink"``, ``"state database"``) at ``path``."""
    msg = (
        f"{what} {path}: the disk is full ({_said(exc)}); nothing of this file was kept. Free space on the disk "
        f"that holds {Path(path).parent}, then run the import again"
    )
    return LocalResourceError(msg, path=str(path))


def database_locked(what: str, path: Path | str, waited: float, setting: str) -> LocalResourceError:
    """The error for ``what`` (``"state database"``, ``"sqlite sink"``) at ``path``, locked by another
    process for longer than ``waited`` seconds; ``setting`` names the option that sets the wait."""
    msg = (
        f"{what} {path} is locked by another process (waited {waited:g} s). Find what holds it (`fuser {path}`: "
        "another truagents-import, or a program that opened the database and left a transaction open), let it "
        f"finish or close it, then run the import again ({setting} sets how long to wait)"
    )
    return LocalResourceError(msg, path=str(path))


@contextlib.contextmanager
def sqlite_failures(what: str, path: Path | str, lock_timeout: float, setting: str) -> Iterator[None]:
    """A SQLite lock held past ``lock_timeout``, or a full disk, as the library's error naming ``what``."""
    try:
        yield
    except sqlite3.Error as exc:
        if is_locked(exc):
            raise database_locked(what, path, lock_timeout, setting) from None
        if is_disk_full(exc):
            raise disk_full(what, path, exc) from None
        raise
