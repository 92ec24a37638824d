"""Run a real OpenSSH ``sshd`` on 127.0.0.1 for tests: its own host key, config and authorized keys.

Used by tests that must prove interoperability with OpenSSH (not only with the embedded asyncssh
server). The daemon serves the current OS user, offers SFTP through ``internal-sftp``, accepts
public keys only, and is terminated (by its PID only) when the context manager exits.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import asyncssh
import attrs

__all__ = ["SSHD", "SFTPAccount", "find_sshd", "run_sshd", "sftp_batch_argv", "sftp_only_account"]

_CANDIDATES = ("/usr/sbin/sshd", "/usr/local/sbin/sshd", "/sbin/sshd", "/usr/bin/sshd")
_PRIVSEP_DIR = Path("/run/sshd")
_START_TIMEOUT = 10.0
_BIND_ATTEMPTS = 5
#: Folders a ChrootDirectory can live under: sshd wants every component of the path owned by root
#: and writable by nobody else, which /tmp (mode 1777) never is.
_CHROOT_BASES = ("/run", "/var/lib", "/srv")


@attrs.frozen(kw_only=True)
class SSHD:
    """A running OpenSSH daemon: where to reach it and how to pin its host key."""

    host: str = "127.0.0.1"
    port: int
    username: str
    host_key_fingerprint: str
    known_hosts_line: str
    host_public_line: str
    pid: int
    log: Path


def sftp_batch_argv(
    batch: str, port: int, user_at_host: str, private_key: Path, known_hosts: Path, sftp: str = "sftp"
) -> list[str]:
    """The OpenSSH ``sftp`` client running batch file ``batch`` (``-`` for stdin) with one key, the
    host key pinned by ``known_hosts``, and nothing of the user's ssh config or agent."""
    return [
        sftp,
        "-b",
        batch,
        "-F",
        os.devnull,
        "-i",
        str(private_key),
        "-o",
        "IdentitiesOnly=yes",
        "-o",
        "BatchMode=yes",
        "-o",
        "StrictHostKeyChecking=yes",
        "-o",
        f"UserKnownHostsFile={known_hosts}",
        "-o",
        f"GlobalKnownHostsFile={os.devnull}",
        "-P",
        str(port),
        user_at_host,
    ]


def find_sshd() -> str | None:
    """The absolute path of the ``sshd`` binary, or None when OpenSSH's server is not installed."""
    found = shutil.which("sshd")
    if found:
        return os.path.abspath(found)
    for candidate in _CANDIDATES:
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(path, 0o600)


def _config(
    workdir: Path, port: int, host_key: Path, authorized: Path, *, subsystem: bool = True, extra: str = ""
) -> str:
    for p in (workdir, host_key, authorized):
        if any(c.isspace() or c in '"%#' for c in str(p)):
            msg = f"sshd cannot use a path with spaces, quotes, % or #: {p}"
            raise ValueError(msg)
    return "\n".join(
        [
            "ListenAddress 127.0.0.1",
            f"Port {port}",
            f"HostKey {host_key}",
            f"AuthorizedKeysFile {authorized}",
            f"PidFile {workdir / 'sshd.pid'}",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "PubkeyAuthentication yes",
            "UsePAM no",
            "StrictModes no",
            "PermitRootLogin prohibit-password",
            "AllowTcpForwarding no",
            "X11Forwarding no",
            *(["Subsystem sftp internal-sftp"] if subsystem else []),
            "LogLevel VERBOSE",
            # Match blocks last: everything after a Match line belongs to it.
            extra,
            "",
        ]
    )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Terminate the daemon we started (by its PID, through its Popen) and reap it."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def _wait_listening(
    proc: subprocess.Popen[bytes], port: int, log: Path, offset: int, deadline: float
) -> bool:
    """True once sshd says it listens on the port and the port accepts; False if it exits first.

    Both are checked: a connection alone could reach some other process that took the port.
    """
    announced = f"Server listening on 127.0.0.1 port {port}."
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        with log.open("rb") as f:
            f.seek(offset)
            said = f.read().decode("utf-8", errors="replace")
        if announced in said:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    return proc.poll() is None
            except OSError:
                pass
        time.sleep(0.05)
    return False


