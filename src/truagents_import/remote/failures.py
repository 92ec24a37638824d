"""The one place where failures of the SSH/SFTP layer become this library's own exceptions.

asyncssh and sshfs fail in their own words: ``SFTPPermissionDenied('Permission denied')`` with no
path, a ``FileNotFoundError`` that names nothing, ``ValueError: Can't create any SFTP connections!``
when the server accepts the key and then refuses the SFTP session. :func:`translate` turns each into
a :class:`~truagents_import.errors.RemoteError` or :class:`~truagents_import.errors.ConnectError`
that says what was being done, to which path, and what to do next. A lost connection is left as
it is: the callers reconnect and try once more on those (:data:`CONNECTION_LOST`).
"""

from __future__ import annotations

import errno
import posixpath

import asyncssh

from truagents_import._safety import escape_name
from truagents_import.errors import (
    ConnectError,
    RemoteError,
    RemoteNotFoundError,
    RemotePermissionError,
    TruagentsImportError,
)

__all__ = ["CONNECTION_LOST", "OPERATIONS", "describe", "is_session_refused", "session_refused", "translate"]

#: Errors that mean the connection is gone, not that the operation failed: never translated here.
CONNECTION_LOST = (
    asyncssh.SFTPNoConnection,
    asyncssh.SFTPConnectionLost,
    asyncssh.ConnectionLost,
    asyncssh.DisconnectError,
    asyncssh.ChannelOpenError,
)

#: Each operation: how a message says it, and the permission the user needs on the server for it
#: (``{folder}`` is the path's folder).
OPERATIONS: dict[str, tuple[str, str]] = {
    "list": ("list the folder", "read and list that folder"),
    "look up": ("look up", "list {folder}"),
    "read": ("read", "read that file"),
    "write": ("write", "write into {folder}"),
    "create": ("create the folder", "create folders in {folder}"),
    "rename": ("rename a file into", "rename files in {folder}"),
    "remove": ("remove", "remove files from {folder}"),
}

#: sshfs's words when no SFTP channel could be opened at all.
_NO_SFTP = "Can't create any SFTP connections!"


def is_session_refused(exc: BaseException) -> bool:
    """Whether ``exc`` is sshfs saying that the server opened no SFTP session at all."""
    return isinstance(exc, ValueError) and str(exc) == _NO_SFTP


def session_refused(where: str, reason: str | None = None) -> ConnectError:
    """The error for a server that accepted the key, then refused the SFTP session (exit status 3)."""
    user = where.split("@", 1)[0]
    said = f" ({escape_name(reason)})" if reason else ""
    msg = (
        f"{where} accepted the key but refused the SFTP session{said}: {user} may log in but not use SFTP. "
        f"Ask the server's owner to enable SFTP for {user} (`Subsystem sftp internal-sftp`, or "
        "`ForceCommand internal-sftp`, in sshd_config); with `ChrootDirectory`, that folder and every folder "
        "above it must be owned by root and writable by no one else (the server's log names the one that is not)"
    )
    return ConnectError(msg)


def translate(exc: BaseException, *, where: str, operation: str, path: str) -> BaseException:
    """The library's exception for ``exc``, raised while doing ``operation`` (a key of
    :data:`OPERATIONS`) to ``path`` as ``where`` (``user@host:port``).

    ``exc`` itself when it is already the library's, when the connection was lost (callers
    reconnect on those), or when it is nothing the SFTP layer says.
    """
    if isinstance(exc, (TruagentsImportError, *CONNECTION_LOST)):
        return exc
    if is_session_refused(exc):
        return session_refused(where)
    doing, need = OPERATIONS.get(operation, (operation, operation))
    shown = escape_name(path)
    need = need.format(folder=escape_name(posixpath.dirname(path.rstrip("/")) or "/"))
    user = where.split("@", 1)[0]
    if isinstance(exc, asyncssh.SFTPPermissionDenied | PermissionError):
        said = getattr(exc, "reason", None) or ""
        said = f"; the server says: {escape_name(said)}" if said.strip().lower() != "permission denied" else ""
        msg = (
            f"permission denied on the server: {user} may not {doing} {shown} ({where}{said}). This is a "
            f"permission problem on the server, not on this machine: ask the server's owner to let {user} {need}"
        )
        return RemotePermissionError(msg, path=path, operation=operation, code=errno.EACCES)
    if isinstance(exc, asyncssh.SFTPNoSuchFile | asyncssh.SFTPNoSuchPath | FileNotFoundError):
        msg = f"cannot {doing} {shown}: it does not exist on the server ({where}; paths are as the server shows them)"
        return RemoteNotFoundError(msg, path=path, operation=operation, code=errno.ENOENT)
    if isinstance(exc, asyncssh.SFTPError):
        reason = escape_name(exc.reason or type(exc).__name__)
        return RemoteError(f"the server could not {doing} {shown} ({where}): {reason}", path=path, operation=operation)
    return exc


def describe(exc: BaseException, where: str | None = None) -> str:
    """A lost or failed connection in a few words, for a message (never a traceback)."""
    reason = getattr(exc, "reason", None) or getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    if isinstance(exc, CONNECTION_LOST | ConnectionError | TimeoutError):
        at = f" to {where}" if where else ""
        return f"the connection{at} was lost: {escape_name(reason)}; run the command again"
    return escape_name(reason)
