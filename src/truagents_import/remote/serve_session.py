"""The SFTP sessions of the embedded server: SFTP only, every client's writes read, an exit status sent.

asyncssh runs an SFTP server session itself when it is given an ``sftp_factory``, but then it
(1) sends no exit status when the session ends, so OpenSSH ``scp`` reports failure after a good
copy, and (2) refuses a write request with bytes after its data (``SSH_FX_BAD_MESSAGE``), which
the Go SFTP library behind rclone sends as padding and OpenSSH's own server ignores. The embedded
server therefore opens its sessions itself (:meth:`SSHServer.session_requested`) with
:class:`SFTPSession`: no shell, no command, only the ``sftp`` subsystem, served by
:class:`LenientSFTPHandler`, and an exit status (0) once the client is done.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Awaitable, Callable
from typing import Any

import asyncssh
from asyncssh import sftp as _sftp
from asyncssh.sftp import SFTPInvalidHandle, SFTPServerHandler
from asyncssh.stream import SSHReader, SSHServerStreamSession, SSHWriter

__all__ = ["LenientSFTPHandler", "SFTPSession"]

#: The SFTP protocol version the sessions speak (asyncssh's and OpenSSH's: 3).
_SFTP_VERSION = 3


async def _process_write(self: Any, packet: Any) -> int:
    """A write request read as OpenSSH reads it: handle, offset, data, and nothing checked after."""
    handle = packet.get_string()
    offset = packet.get_uint64()
    data = packet.get_string()
    file_obj = self._file_handles.get(handle)
    if not file_obj:
        raise SFTPInvalidHandle("Invalid file handle")
    result = self._server.write(file_obj, offset, data)
    if inspect.isawaitable(result):
        result = await result
    return int(result)


class LenientSFTPHandler(SFTPServerHandler):
    """asyncssh's SFTP server protocol, with write requests that may carry padding after their data."""

    _packet_handlers: dict[int | bytes, Callable[[Any, Any], Awaitable[object]] | None] = {  # noqa: RUF012
        **SFTPServerHandler._packet_handlers,
        _sftp.FXP_WRITE: _process_write,  # type: ignore[attr-defined]
    }


class SFTPSession(SSHServerStreamSession[bytes]):
    """One session channel: the ``sftp`` subsystem only (shells and commands are refused), ending
    with an exit status so that clients which wait for one (OpenSSH ``scp``) see success."""

    def __init__(self, sftp_factory: Callable[[Any], asyncssh.SFTPServer]) -> None:
        super().__init__(None, sftp_factory, _SFTP_VERSION, False)

    def session_started(self) -> None:
        """Serve SFTP on the channel, then send the exit status and close it."""
        chan: Any = self._chan
        assert chan is not None
        assert self._conn is not None
        if chan.get_subsystem() != "sftp":  # pragma: no cover - refused by subsystem_requested
            chan.exit(1)
            return
        # Now, before any data is read: this also switches the channel to bytes.
        server = self._init_sftp_server()
        stdin: SSHReader[bytes] = SSHReader(self, chan)
        stdout: SSHWriter[bytes] = SSHWriter(self, chan)
        self._conn.create_task(self._serve(chan, server, stdin, stdout), stdin.logger)

    async def _serve(self, chan: Any, server: Any, stdin: SSHReader[bytes], stdout: SSHWriter[bytes]) -> None:
        if inspect.isawaitable(server):  # pragma: no cover - the factory is synchronous
            server = await server
        status = 1
        try:
            await _ExitStatusHandler(server, stdin, stdout, _SFTP_VERSION, chan).run()
            status = 0
        finally:
            with contextlib.suppress(OSError):
                chan.exit(status)


class _ExitStatusHandler(LenientSFTPHandler):
    """Sends the exit status before the session's channel is closed (asyncssh closes it in cleanup)."""

    def __init__(self, server: Any, reader: Any, writer: Any, version: int, chan: Any) -> None:
        super().__init__(server, reader, writer, version)
        self._status_chan = chan

    async def _cleanup(self, exc: Exception | None) -> None:
        # The channel must still be open to carry the status: send it before asyncssh closes it.
        with contextlib.suppress(OSError):
            self._status_chan.exit(0 if exc is None else 1)
        await super()._cleanup(exc)