@contextmanager
def run_sshd(
    workdir: Path, authorized_keys: Sequence[str], *, subsystem: bool = True, extra_config: str = ""
) -> Iterator[SSHD]:
    """Start ``sshd -D -e`` in ``workdir`` for the current user; stop it on exit.

    ``authorized_keys`` are authorized_keys lines (options allowed, e.g. ``restrict,command=...``).
    ``subsystem=False`` offers no SFTP subsystem (a server where SFTP is not enabled);
    ``extra_config`` is appended to sshd_config (``Match`` blocks, see :func:`sftp_only_account`).
    """
    sshd = find_sshd()
    if sshd is None:
        msg = "OpenSSH sshd is not installed"
        raise FileNotFoundError(msg)
    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    if not _PRIVSEP_DIR.is_dir() and os.geteuid() == 0:
        _PRIVSEP_DIR.mkdir(mode=0o755, parents=True, exist_ok=True)
        _PRIVSEP_DIR.chmod(0o755)

    key = asyncssh.generate_private_key("ssh-ed25519", comment="truagents-import-test-sshd")
    host_key = workdir / "ssh_host_ed25519_key"
    _write_private(host_key, bytes(key.export_private_key("openssh")))
    host_public_line = bytes(key.export_public_key("openssh")).decode("ascii").strip()
    (workdir / "ssh_host_ed25519_key.pub").write_text(host_public_line + "\n", encoding="ascii")
    authorized = workdir / "authorized_keys"
    authorized.write_text("".join(line.strip() + "\n" for line in authorized_keys), encoding="ascii")
    authorized.chmod(0o600)
    config = workdir / "sshd_config"
    log = workdir / "sshd.log"
    username = pwd.getpwuid(os.getuid()).pw_name

    proc: subprocess.Popen[bytes] | None = None
    port = 0
    for _attempt in range(_BIND_ATTEMPTS):
        port = _free_port()
        text = _config(workdir, port, host_key, authorized, subsystem=subsystem, extra=extra_config)
        config.write_text(text, encoding="ascii")
        offset = log.stat().st_size if log.exists() else 0
        with log.open("ab") as log_file:
            candidate = subprocess.Popen(
                [sshd, "-D", "-e", "-f", str(config)],
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=log_file,
                cwd=workdir,
            )
        if _wait_listening(candidate, port, log, offset, time.monotonic() + _START_TIMEOUT):
            proc = candidate
            break
        exited = candidate.poll() is not None
        _stop(candidate)
        text = log.read_text(encoding="utf-8", errors="replace")
        if not (exited and ("Address already in use" in text or "Cannot bind any address" in text)):
            msg = (
                f"sshd did not start listening on 127.0.0.1:{port} within {_START_TIMEOUT:g} s; log:\n{text}"
            )
            raise RuntimeError(msg)
    if proc is None:
        text = log.read_text(encoding="utf-8", errors="replace")
        msg = f"sshd could not bind a free port after {_BIND_ATTEMPTS} attempts; log:\n{text}"
        raise RuntimeError(msg)

    keytype, blob = host_public_line.split()[:2]
    try:
        yield SSHD(
            port=port,
            username=username,
            host_key_fingerprint=str(key.get_fingerprint("sha256")),
            known_hosts_line=f"[127.0.0.1]:{port} {keytype} {blob}",
            host_public_line=host_public_line,
            pid=proc.pid,
            log=log,
        )
    finally:
        _stop(proc)


@attrs.frozen(kw_only=True)
class SFTPAccount:
    """A chrooted, SFTP-only account for another OS user, as an operator sets one up for a drop box.

    Add :attr:`config` to :func:`run_sshd`'s ``extra_config``. Inside the chroot the user sees
    ``/``; :meth:`folder` makes folders there with the owner and mode a test needs.
    """

    username: str
    #: The ChrootDirectory on this machine (``/`` for the user).
    chroot: Path
    #: The user's authorized_keys file (read by sshd as that user, so outside any private folder).
    authorized_keys: Path
    uid: int
    gid: int

    @property
    def config(self) -> str:
        """The ``Match User`` block of sshd_config."""
        return "\n".join(
            [
                f"Match User {self.username}",
                f"    ChrootDirectory {self.chroot}",
                "    ForceCommand internal-sftp",
                f"    AuthorizedKeysFile {self.authorized_keys}",
                "",
            ]
        )

    def folder(self, name: str, *, owned_by_user: bool = True, mode: int = 0o755) -> Path:
        """Make the folder ``/name`` inside the chroot, owned by the user (or by root), with ``mode``."""
        path = self.chroot / name
        path.mkdir(parents=True, exist_ok=True)
        if owned_by_user:
            os.chown(path, self.uid, self.gid)
        path.chmod(mode)
        return path


def _chroot_base() -> Path | None:
    """A folder whose every component is root-owned and writable by root alone, or None."""
    candidates = [os.environ.get("TRUAGENTS_CHROOT_BASE", ""), *_CHROOT_BASES]
    for candidate in filter(None, candidates):
        path = Path(candidate).resolve()
        chain = [path, *path.parents]
        if path.is_dir() and all(p.stat().st_uid == 0 and not p.stat().st_mode & 0o022 for p in chain):
            return path
    return None


@contextmanager
def sftp_only_account(
    authorized_keys: Sequence[str], *, username: str = "nobody", chroot_owned_by_user: bool = False
) -> Iterator[SFTPAccount]:
    """A chrooted SFTP-only account for OS user ``username`` (root only: sshd must chroot), removed on exit.

    ``chroot_owned_by_user=True`` makes the ChrootDirectory the user's own, which sshd refuses:
    the key is accepted, then the SFTP session is not.
    """
    if os.geteuid() != 0:
        msg = "a chrooted account needs sshd running as root"
        raise PermissionError(msg)
    base_dir = _chroot_base()
    if base_dir is None:
        msg = f"no root-owned folder for a ChrootDirectory among {_CHROOT_BASES} (set TRUAGENTS_CHROOT_BASE)"
        raise RuntimeError(msg)
    entry = pwd.getpwnam(username)
    base = Path(tempfile.mkdtemp(prefix="truagents-sftp-", dir=base_dir))
    try:
        base.chmod(0o755)
        chroot = base / "chroot"
        chroot.mkdir(mode=0o755)
        if chroot_owned_by_user:
            os.chown(chroot, entry.pw_uid, entry.pw_gid)
        keys = base / "authorized_keys"
        keys.write_text("".join(line.strip() + "\n" for line in authorized_keys), encoding="ascii")
        keys.chmod(0o644)
        yield SFTPAccount(
            username=username, chroot=chroot, authorized_keys=keys, uid=entry.pw_uid, gid=entry.pw_gid
        )
    finally:
        shutil.rmtree(base, ignore_errors=True)
