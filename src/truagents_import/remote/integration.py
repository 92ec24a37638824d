"""Integration: one SFTP endpoint, how to reach it, and the verified fsspec filesystem over it.

The host key is always verified: either a pinned ``SHA256:`` fingerprint or a known_hosts file.
Nothing of the user's ssh-agent or ``~/.ssh/config`` leaks in; connections time out and send
keepalives; fsspec's instance cache is never used, and the connection is closed explicitly.
Uploads (:mod:`truagents_import.remote.upload`) and the small SFTP helpers
(:mod:`truagents_import.remote.sftp`) live beside it; their public names are importable from here too.
"""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import asyncssh
import attrs
from fsspec.asyn import get_loop, sync

from truagents_import._safety import escape_name
from truagents_import.errors import ConfigError, ConnectError, HostKeyError, UploadNameError
from truagents_import.remote import keys
from truagents_import.remote import upload as _upload
from truagents_import.remote.sftp import (
    SFTPFileSystem,
    close_filesystem,
    open_session,
    posix_rename,
    quiet_lost_reads,
    remote_name,
)
from truagents_import.remote.upload import SCP_NOTE, UploadCommand, UploadResult, check_upload_name, temporary_name

if TYPE_CHECKING:
    from truagents_import.check.report import CheckReport

__all__ = [
    "SCP_NOTE",
    "Integration",
    "UploadCommand",
    "UploadNameError",
    "UploadResult",
    "check_upload_name",
    "close_filesystem",
    "configured",
    "posix_rename",
    "remote_name",
    "temporary_name",
]


