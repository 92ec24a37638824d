"""An embedded SFTP-only server for development, demos and tests (``truagents-import serve``).

The server runs asyncssh on its own thread with its own event loop, so it can be driven from
synchronous code (and from code that uses sshfs, whose blocking calls run on fsspec's loop).
It accepts public keys only, offers nothing but the SFTP subsystem, and confines every path to
its root directory: ``..`` cannot climb out of it and a symbolic link inside it that resolves
outside it is refused.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import posixpath
import threading
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import cast

import asyncssh

from truagents_import.remote.keys import fingerprint, generate_key_pair, public_line
from truagents_import.remote.serve_session import SFTPSession

__all__ = ["SFTPServer"]

#: How long start() and stop() wait for the server thread before giving up, in seconds.
_THREAD_TIMEOUT = 30.0
#: Connections that have not logged in yet, at most (OpenSSH's MaxStartups starts refusing at 10).
MAX_UNAUTHENTICATED = 10
#: Seconds a connection may take to log in before it is closed.
LOGIN_TIMEOUT = 30.0


def _accepting_tasks() -> list[asyncio.Task[object]]:
    """The tasks still wiring a just-accepted TCP connection to its protocol (an asyncio internal name)."""
    return [
        task
        for task in asyncio.all_tasks()
        if getattr(task.get_coro(), "__qualname__", "").endswith("_accept_connection2")
    ]


def _parse_public_key(key: asyncssh.SSHKey | str) -> asyncssh.SSHKey:
    """The public key of an ``SSHKey`` or of an OpenSSH public-key / authorized_keys line."""
    if isinstance(key, asyncssh.SSHKey):
        return key.convert_to_public()
    line = key.strip()
    if not line or line.startswith("#"):
        msg = f"not an OpenSSH public key line: {key!r}"
        raise ValueError(msg)
    # An authorized_keys line may start with options (which may hold quoted spaces): the key is
    # the first suffix, starting after whitespace, that parses as a public key.
    starts = [0] + [i + 1 for i, c in enumerate(line) if c.isspace() and i + 1 < len(line)]
    for start in starts:
        try:
            return asyncssh.import_public_key(line[start:])
        except (asyncssh.KeyImportError, ValueError):
            continue
    msg = f"not an OpenSSH public key line: {line[:60]!r}"
    raise ValueError(msg)


class _ConfinedSFTPServer(asyncssh.SFTPServer):
    """asyncssh's SFTP server with a chroot that symbolic links cannot escape."""

    def __init__(self, chan: asyncssh.SSHServerChannel[bytes], owner: SFTPServer) -> None:
        super().__init__(chan, chroot=os.fsencode(owner.root))
        self._owner = owner
        self._root = os.fsencode(owner.root)
        self._prefix = self._root.rstrip(b"/") + b"/"
        self._conn = cast(asyncssh.SSHServerConnection, chan.get_connection())

    def _inside(self, path: bytes) -> bool:
        return path == self._root or path.startswith(self._prefix)

    def map_path(self, path: bytes) -> bytes:
        """Map a client path into the root, refusing any whose resolved location is outside it.

        The final component is resolved too, so a link inside the root that points outside it
        cannot be read, written, listed, renamed or removed through this server.
        """
        mapped = super().map_path(path)
        if not self._inside(mapped) or not self._inside(os.path.realpath(mapped)):
            raise asyncssh.SFTPPermissionDenied("Permission denied: path resolves outside the server root")
        return mapped

    def readlink(self, path: bytes) -> bytes:
        """Return a link's target as the client sees it; targets outside the root are refused."""
        local = self.map_path(path)  # refuses links whose target resolves outside the root
        target = os.readlink(local)
        resolved = os.path.realpath(os.path.join(os.path.dirname(local), target))
        if not self._inside(resolved):  # pragma: no cover - map_path already refused it
            raise asyncssh.SFTPPermissionDenied("Permission denied: link points outside the server root")
        return self.reverse_map_path(resolved)

    def symlink(self, oldpath: bytes, newpath: bytes) -> None:
        """Create a symbolic link, refusing any whose target would resolve outside the root.

        A relative target with ``..`` in it is refused too: moved elsewhere (a rename of the link or
        of a folder above it), such a link would point somewhere else, perhaps outside the root. An
        absolute target is written as the absolute path inside the root, which no move changes.
        """
        if not posixpath.isabs(oldpath) and b".." in oldpath.split(b"/"):
            raise asyncssh.SFTPPermissionDenied("Permission denied: a relative link target may not contain '..'")
        newdir = posixpath.dirname(posixpath.join(b"/", newpath))
        target = oldpath if posixpath.isabs(oldpath) else posixpath.join(newdir, oldpath)
        self.map_path(target)  # raises when the target resolves outside the root
        result = super().symlink(oldpath, newpath)
        assert result is None  # the base class is synchronous
        local = super().map_path(newpath)
        if not self._inside(os.path.realpath(local)):  # pragma: no cover - defence in depth
            os.remove(local)
            raise asyncssh.SFTPPermissionDenied("Permission denied: link would point outside the server root")

    def _check_attrs(self, local: bytes | None, attrs: asyncssh.SFTPAttrs) -> None:
        """Refuse a change of ownership anywhere, and any change to the root folder itself."""
        if attrs.uid is not None or attrs.gid is not None or attrs.owner or attrs.group:
            raise asyncssh.SFTPPermissionDenied("Permission denied: this server does not change owners")
        if local is not None and os.path.realpath(local) == os.path.realpath(self._root):
            raise asyncssh.SFTPPermissionDenied("Permission denied: the server root's attributes cannot be changed")

    def setstat(self, path: bytes, attrs: asyncssh.SFTPAttrs) -> None:
        """Change a path's mode or times (never its owner, never the root's)."""
        self._check_attrs(self.map_path(path), attrs)
        super().setstat(path, attrs)

    def lsetstat(self, path: bytes, attrs: asyncssh.SFTPAttrs) -> None:
        """Like :meth:`setstat`, without following a final link."""
        self._check_attrs(self.map_path(path), attrs)
        super().lsetstat(path, attrs)

    def fsetstat(self, file_obj: object, attrs: asyncssh.SFTPAttrs) -> None:
        """Change an open file's mode or times (never its owner)."""
        self._check_attrs(None, attrs)
        super().fsetstat(file_obj, attrs)

    async def read(self, file_obj: object, offset: int, size: int) -> bytes:
        """Read from an open file, dropping the connection once ``drop_after_bytes`` is passed."""
        result = super().read(file_obj, offset, size)
        data = await result if inspect.isawaitable(result) else result
        limit = self._owner.drop_after_bytes
        served = self._owner._count_bytes(self._conn, len(data))
        if limit is not None and served > limit:
            self._conn.abort()
            raise asyncssh.SFTPConnectionLost("Connection dropped by the test server (drop_after_bytes)")
        return data


