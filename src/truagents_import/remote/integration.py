"""Integration: one SFTP endpoint, how to reach it, and the verified fsspec filesystem over it.

The host key is always verified: either a pinned ``SHA256:`` fingerprint or a known_hosts file.
Nothing of the user's ssh-agent or ``~/.ssh/config`` leaks in; connections time out and send
keepalives; fsspec's instance cache is never used, and the connection is closed explicitly.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import secrets
import shlex
import socket
from collections.abc import Iterable
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Literal

import asyncssh
import attrs
from fsspec.asyn import get_loop, sync

from truagents_import.errors import ConfigError, ConnectError, HostKeyError, TruagentsImportError, UploadNameError
from truagents_import.remote import keys

if TYPE_CHECKING:
    from truagents_import.check.ladder import CheckReport

_CONNECTION_STEPS = ("config", "reachable", "host_key", "auth")

__all__ = [
    "SCP_NOTE",
    "Integration",
    "UploadCommand",
    "UploadNameError",
    "UploadResult",
    "check_upload_name",
    "configured",
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

    # -- connecting --------------------------------------------------------------------------

    def _client_key(self) -> asyncssh.SSHKey:
        passphrase = os.environ.get(self.passphrase_env) if self.passphrase_env else None
        return keys.load_private_key(Path(self.private_key), passphrase, passphrase_env=self.passphrase_env)

    def _require_verification(self) -> None:
        if self.host_key is None and self.known_hosts is None:
            msg = (
                "no host key is pinned for this integration: set `host_key` (run `truagents-import trust` "
                "to see and pin the server's fingerprint) or `known_hosts`"
            )
            raise ConfigError(msg)

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
        self._require_verification()
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
        except (asyncssh.PermissionDenied, PermissionError) as exc:
            if isinstance(exc, PermissionError) and not isinstance(exc.__cause__, asyncssh.PermissionDenied):
                raise ConnectError(f"cannot connect to {self.host}:{self.port}: {exc}") from None
            # sshfs turns asyncssh's PermissionDenied (authentication refused) into a PermissionError.
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
        except socket.gaierror as exc:
            raise ConnectError(f"cannot resolve host {self.host!r}: {exc.strerror}") from None
        except TimeoutError:
            msg = (
                f"{self.host}:{self.port} did not answer within {self.connect_timeout:g} s; "
                "check host, port and firewall"
            )
            raise ConnectError(msg) from None
        except (OSError, asyncssh.Error) as exc:
            reason = getattr(exc, "strerror", None) or getattr(exc, "reason", None) or str(exc)
            raise ConnectError(f"cannot connect to {self.host}:{self.port}: {reason}") from None
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
        self._require_verification()
        key = self.host_public_key()
        presented = keys.fingerprint(key)
        if self.host_key is not None and secrets.compare_digest(presented, _normalise_pin(self.host_key)):
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
        path = Path(path)
        token = keys.known_hosts_host(self.host, self.port)
        try:
            existing = path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            existing = []
        except (OSError, UnicodeDecodeError) as exc:
            msg = f"known_hosts file {path} cannot be read: {getattr(exc, 'strerror', None) or exc}"
            raise ConfigError(msg) from None
        mine = [ln for ln in existing if token in (_known_hosts_hosts(ln) or ())]
        if self.host_key is not None:
            pin = _normalise_pin(self.host_key)
            for ln in mine:
                if _line_fingerprint(ln) == pin:
                    return ln.strip()
        line = self.known_hosts_entry()
        kept = [ln for ln in existing if ln not in mine]
        keys.replace_file(path, "".join(f"{ln}\n" for ln in [*kept, line]), mode=0o644)
        return line

    def check(self) -> CheckReport:
        """The connection rungs of the triage ladder: config, reachable, host_key, auth.

        Stops at the first failing step, with the next thing to do; see
        :func:`truagents_import.check.ladder.run_check` for the whole ladder of a data source.
        """
        from truagents_import.check.ladder import check_source
        from truagents_import.source import DataSource

        probe = DataSource(name=f"{self.host}:{self.port}", path=".", pattern="*", integration=self)
        report = check_source(probe)
        report.steps = [s for s in report.steps if s.name in _CONNECTION_STEPS]
        return report

    # -- keys and uploads ------------------------------------------------------------------

    def authorized_keys_line(self, *, from_: str | None = None) -> str:
        """The ``authorized_keys`` line for this integration's key, restricted to SFTP."""
        return keys.authorized_keys_line(self._client_key(), from_=from_)

    def upload(self, local: Path | str, remote_dir: str) -> str:
        """Upload a file the safe way: under a temporary dot-name, then renamed into place.

        The final name appears only once the file is complete; the rename is the server's
        atomic ``posix-rename`` (never a copy-and-delete). The remote name is the local file's
        name, which must be a plain, visible name (see :func:`check_upload_name`). A failed
        upload leaves nothing under the final name and its temporary file is removed when the
        connection still allows it. Returns the remote path.
        """
        local = Path(local)
        name = check_upload_name(local.name)
        remote_dir = _check_remote_dir(remote_dir)
        if not local.is_file():
            what = "does not exist" if not local.exists() else "is not a regular file"
            raise FileNotFoundError(f"{local} {what}")
        final = posixpath.join(remote_dir, name)
        partial = posixpath.join(remote_dir, temporary_name(name))
        fs = self.fs
        if remote_dir:
            fs.makedirs(remote_dir, exist_ok=True)
        try:
            fs.put_file(str(local), partial)
            posix_rename(fs, partial, final)
        except Exception:
            with contextlib.suppress(Exception):
                fs.rm_file(partial)
            raise
        return final

    def upload_files(self, files: Iterable[Path | str], remote_dir: str) -> list[UploadResult]:
        """Upload each file with :meth:`upload`, reporting file by file instead of stopping at the first failure.

        A file that cannot be uploaded (bad name, missing, refused by the server) is reported
        ``failed`` with the reason. Not being able to connect at all raises (:class:`ConnectError`,
        :class:`HostKeyError`, :class:`KeyFileError`): no file could be delivered.
        """
        results: list[UploadResult] = []
        for item in files:
            local = Path(item)
            try:
                try:
                    remote = self.upload(local, remote_dir)
                except _CONNECTION_LOST:
                    # The connection died (sshfs never revives it): the upload is idempotent, so
                    # reconnect and try this file once more.
                    self.reconnect()
                    remote = self.upload(local, remote_dir)
            except (ConnectError, ConfigError):
                raise
            except (TruagentsImportError, OSError, ValueError, asyncssh.Error) as exc:
                results.append(UploadResult(local=local, status="failed", error=_describe(exc)))
            else:
                size = local.stat().st_size
                results.append(UploadResult(local=local, status="uploaded", remote_path=remote, size=size))
        return results

    def upload_command(
        self, local: Path | str, remote_dir: str, *, known_hosts_file: Path | str | None = None
    ) -> UploadCommand:
        """The OpenSSH ``sftp`` command (and an ``scp`` alternative) that uploads ``local`` safely.

        The ``sftp`` batch creates ``remote_dir`` if needed, puts the file under a temporary
        dot-name (``.NAME.part``) and renames it into place, so the final name appears only when
        the file is complete. The command pins the host key: with ``StrictHostKeyChecking=yes`` and
        a known_hosts file that is the configured ``known_hosts``, or else ``known_hosts_file``
        (default: ``known_hosts`` beside the private key), written by :meth:`write_known_hosts`
        from the server's key after checking it against the pinned ``host_key``.

        Every part is quoted for a POSIX shell (``shlex.quote``) and for sftp's batch syntax.
        The remote name is the local file's name only (see :func:`check_upload_name`).
        """
        local_path = Path(local).absolute()
        name = check_upload_name(local_path.name)
        remote_dir = _check_remote_dir(remote_dir)
        final = posixpath.join(remote_dir, name)
        partial = posixpath.join(remote_dir, temporary_name(name))
        self._require_verification()
        pinned: str | None = None
        if self.known_hosts is not None and known_hosts_file is None:
            known_hosts = Path(self.known_hosts).absolute()
        else:
            known_hosts = Path(known_hosts_file or Path(self.private_key).parent / "known_hosts").absolute()
            self.write_known_hosts(known_hosts)
            pinned = _normalise_pin(self.host_key) if self.host_key is not None else None
        key = Path(self.private_key).absolute()
        options = [
            "-P", str(self.port),
            "-i", _identity_path(key),
            "-o", "IdentitiesOnly=yes",
            "-o", "BatchMode=yes",
            "-o", "StrictHostKeyChecking=yes",
            "-o", f"UserKnownHostsFile={_ssh_option_value(_ssh_path(known_hosts, 'known_hosts'))}",
        ]  # fmt: skip
        host = f"[{self.host}]" if ":" in self.host else self.host
        destination = f"{self.username}@{host}"
        lines = []
        if remote_dir not in ("", "/"):
            lines.append(f"-mkdir {_sftp_quote(remote_dir)}")
        lines.append(f"put {_sftp_quote(str(local_path))} {_sftp_quote(partial)}")
        lines.append(f"rename {_sftp_quote(partial)} {_sftp_quote(final)}")
        sftp_argv = ("sftp", "-b", "-", *options, destination)
        command = f"printf '%s\\n' {' '.join(shlex.quote(ln) for ln in lines)} | {shlex.join(sftp_argv)}"
        scp_argv = ("scp", *options, str(local_path), f"{destination}:{final}")
        return UploadCommand(
            local=local_path,
            remote_path=final,
            temporary_path=partial,
            batch="".join(f"{ln}\n" for ln in lines),
            sftp_argv=sftp_argv,
            command=command,
            scp_argv=scp_argv,
            scp_command=shlex.join(scp_argv),
            known_hosts_file=known_hosts,
            host_key=pinned,
        )


