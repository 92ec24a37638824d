"""A remote file brought to the local spool once (hashed on the way), and its rows opened from there.

Import, preview and :meth:`DataSource.read` all fetch through here: one retry on a fresh
connection when the server dropped the old one (SFTP-NOTES: a dead sshfs instance stays dead).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING

import asyncssh

from truagents_import._safety import escape_name
from truagents_import.reading import Shape, open_rows

if TYPE_CHECKING:
    from truagents_import.source import DataSource, RemoteFile

__all__ = ["CONNECTION_ERRORS", "download", "open_local_rows"]

logger = logging.getLogger(__name__)

#: Errors of a connection that died under us: the download is tried once more on a new one.
CONNECTION_ERRORS = (
    asyncssh.SFTPNoConnection,
    asyncssh.SFTPConnectionLost,
    asyncssh.ConnectionLost,
    asyncssh.ChannelOpenError,
    asyncssh.DisconnectError,
    ConnectionError,
    BrokenPipeError,
    TimeoutError,
)


def download(
    source: DataSource, remote: RemoteFile | str, dest: Path, progress: Callable[[int], None] | None = None
) -> str:
    """Copy ``remote`` to ``dest`` and return its sha256, reconnecting once if the connection had died."""
    try:
        return source.download(remote, dest, progress)
    except CONNECTION_ERRORS as exc:
        if source.integration is None:
            raise
        path = escape_name(remote if isinstance(remote, str) else remote.path)
        logger.warning(
            "%s: the connection dropped while downloading %s (%s); retrying once on a new connection",
            source.name,
            path,
            type(exc).__name__,
            extra={"source": source.name, "file": path, "retry": 1},
        )
        source.integration.reconnect()
        return source.download(remote, dest, progress)


def open_local_rows(
    source: DataSource, local: Path, is_header: Callable[[list[str]], bool] | None = None
) -> AbstractContextManager[tuple[Shape, Iterator[list[str] | None]]]:
    """:func:`~truagents_import.reading.open_rows` of a fetched file, with the source's reading options.

    ``is_header`` tells the header from preamble lines (see :func:`.header.header_finder`).
    """
    return open_rows(
        local,
        encoding=source.encoding,
        delimiter=source.delimiter,
        max_field_size=source.max_field_size,
        max_decompressed_size=source.max_decompressed_size,
        is_header=is_header,
    )
