"""Small helpers over an sshfs filesystem: atomic rename, closing, and remote names.

sshfs has no public close and its own ``mv`` falls back to copy-then-delete; these do what the
importer and the uploads need instead (see SFTP-NOTES).
"""

from __future__ import annotations

import contextlib
from pathlib import PurePosixPath
from typing import Any

import asyncssh
from fsspec.asyn import sync

from truagents_import.errors import ConnectError

__all__ = ["close_filesystem", "posix_rename", "remote_name"]


def posix_rename(fs: Any, src: str, dst: str) -> None:
    """Rename on the server with ``posix-rename@openssh.com`` (replaces ``dst`` atomically).

    sshfs's own ``mv`` falls back to copy-then-delete over a shell, which SFTP-only servers
    refuse and which can lose the source; this never falls back.
    """

    async def rename() -> None:
        async with fs._pool.get() as channel:
            await channel.posix_rename(src, dst)

    try:
        sync(fs.loop, rename)
    except asyncssh.SFTPOpUnsupported:
        msg = "the server does not support posix-rename; files cannot be moved into place atomically"
        raise ConnectError(msg) from None


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
