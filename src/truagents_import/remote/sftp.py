"""The SFTP filesystem and small helpers over it: atomic rename, upload, closing, remote names.

:class:`SFTPFileSystem` is sshfs's filesystem whose failures are this library's own exceptions
(:mod:`truagents_import.remote.failures`). sshfs has no public close, its own ``mv`` falls back to
copy-then-delete and its ``put_file`` first creates the parent folder (and fails on ``/``); these
helpers do what the importer and the uploads need instead (see SFTP-NOTES).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Awaitable, Callable
from pathlib import PurePosixPath
from typing import Any

import asyncssh
from fsspec.asyn import sync, sync_wrapper
from sshfs import SSHFileSystem

from truagents_import.errors import ConnectError
from truagents_import.remote.failures import CONNECTION_LOST, is_session_refused, session_refused, translate

__all__ = [
    "SFTP_BLOCK_SIZE",
    "SFTPFileSystem",
    "close_filesystem",
    "open_session",
    "posix_rename",
    "put",
    "quiet_lost_reads",
    "remote_name",
    "rename_no_replace",
]

#: Bytes per SFTP read request for downloads: large requests (SFTP-NOTES: 48 KiB requests are a
#: third slower), below the 256 KiB most servers accept.
SFTP_BLOCK_SIZE = 261120

logger = logging.getLogger(__name__)

#: The coroutine of asyncssh's parallel reads and writes (``SFTPClientFile.read`` of a big block).
_PARALLEL_IO = "_SFTPParallelIO._start_task"

#: The filesystem's coroutines that touch one remote path: what each does, and which argument is the path.
_GUARDED = {
    "_info": ("look up", 0),
    "_ls": ("list", 0),
    "_get_file": ("read", 0),
    "_cat_file": ("read", 0),
    "_put_file": ("write", 1),
    "_pipe_file": ("write", 0),
    "_makedirs": ("create", 0),
    "_mkdir": ("create", 0),
    "_rm_file": ("remove", 0),
    "_rmdir": ("remove", 0),
    "_mv": ("rename", 1),
}


def _guarded(name: str, method: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    operation, index = _GUARDED[name]

    @functools.wraps(method)
    async def wrapper(self: SFTPFileSystem, *args: Any, **kwargs: Any) -> Any:
        try:
            return await method(self, *args, **kwargs)
        except Exception as exc:
            path = str(args[index]) if len(args) > index else "?"
            failure = translate(exc, where=self.where, operation=operation, path=path)
            if failure is exc:
                raise
            raise failure from None

    return wrapper


class SFTPFileSystem(SSHFileSystem):  # type: ignore[misc]
    """sshfs's ``SSHFileSystem`` whose failures name what was being done, to which path, and what to do.

    A refused permission is a :class:`~truagents_import.errors.RemotePermissionError`, a missing
    path a :class:`~truagents_import.errors.RemoteNotFoundError`, a refused SFTP session a
    :class:`~truagents_import.errors.ConnectError`; a lost connection stays asyncssh's own.
    """

    def __init__(self, host: str, **kwargs: Any) -> None:
        #: ``user@host:port``, as messages name the endpoint.
        self.where = f"{kwargs.get('username')}@{host}:{kwargs.get('port', 22)}"
        super().__init__(host, **kwargs)

    def _open(self, path: str, mode: str = "rb", *args: Any, **kwargs: Any) -> Any:
        try:
            return super()._open(path, mode, *args, **kwargs)
        except Exception as exc:
            operation = "read" if "r" in mode else "write"
            failure = translate(exc, where=self.where, operation=operation, path=str(path))
            if failure is exc:
                raise
            raise failure from None


for _name in _GUARDED:
    setattr(SFTPFileSystem, _name, _guarded(_name, getattr(SSHFileSystem, _name)))
# sshfs binds these sync methods to its own coroutines; fsspec makes the others from ours.
SFTPFileSystem.makedirs = sync_wrapper(SFTPFileSystem._makedirs)
SFTPFileSystem.mkdir = sync_wrapper(SFTPFileSystem._mkdir)


def open_session(fs: Any) -> None:
    """Open the filesystem's first SFTP session now, so that a server which accepts the key but refuses
    SFTP fails here, as a :class:`ConnectError` saying so, not on the first file operation."""

    async def first() -> None:
        async with fs._pool.get():
            pass

    async def reason() -> str | None:
        try:
            async with fs.client.start_sftp_client():
                return None
        except (asyncssh.Error, OSError) as exc:
            return getattr(exc, "reason", None) or str(exc) or type(exc).__name__

    try:
        sync(fs.loop, first)
    except ValueError as exc:
        if not is_session_refused(exc):
            raise
        said = None
        with contextlib.suppress(Exception):
            said = sync(fs.loop, reason, timeout=30)
        raise session_refused(getattr(fs, "where", "the server"), said) from None
    except asyncssh.SFTPError as exc:
        raise session_refused(getattr(fs, "where", "the server"), exc.reason) from None


def quiet_lost_reads(loop: asyncio.AbstractEventLoop) -> None:
    """Keep asyncio from printing "Task exception was never retrieved" for the parallel reads that a
    lost connection ends; every other unretrieved exception is reported as before.

    When the connection drops under ``SFTPClientFile.read``, asyncssh's parallel reader
    (``_SFTPParallelIO.iter``) raises the first ``ConnectionLost`` it meets and leaves the other
    read tasks, which failed the same way, unretrieved: asyncio prints a traceback for each when
    they are collected. The download itself already failed with that error, and is reported.
    """
    if getattr(loop, "_truagents_quiet_lost_reads", False):
        return
    previous = loop.get_exception_handler()

    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc, task = context.get("exception"), context.get("future")
        coro = task.get_coro() if isinstance(task, asyncio.Task) else None
        lost = isinstance(exc, (*CONNECTION_LOST, ConnectionError))
        if lost and getattr(coro, "__qualname__", "") == _PARALLEL_IO:
            logger.debug("a parallel SFTP read ended with the lost connection: %s", exc)
            return
        if previous is not None:
            previous(loop, context)
        else:
            loop.default_exception_handler(context)

    loop.set_exception_handler(handler)
    loop._truagents_quiet_lost_reads = True  # type: ignore[attr-defined]


def put(fs: Any, what: str | bytes, remote: str) -> None:
    """Write a local file (a path) or ``bytes`` to ``remote`` over one SFTP session, creating no folder.

    sshfs's ``put_file`` and ``pipe_file`` create the parent folder first, which fails on ``/``
    and on a folder the user may write into but not look up.
    """

    async def send() -> None:
        async with fs._pool.get() as channel:
            if isinstance(what, bytes):
                async with channel.open(remote, "wb") as f:
                    await f.write(what)
            else:
                await channel.put(what, remote)

    _run(fs, send, "write", remote)


def _run(fs: Any, work: Callable[[], Awaitable[None]], operation: str, path: str) -> None:
    try:
        sync(fs.loop, work)
    except Exception as exc:
        failure = translate(exc, where=getattr(fs, "where", "the server"), operation=operation, path=path)
        if failure is exc:
            raise
        raise failure from None


def posix_rename(fs: Any, src: str, dst: str) -> None:
    """Rename on the server with ``posix-rename@openssh.com`` (replaces ``dst`` atomically).

    sshfs's own ``mv`` falls back to copy-then-delete over a shell, which SFTP-only servers
    refuse and which can lose the source; this never falls back.
    """

    async def rename() -> None:
        async with fs._pool.get() as channel:
            try:
                await channel.posix_rename(src, dst)
            except asyncssh.SFTPOpUnsupported:
                msg = "the server does not support posix-rename; files cannot be moved into place atomically"
                raise ConnectError(msg) from None

    _run(fs, rename, "rename", dst)


def rename_no_replace(fs: Any, src: str, dst: str) -> None:
    """Rename on the server with SFTP's own ``rename``, which never replaces ``dst``: the server refuses
    when ``dst`` exists (OpenSSH links then unlinks, so no other rename can slip in between).

    The refusal is the server's error (OpenSSH says only "Failure"): callers look at ``dst`` to tell.
    """

    async def rename() -> None:
        async with fs._pool.get() as channel:
            await channel.rename(src, dst)

    _run(fs, rename, "rename", dst)


def close_filesystem(fs: Any) -> None:
    """Close an sshfs filesystem's channels and connection (sshfs has no public close)."""
    pool, stack = getattr(fs, "_pool", None), getattr(fs, "_stack", None)
    if pool is None or stack is None:
        return

    async def close() -> None:
        try:
            await pool.close()
        finally:
            with contextlib.suppress(OSError, asyncssh.Error):
                await stack.aclose()

    # A dead connection may fail to close; there is nothing left to keep.
    with contextlib.suppress(Exception):
        sync(fs.loop, close, timeout=10)


def remote_name(path: str) -> str:
    """The last component of a remote path."""
    return PurePosixPath(path).name