class _ServerSession(asyncssh.SSHServer):
    """Per-connection callbacks: tracks the connection and checks keys against the owner's list."""

    def __init__(self, owner: SFTPServer) -> None:
        self._owner = owner
        self._conn: asyncssh.SSHServerConnection | None = None

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        """Remember the live connection so that stop() and drop_connections() can close it; close it
        at once when :data:`MAX_UNAUTHENTICATED` others are still logging in."""
        self._conn = conn
        owner = self._owner
        owner._connections[conn] = 0
        if len(owner._unauthenticated) >= owner.max_unauthenticated:
            asyncio.get_running_loop().call_soon(conn.abort)
            return
        owner._unauthenticated.add(conn)

    def auth_completed(self) -> None:
        """Logged in: no longer counted against :data:`MAX_UNAUTHENTICATED`."""
        self._owner._unauthenticated.discard(self._conn)

    def connection_lost(self, exc: Exception | None) -> None:
        """Forget the connection."""
        if self._conn is not None:
            self._owner._connections.pop(self._conn, None)
            self._owner._unauthenticated.discard(self._conn)

    def session_requested(self) -> SFTPSession:
        """A session that runs the SFTP subsystem and nothing else (see :mod:`.serve_session`)."""
        return SFTPSession(self._owner._sftp_factory)

    def begin_auth(self, username: str) -> bool:
        """Authentication is always required."""
        return True

    def password_auth_supported(self) -> bool:
        """Passwords are never accepted."""
        return False

    def kbdint_auth_supported(self) -> bool:
        """Keyboard-interactive authentication is never accepted."""
        return False

    def public_key_auth_supported(self) -> bool:
        """Public keys are the only way in."""
        return True

    def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        """Accept an authorized key, for the configured user name (or any when none is set)."""
        return self._owner._key_allowed(username, key)