class _VerifyingClient(asyncssh.SSHClient):
    """Checks the host key against a pinned fingerprint and remembers what the server presented."""

    def __init__(self, pin: str | None, seen: list[str], seen_keys: list[asyncssh.SSHKey] | None = None) -> None:
        self._pin = pin
        self._seen = seen
        self._seen_keys = seen_keys

    def validate_host_public_key(self, host: str, addr: str, port: int, key: asyncssh.SSHKey) -> bool:
        """Accept the key only when its fingerprint is the pinned one; remember it either way."""
        presented = keys.fingerprint(key)
        self._seen.append(presented)
        if self._seen_keys is not None:
            self._seen_keys.append(key)
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
    #: The loaded private key and what it was loaded from: a passphrase-protected key is decrypted
    #: once per process (bcrypt makes each decryption take a second or more), not once per connection.
    _key: tuple[tuple[object, ...], asyncssh.SSHKey] | None = attrs.field(
        default=None, init=False, repr=False, eq=False
    )

    # -- connecting --------------------------------------------------------------------------

    def _client_key(self) -> asyncssh.SSHKey:
        path = Path(self.private_key)
        passphrase = os.environ.get(self.passphrase_env) if self.passphrase_env else None
        try:
            stat = path.stat()
            origin: tuple[object, ...] = (path, stat.st_mtime_ns, stat.st_size, stat.st_mode, passphrase)
        except OSError:
            origin = ()  # load_private_key says what is wrong with the file
        if self._key is not None and origin and self._key[0] == origin:
            return self._key[1]
        key = keys.load_private_key(path, passphrase, passphrase_env=self.passphrase_env)
        self._key = (origin, key) if origin else None
        return key

    def require_verification(self) -> None:
        """Raise :class:`ConfigError` unless a host key is pinned (``host_key``) or ``known_hosts`` is set."""
        if self.host_key is None and self.known_hosts is None:
            msg = (
                "no host key is pinned for this integration: set `host_key` (run `truagents-import trust` "
                "to see and pin the server's fingerprint) or `known_hosts`"
            )
            raise ConfigError(msg)

    def pinned_host_key(self) -> str | None:
        """The pinned ``host_key`` as it is compared (trimmed, ``=`` padding dropped), or None when none is pinned.

        :raises ConfigError: ``host_key`` is not a ``SHA256:`` fingerprint.
        """
        return _normalise_pin(self.host_key) if self.host_key is not None else None

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
        self.require_verification()
        pin = self.pinned_host_key()
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
        options = self.connect_options()
        seen: list[str] = options.pop("_seen")
        try:
            fs = SFTPFileSystem(self.host, skip_instance_cache=True, **options)
        except asyncssh.HostKeyNotVerifiable:
            presented = seen[-1] if seen else None
            raise HostKeyError(self._host_key_message(presented), presented=presented) from None
        except (asyncssh.PermissionDenied, PermissionError) as exc:
            if isinstance(exc, PermissionError) and not isinstance(exc.__cause__, asyncssh.PermissionDenied):
                raise ConnectError(f"cannot connect to {self.host}:{self.port}: {exc}") from None
            # sshfs turns asyncssh's PermissionDenied (authentication refused) into a PermissionError.
            msg = (
                f"{self.username}@{self.host}:{self.port} refused the key {self.private_key}: add its "
                "public key to the server's authorized_keys (`truagents-import keygen` prints the line)"
            )
            raise ConnectError(msg) from None
        except (OSError, asyncssh.Error) as exc:
            raise self._unreachable(exc) from None
        quiet_lost_reads(fs.loop)
        try:
            open_session(fs)
        except BaseException:
            close_filesystem(fs)
            raise
        return fs

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

    @property
    def connected(self) -> bool:
        """Whether the shared connection is open now (it opens on first use of :attr:`fs`)."""
        return self._fs is not None

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

    def _unreachable(self, exc: OSError | asyncssh.Error) -> ConnectError:
        """The error for a server that could not be reached: a name that does not resolve, no answer, refused."""
        if isinstance(exc, socket.gaierror):
            return ConnectError(f"cannot resolve host {self.host!r}: {exc.strerror}")
        if isinstance(exc, TimeoutError):
            return ConnectError(
                f"{self.host}:{self.port} did not answer within {self.connect_timeout:g} s; "
                "check host, port and firewall"
            )
        reason = getattr(exc, "strerror", None) or getattr(exc, "reason", None) or str(exc)
        return ConnectError(
            f"cannot connect to {self.host}:{self.port}: {escape_name(str(reason))}; check `host` and `port` "
            "(SFTP is usually port 22): `truagents-import check` shows how far the connection gets"
        )

    def host_public_key(self) -> asyncssh.SSHKey:
        """Connect only far enough to learn the server's host key (no authentication, no trust).

        The key is *not* verified: use it to show an operator what to pin, or through
        :meth:`verified_host_key`.
        """
        seen: list[str] = []
        seen_keys: list[asyncssh.SSHKey] = []

        async def probe() -> None:
            conn = await asyncssh.connect(
                self.host,
                port=self.port,
                username=self.username,
                known_hosts=((), (), ()),
                client_factory=lambda: _VerifyingClient(None, seen, seen_keys),
                client_keys=[],
                agent_path=None,
                config=None,
                preferred_auth="publickey",
                connect_timeout=self.connect_timeout,
            )
            conn.close()  # pragma: no cover - the handshake always fails before this

        try:
            # On fsspec's own loop thread, so this works from inside a running event loop
            # (a notebook) as well as from plain code.
            sync(get_loop(), probe)
        except asyncssh.HostKeyNotVerifiable:
            pass
        except (OSError, asyncssh.Error) as exc:
            raise self._unreachable(exc) from None
        if not seen_keys:
            raise ConnectError(f"{self.host}:{self.port} presented no host key")
        return seen_keys[-1]

    def presented_host_key(self) -> str:
        """Connect only far enough to learn the server's host key fingerprint (for pinning)."""
        return keys.fingerprint(self.host_public_key())

    def verified_host_key(self) -> asyncssh.SSHKey:
        """The server's host key, checked against the pinned ``host_key`` or the ``known_hosts`` file.

        Raises :class:`HostKeyError` (naming the presented fingerprint) when it is not trusted.
        """
        self.require_verification()
        key = self.host_public_key()
        presented = keys.fingerprint(key)
        pin = self.pinned_host_key()
        if pin is not None and secrets.compare_digest(presented, pin):
            return key
        if self.known_hosts is not None and self._in_known_hosts(key):
            return key
        raise HostKeyError(self._host_key_message(presented), presented=presented)

    def _in_known_hosts(self, key: asyncssh.SSHKey) -> bool:
        known = self._known_hosts_arg()
        assert isinstance(known, asyncssh.SSHKnownHosts)
        trusted, _, revoked = known.match(self.host, self.host, self.port)[:3]
        blob = bytes(key.public_data)
        return blob in {bytes(k.public_data) for k in trusted} and blob not in {bytes(k.public_data) for k in revoked}

    def known_hosts_entry(self) -> str:
        """The known_hosts line for this server's host key (fetched, then verified: see :meth:`verified_host_key`)."""
        return keys.known_hosts_line(self.host, self.port, self.verified_host_key())

    def write_known_hosts(self, path: Path | str) -> str:
        """Make ``path`` a known_hosts file that trusts this server's verified host key for its host and port.

        When the file already holds a line for this host and port whose key has the pinned
        fingerprint, nothing is fetched or written. Otherwise the server's key is fetched,
        verified (:meth:`verified_host_key`: a mismatch raises :class:`HostKeyError` and writes
        nothing) and written; lines for other hosts are kept, older lines for this host and port
        replaced. Returns the line.
        """
        return _upload.write_known_hosts(self, path)

    def check(self) -> CheckReport:
        """The connection rungs of the triage ladder: config, reachable, host_key, auth.

        Stops at the first failing step, with the next thing to do; see
        :func:`truagents_import.check.run_check` for the whole ladder of a data source.
        """
        from truagents_import.check.ladder import check_connection

        return check_connection(self)

    # -- keys and uploads ------------------------------------------------------------------

    def authorized_keys_line(self, *, from_: str | None = None) -> str:
        """The ``authorized_keys`` line for this integration's key, restricted to SFTP."""
        return keys.authorized_keys_line(self._client_key(), from_=from_)

    def upload(self, local: Path | str, remote_dir: str, *, manifest: str | None = None) -> str:
        """Upload a file the safe way: under a temporary dot-name, then renamed into place.

        The final name appears only once the file is complete; the rename is the server's
        atomic ``posix-rename`` (never a copy-and-delete). The remote name is the local file's
        name, which must be a plain, visible name (see :func:`check_upload_name`). A failed
        upload leaves nothing under the final name and its temporary file is removed when the
        connection still allows it. Returns the remote path. With ``manifest`` (``"{name}.manifest.json"``
        or ``"{name}.sha256"``) the file's delivery manifest follows it once it is in place (SPEC 10).
        """
        return _upload.upload(self, local, remote_dir, manifest=manifest)

    def upload_files(
        self, files: Iterable[Path | str], remote_dir: str, *, manifest: str | None = None
    ) -> list[UploadResult]:
        """Upload each file with :meth:`upload`, reporting file by file instead of stopping at the first failure.

        A file that cannot be uploaded (bad name, missing, refused by the server) is reported
        ``failed`` with the reason. Not being able to connect at all raises (:class:`ConnectError`,
        :class:`HostKeyError`, :class:`KeyFileError`): no file could be delivered.
        """
        return _upload.upload_files(self, files, remote_dir, manifest=manifest)

    def upload_command(
        self,
        local: Path | str,
        remote_dir: str,
        *,
        known_hosts_file: Path | str | None = None,
        manifest: str | None = None,
    ) -> UploadCommand:
        """The OpenSSH ``sftp`` command (and an ``scp`` alternative) that uploads ``local`` safely.

        The ``sftp`` batch creates ``remote_dir`` if needed, puts the file under a temporary
        dot-name (``.NAME.part``) and renames it into place, so the final name appears only when
        the file is complete. The command pins the host key: with ``StrictHostKeyChecking=yes`` and
        a known_hosts file that is the configured ``known_hosts``, or else ``known_hosts_file``
        (default: ``known_hosts`` beside the private key), written by :meth:`write_known_hosts`
        from the server's key after checking it against the pinned ``host_key``.

        Every part is quoted for a POSIX shell (``shlex.quote``) and for sftp's batch syntax.
        The remote name is the local file's name only (see :func:`check_upload_name`). With
        ``manifest``, the file's delivery manifest is written beside ``local`` now and the batch
        uploads it after the file is in place (SPEC 10).
        """
        return _upload.upload_command(self, local, remote_dir, known_hosts_file=known_hosts_file, manifest=manifest)


def configured(integration: Integration | None) -> Integration:
    """``integration`` itself, or a :class:`ConfigError` saying how to configure one."""
    if integration is None:
        msg = (
            "the configuration has no [integration] table: add one with host, port, username, "
            "private_key and host_key (see docs/setup-integration.md)"
        )
        raise ConfigError(msg)
    return integration
