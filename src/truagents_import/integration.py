"""Integration: one SFTP endpoint, how to reach it, and the verified fsspec filesystem over it.

The host key is always verified: either a pinned ``SHA256:`` fingerprint or a known_hosts file.
Nothing of the user's ssh-agent or ``~/.ssh/config`` leaks in; connections time out and send
keepalives; fsspec's instance cache is never used, and the connection is closed explicitly.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import posixpath
import secrets
import socket
from pathlib import Path, PurePosixPath
from typing import Any

import asyncssh
import attrs
from fsspec.asyn import sync

from truagents_import import keys
from truagents_import.errors import ConfigError, ConnectError, HostKeyError

__all__ = ["Integration"]


class _VerifyingClient(asyncssh.SSHClient):
    """Checks the host key against a pinned fingerprint and remembers what the server presented."""

    def __init__(self, pin: str | None, seen: list[str]) -> None:
        self._pin = pin
        self._seen = seen

    def validate_host_public_key(self, host: str, addr: str, port: int, key: asyncssh.SSHKey) -> bool:
        presented = keys.fingerprint(key)
        self._seen.append(presented)
        return self._pin is not None and secrets.compare_digest(presented, self._pin)


def _normalise_pin(value: str) -> str:
    pin = value.strip()
    if not pin.startswith("SHA256:") or len(pin) < 20:
        msg = f"host_key must be a SHA256 fingerprint like 'SHA256:abc...', got {value!r}"
        raise ConfigError(msg)
    return pin.rstrip("=")


@attrs.define
class Integration:
    """One SFTP endpoint and how to reach it (SPEC 2, configured by ``[integration]``).

    Relative paths are taken as they are; the configuration file makes them relative to itself.
    """

    host: str
    username: str
    private_key: Path
    port: int = 22
    #: Name of the environment variable that holds the private key's passphrase, if it has one.
    passphrase_env: str | None = None
    #: The pinned host key fingerprint (``SHA256:...``, as ``ssh-keygen -lf`` prints it).
    host_key: str | None = None
    #: A known_hosts file to verify the host key with, instead of ``host_key``.
    known_hosts: Path | None = None
    connect_timeout: float = 15.0
    keepalive_interval: float = 15.0
    _fs: Any = attrs.field(default=None, init=False, repr=False, eq=False)

    # -- connecting --------------------------------------------------------------------------

    def _client_key(self) -> asyncssh.SSHKey:
        passphrase = os.environ.get(self.passphrase_env) if self.passphrase_env else None
        return keys.load_private_key(Path(self.private_key), passphrase)

    def _known_hosts_arg(self) -> object:
        if self.known_hosts is not None:
            path = Path(self.known_hosts)
            try:
                return asyncssh.import_known_hosts(path.read_text(encoding="utf-8"))
            except OSError as exc:
                msg = f"known_hosts file {path} cannot be read: {exc.strerror}"
                raise ConfigError(msg) from None
            except ValueError as exc:
                msg = f"known_hosts file {path} is malformed: {exc}"
                raise ConfigError(msg) from None
        # An empty trusted list (not None, which would turn checking off): every key goes
        # through _VerifyingClient.validate_host_public_key and must match the pin.
        return ((), (), ())

    def connect_options(self) -> dict[str, Any]:
        """The keyword arguments given to ``asyncssh.connect`` (through sshfs)."""
        if self.host_key is None and self.known_hosts is None:
            msg = (
                "no host key is pinned for this integration: set `host_key` (run `truagents-import trust` "
                "to see and pin the server's fingerprint) or `known_hosts`"
            )
            raise ConfigError(msg)
        pin = _normalise_pin(self.host_key) if self.host_key is not None else None
        seen: list[str] = []
        return {
            "port": self.port,
            "username": self.username,
            "client_keys": [self._client_key()],
            "known_hosts": self._known_hosts_arg(),
            "client_factory": lambda: _VerifyingClient(pin, seen),
            "agent_path": None,
            "config": None,
            "preferred_auth": "publickey",
            "connect_timeout": self.connect_timeout,
            "keepalive_interval": self.keepalive_interval,
            "keepalive_count_max": 3,
            "_seen": seen,
        }

    def connect(self) -> Any:
        """Open a new verified SFTP connection and return it as an fsspec ``SSHFileSystem``.

        The caller owns it; :attr:`fs` is the integration's own, shared connection.
        """
        from sshfs import SSHFileSystem

        options = self.connect_options()
        seen: list[str] = options.pop("_seen")
        try:
            return SSHFileSystem(self.host, skip_instance_cache=True, **options)
        except asyncssh.HostKeyNotVerifiable:
            presented = seen[-1] if seen else None
            raise HostKeyError(self._host_key_message(presented), presented=presented) from None
        except asyncssh.PermissionDenied:
            msg = (
                f"{self.username}@{self.host}:{self.port} refused the key {self.private_key}: add its "
                "public key to the server's authorized_keys (`truagents-import keygen` prints the line)"
            )
            raise ConnectError(msg) from None
        except TimeoutError:
            msg = (
                f"{self.host}:{self.port} did not answer within {self.connect_timeout:g} s; "
                "check host, port and firewall"
            )
            raise ConnectError(msg) from None
        except socket.gaierror as exc:
            raise ConnectError(f"cannot resolve host {self.host!r}: {exc.strerror}") from None
        except (OSError, asyncssh.Error) as exc:
            reason = getattr(exc, "strerror", None) or getattr(exc, "reason", None) or str(exc)
            raise ConnectError(f"cannot connect to {self.host}:{self.port}: {reason}") from None

    def _host_key_message(self, presented: str | None) -> str:
        where = f"{self.host}:{self.port}"
        if presented is None:
            return f"{where}: the host key could not be verified"
        pinned = f"the pinned {self.host_key}" if self.host_key else f"the keys in {self.known_hosts}"
        return (
            f"{where} presented host key {presented}, which does not match {pinned}. If the server's key "
            f"really changed, confirm the new fingerprint with its owner, then pin it: "
            f'host_key = "{presented}" (or run `truagents-import trust`)'
        )

    @property
    def fs(self) -> Any:
        """The integration's shared connection, opened on first use (see :meth:`close`)."""
        if self._fs is None:
            self._fs = self.connect()
        return self._fs

    def reconnect(self) -> Any:
        """Drop the shared connection (dead or alive) and open a fresh one."""
        self.close()
        return self.fs

    def close(self) -> None:
        """Close the shared connection, if open. Safe to call more than once."""
        fs, self._fs = self._fs, None
        if fs is not None:
            close_filesystem(fs)

    def __enter__(self) -> Integration:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def presented_host_key(self) -> str:
        """Connect only far enough to learn the server's host key fingerprint (for pinning)."""
        seen: list[str] = []

        async def probe() -> None:
            conn = await asyncssh.connect(
                self.host,
                port=self.port,
                username=self.username,
                known_hosts=((), (), ()),
                client_factory=lambda: _VerifyingClient(None, seen),
                client_keys=[],
                agent_path=None,
                config=None,
                preferred_auth="publickey",
                connect_timeout=self.connect_timeout,
            )
            conn.close()  # pragma: no cover - the handshake always fails before this

        try:
            asyncio.run(probe())
        except asyncssh.HostKeyNotVerifiable:
            pass
        except (OSError, asyncssh.Error, TimeoutError) as exc:
            raise ConnectError(f"cannot connect to {self.host}:{self.port}: {exc}") from None
        if not seen:
            raise ConnectError(f"{self.host}:{self.port} presented no host key")
        return seen[-1]

    # -- keys and uploads ------------------------------------------------------------------

    def authorized_keys_line(self, *, from_: str | None = None) -> str:
        """The ``authorized_keys`` line for this integration's key, restricted to SFTP."""
        return keys.authorized_keys_line(self._client_key(), from_=from_)

    def upload(self, local: Path | str, remote_dir: str) -> str:
        """Upload a file the safe way: under a temporary dot-name, then renamed into place.

        The final name appears only once the file is complete; the rename is the server's
        atomic ``posix-rename`` (never a copy-and-delete). Returns the remote path.
        """
        local = Path(local)
        name = local.name
        final = posixpath.join(remote_dir, name)
        partial = posixpath.join(remote_dir, f".{name}.part")
        fs = self.fs
        fs.makedirs(remote_dir, exist_ok=True)
        fs.put_file(str(local), partial)
        posix_rename(fs, partial, final)
        return final


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