def configured(integration: Integration | None) -> Integration:
    """``integration`` itself, or a :class:`ConfigError` saying how to configure one."""
    if integration is None:
        msg = (
            "the configuration has no [integration] table: add one with host, port, username, "
            "private_key and host_key (see docs/setup-integration.md)"
        )
        raise ConfigError(msg)
    return integration


#: Errors that mean the connection is gone, not that the operation failed.
_CONNECTION_LOST = (
    asyncssh.SFTPNoConnection,
    asyncssh.SFTPConnectionLost,
    asyncssh.ConnectionLost,
    asyncssh.DisconnectError,
    asyncssh.ChannelOpenError,
)

#: What the scp alternative cannot do, said wherever it is offered.
SCP_NOTE = (
    "scp cannot rename, so the file is written under its final name and is visible there while "
    "incomplete: the importer relies on the source's min_age (or a ready marker) to wait for it. "
    "It also needs OpenSSH 9.0 or later (scp over SFTP): older scp, or scp -O, uses the legacy "
    "protocol, which a key restricted to internal-sftp refuses. Prefer the sftp batch."
)


@attrs.frozen
class UploadCommand:
    """The parts of the upload command for one file (see :meth:`Integration.upload_command`).

    It holds paths and the public pinned fingerprint only: no passphrase, no key material.
    """

    #: The local file, as an absolute path.
    local: Path
    #: Where the file ends up on the server.
    remote_path: str
    #: The temporary dot-name it is uploaded under before the rename.
    temporary_path: str
    #: The ``sftp -b`` batch: ``-mkdir``, ``put`` under the temporary name, ``rename`` into place.
    batch: str
    #: ``sftp -b - ...``: run it with :attr:`batch` on its standard input.
    sftp_argv: tuple[str, ...]
    #: One POSIX shell line (sh, bash, zsh) that feeds the batch to sftp.
    command: str
    #: The scp alternative (see :attr:`scp_note` for its limits).
    scp_argv: tuple[str, ...]
    #: The scp alternative as one shell line.
    scp_command: str
    #: The known_hosts file both commands trust.
    known_hosts_file: Path
    #: The pinned fingerprint the known_hosts file was checked against, when one is pinned.
    host_key: str | None = None
    #: The limits of the scp alternative.
    scp_note: str = SCP_NOTE

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of every part."""
        return {
            "file": str(self.local),
            "remote_path": self.remote_path,
            "temporary_path": self.temporary_path,
            "batch": self.batch,
            "command": self.command,
            "sftp_argv": list(self.sftp_argv),
            "scp_command": self.scp_command,
            "scp_argv": list(self.scp_argv),
            "scp_note": self.scp_note,
            "known_hosts_file": str(self.known_hosts_file),
            "host_key": self.host_key,
        }


@attrs.frozen
class UploadResult:
    """What happened to one file given to :meth:`Integration.upload_files`."""

    local: Path
    status: Literal["uploaded", "failed"]
    #: Where the file is on the server, once uploaded.
    remote_path: str | None = None
    #: Its size in bytes, once uploaded.
    size: int | None = None
    #: Why it failed.
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "file": str(self.local),
            "status": self.status,
            "remote_path": self.remote_path,
            "size": self.size,
            "error": self.error,
        }


def temporary_name(name: str) -> str:
    """The hidden name a file is uploaded under before it is renamed into place."""
    return f".{name}.part"


def check_upload_name(name: str) -> str:
    """Return ``name`` if a file can be delivered under it, else raise :class:`UploadNameError`.

    A remote name is one visible path component: not empty, no ``/`` or ``\\``, no control
    characters, and not starting with ``.`` (hidden names are never imported, and ``.NAME.part``
    is what an upload in progress is called).
    """
    shown = repr(name)
    if name in ("", ".", ".."):
        raise UploadNameError(f"{shown} is not a file name")
    if "/" in name or "\\" in name:
        raise UploadNameError(f"file name {shown} must be a single name, without '/' or '\\'")
    if not name.isprintable():
        raise UploadNameError(f"file name {shown} contains control characters; rename the file before delivering it")
    if name.startswith("."):
        msg = (
            f"file name {shown} starts with '.': hidden files are never imported (uploads in progress are "
            "called .NAME.part); rename the file before delivering it"
        )
        raise UploadNameError(msg)
    return name


def _check_remote_dir(remote_dir: str) -> str:
    if not remote_dir.isprintable():
        raise UploadNameError(f"remote folder {remote_dir!r} contains control characters")
    return remote_dir


def _describe(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        where = f": {exc.filename}" if exc.filename else ""
        return f"{exc.strerror}{where}"
    text = str(exc) or type(exc).__name__
    return text if not isinstance(exc, asyncssh.Error) else f"{type(exc).__name__}: {text}"


def _sftp_quote(arg: str) -> str:
    """Quote one argument for an OpenSSH sftp batch line.

    Inside double quotes sftp takes glob characters literally; ``\\`` and ``"`` are escaped. A
    leading ``-`` would be read as a flag, so such relative paths get a ``./``.
    """
    if arg.startswith("-"):
        arg = "./" + arg
    return '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _ssh_path(path: Path, setting: str) -> str:
    """A path as ssh reads it in ``-i`` and ``UserKnownHostsFile``: ``%`` doubled, ``${`` refused."""
    text = str(path)
    if "${" in text or not text.isprintable():
        msg = f"{setting} path {text!r} cannot be given to ssh (it expands ${{...}}): move the file"
        raise ConfigError(msg)
    return text.replace("%", "%%")


def _identity_path(path: Path) -> str:
    """The private key path for ``-i``: ssh looks for it as written, then expands ``%`` and ``${}``."""
    text = str(path)
    if "%" in text or "${" in text or not text.isprintable():
        msg = (
            f"private_key path {text!r} cannot be given to ssh's -i (it expands '%' and '${{...}}' in it): "
            "move the key to a path without them"
        )
        raise ConfigError(msg)
    return text


def _ssh_option_value(value: str) -> str:
    """Quote an ``-o`` value for ssh's own word splitting when it holds spaces, quotes or ``#``."""
    if not any(c.isspace() or c in "#\"'\\" for c in value):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _known_hosts_hosts(line: str) -> list[str] | None:
    """The host patterns of a known_hosts line, or None for comments, blanks and marker lines."""
    fields = line.split()
    if not fields or fields[0].startswith(("#", "@")):
        return None
    return fields[0].split(",")


def _line_fingerprint(line: str) -> str | None:
    fields = line.split()
    if len(fields) < 3:
        return None
    try:
        return keys.fingerprint(asyncssh.import_public_key(f"{fields[1]} {fields[2]}"))
    except (asyncssh.KeyImportError, ValueError):
        return None


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