class SFTPServer:
    """A local SFTP-only server for development, demos and tests: key auth only, confined to root.

    ``authorized_keys`` are public keys (``SSHKey`` objects or OpenSSH public-key lines; the
    options of an authorized_keys line are ignored, the server offers only SFTP anyway).
    ``username=None`` accepts any user name with those keys. ``host_key=None`` generates a fresh
    ed25519 host key. Use it as a context manager, or call :meth:`start` and :meth:`stop`.
    """

    def __init__(
        self,
        root: Path | str,
        authorized_keys: Sequence[asyncssh.SSHKey | str] = (),
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        host_key: asyncssh.SSHKey | None = None,
        username: str | None = None,
    ) -> None:
        root_path = Path(root).resolve()
        if not root_path.is_dir():
            msg = f"SFTP server root {root_path} is not a directory"
            raise ValueError(msg)
        #: The directory served as ``/`` (resolved).
        self.root: Path = root_path
        #: The address the server binds.
        self.host: str = host
        #: The port the server listens on: the real bound port once started.
        self.port: int = port
        #: Only this user name may log in; ``None`` accepts any.
        self.username: str | None = username
        #: When set, a read that pushes a connection's bytes served past it drops that connection.
        self.drop_after_bytes: int | None = None
        #: Connections still logging in beyond this many are closed at once.
        self.max_unauthenticated: int = MAX_UNAUTHENTICATED
        if host_key is None:
            host_key = generate_key_pair("truagents-import-server")
        self._host_key: asyncssh.SSHKey = host_key
        #: The public part of the host key.
        self.host_public_key: asyncssh.SSHKey = self._host_key.convert_to_public()
        #: The ``SHA256:...`` fingerprint of the host key.
        self.host_key_fingerprint: str = fingerprint(self._host_key)
        self._keys_lock = threading.Lock()
        self._authorized: dict[bytes, asyncssh.SSHKey] = {}
        for key in authorized_keys:
            self.add_authorized_key(key)
        # Touched only on the server's own event loop thread.
        self._connections: dict[asyncssh.SSHServerConnection, int] = {}
        self._unauthenticated: set[asyncssh.SSHServerConnection | None] = set()
        self._state_lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._acceptor: asyncssh.SSHAcceptor | None = None
        self._stopped = threading.Event()
        self._stopped.set()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<SFTPServer {self.host}:{self.port} root={str(self.root)!r} {state}>"

    @property
    def running(self) -> bool:
        """Whether the server is listening."""
        return not self._stopped.is_set()

    # -- keys ---------------------------------------------------------------------------------

    def add_authorized_key(self, key: asyncssh.SSHKey | str) -> None:
        """Authorize one more public key (an ``SSHKey`` or an OpenSSH line); safe from any thread."""
        public = _parse_public_key(key)
        with self._keys_lock:
            self._authorized[bytes(public.public_data)] = public

    def _key_allowed(self, username: str, key: asyncssh.SSHKey) -> bool:
        if self.username is not None and username != self.username:
            return False
        with self._keys_lock:
            return bytes(key.public_data) in self._authorized

    def _count_bytes(self, conn: asyncssh.SSHServerConnection, n: int) -> int:
        total = self._connections.get(conn, 0) + n
        if conn in self._connections:
            self._connections[conn] = total
        return total

    def known_hosts_line(self) -> str:
        """A known_hosts line pinning this server's host key (``[host]:port`` unless port 22)."""
        if self.port == 0:
            msg = "the server has no port yet: start() it first"
            raise RuntimeError(msg)
        host = f"[{self.host}]:{self.port}" if self.port != 22 else self.host
        keytype, blob = public_line(self.host_public_key).split()[:2]
        return f"{host} {keytype} {blob}"

    # -- lifecycle ----------------------------------------------------------------------------

    def _sftp_factory(self, chan: asyncssh.SSHServerChannel[bytes]) -> asyncssh.SFTPServer:
        return _ConfinedSFTPServer(chan, self)

    async def _listen(self) -> asyncssh.SSHAcceptor:
        return await asyncssh.listen(
            self.host,
            self.port,
            server_factory=lambda: _ServerSession(self),
            server_host_keys=[self._host_key],
            # No sftp_factory: _ServerSession.session_requested opens each session (SFTP only).
            allow_scp=False,
            login_timeout=LOGIN_TIMEOUT,
            password_auth=False,
            kbdint_auth=False,
            public_key_auth=True,
            gss_host=None,
            agent_forwarding=False,
            allow_pty=False,
            x11_forwarding=False,
            config=None,
        )

    def _run_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_forever()
        finally:
            try:
                for _ in range(3):  # let callbacks scheduled by the shutdown (transport aborts) run
                    loop.run_until_complete(asyncio.sleep(0))
                tasks = asyncio.all_tasks(loop)
                for task in tasks:
                    task.cancel()
                if tasks:
                    loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.run_until_complete(loop.shutdown_default_executor())
            finally:
                asyncio.set_event_loop(None)
                loop.close()

    def start(self) -> SFTPServer:
        """Start listening on a thread of its own; returns once the port accepts connections."""
        with self._state_lock:
            if self._thread is not None:
                msg = "the SFTP server is already running"
                raise RuntimeError(msg)
            loop = asyncio.new_event_loop()
            thread = threading.Thread(
                target=self._run_loop, args=(loop,), name=f"sftp-server-{self.root.name}", daemon=True
            )
            thread.start()
            future = asyncio.run_coroutine_threadsafe(self._listen(), loop)
            try:
                acceptor = future.result(_THREAD_TIMEOUT)
            except BaseException:
                loop.call_soon_threadsafe(loop.stop)
                thread.join(_THREAD_TIMEOUT)
                raise
            self._loop, self._thread, self._acceptor = loop, thread, acceptor
            self.port = acceptor.get_port()
            self._stopped.clear()
        return self

    async def _close_all(self, *, abort: bool) -> int:
        conns = list(self._connections)
        for conn in conns:
            if abort:
                conn.abort()
            else:
                conn.close()
        if conns:
            await asyncio.wait(
                [asyncio.ensure_future(conn.wait_closed()) for conn in conns], timeout=_THREAD_TIMEOUT / 3
            )
        return len(conns)

    async def _shutdown(self) -> None:
        if self._acceptor is None:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _THREAD_TIMEOUT / 3
        # Python 3.11: a connection accepted just before Server.close() is wired to its protocol by
        # a task that then fails an assertion in Server._attach() and leaks the socket. So let such
        # tasks finish first, then close the listener with no await in between (no new ones start).
        while _accepting_tasks() and loop.time() < deadline:
            await asyncio.sleep(0)
        self._acceptor.close()
        while True:
            await self._close_all(abort=False)
            await asyncio.sleep(0)
            if (not self._connections and not _accepting_tasks()) or loop.time() > deadline:
                break
            await asyncio.sleep(0.01)
        await self._acceptor.wait_closed()

    def stop(self) -> None:
        """Close the listener and every live connection, stop the loop and join the thread.

        Safe to call more than once.
        """
        with self._state_lock:
            loop, thread = self._loop, self._thread
            if loop is None or thread is None:
                return
            try:
                if thread is threading.current_thread():  # pragma: no cover - misuse from a callback
                    msg = "stop() cannot be called from the server's own thread"
                    raise RuntimeError(msg)
                if not loop.is_closed():
                    future = asyncio.run_coroutine_threadsafe(self._shutdown(), loop)
                    try:
                        future.result(_THREAD_TIMEOUT)
                    finally:
                        loop.call_soon_threadsafe(loop.stop)
                thread.join(_THREAD_TIMEOUT)
            finally:
                self._loop = self._thread = self._acceptor = None
                self._connections.clear()
                self._unauthenticated.clear()
                self._stopped.set()

    def drop_connections(self) -> int:
        """Abruptly close every live client connection (for fault tests); returns how many."""
        loop = self._loop
        if loop is None:
            return 0
        future = asyncio.run_coroutine_threadsafe(self._close_all(abort=True), loop)
        return future.result(_THREAD_TIMEOUT)

    def serve_forever(self) -> None:
        """Start if needed, then block until ``stop()`` is called or the user presses Ctrl-C."""
        if not self.running:
            self.start()
        try:
            while not self._stopped.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass
        finally:
            self.stop()

    def __enter__(self) -> SFTPServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
