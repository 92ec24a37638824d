"""Run a throwaway PostgreSQL cluster on 127.0.0.1 for tests and benchmarks.

``run_postgres()`` makes a cluster in a fresh temporary folder with ``initdb`` (trust
authentication: it listens on 127.0.0.1 only, on a free port, and its unix socket lives in that
folder), starts it with ``pg_ctl``, and stops it (``pg_ctl stop``, then by its PID only) and
deletes the folder at the end. PostgreSQL refuses to run as root: as root, every server command
runs as the ``postgres`` OS user (``runuser -u postgres --``) in a folder owned by it, made under
the first of ``$TMPDIR``, ``/tmp``, ``/var/tmp`` and ``/dev/shm`` that user can reach (a TMPDIR
inside a private folder is skipped over, so it does not matter where TMPDIR points).

The binaries are looked up in ``$TRUAGENTS_PG_BIN``, on PATH, then in
``/usr/lib/postgresql/<version>/bin`` (newest first).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import attrs

__all__ = ["PostgresServer", "find_pg_bin", "run_postgres"]

_START_TIMEOUT = 60
_BIND_ATTEMPTS = 5
_SUPERUSER = "truagents"


def find_pg_bin() -> Path | None:
    """The folder holding ``initdb``, ``pg_ctl`` and ``postgres``, or None when PostgreSQL is not installed."""
    env = os.environ.get("TRUAGENTS_PG_BIN")
    candidates: list[Path] = [Path(env)] if env else []
    on_path = shutil.which("pg_ctl")
    if on_path:
        candidates.append(Path(on_path).resolve().parent)
    versions = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda p: [int(x) for x in re.findall(r"\d+", p.parent.name)] or [0],
        reverse=True,
    )
    candidates.extend(versions)
    for folder in candidates:
        if all((folder / name).is_file() for name in ("initdb", "pg_ctl", "postgres")):
            return folder
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@attrs.define
class PostgresServer:
    """A running throwaway cluster: where to reach it, and how to stop and start it again."""

    bin: Path
    workdir: Path
    port: int
    host: str = "127.0.0.1"
    user: str = _SUPERUSER
    dbname: str = "postgres"
    run_as: str | None = None

    @property
    def datadir(self) -> Path:
        """The cluster's data folder."""
        return self.workdir / "data"

    @property
    def log(self) -> Path:
        """The server's log file."""
        return self.workdir / "postgres.log"

    def url(self, dbname: str | None = None) -> str:
        """A connection URL for the superuser (trust authentication, so no password)."""
        return f"postgresql://{self.user}@{self.host}:{self.port}/{dbname or self.dbname}"

    @property
    def pid(self) -> int | None:
        """The postmaster's PID while it runs (first line of ``postmaster.pid``)."""
        try:
            return int((self.datadir / "postmaster.pid").read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return None

    def _cmd(self, args: Sequence[str]) -> list[str]:
        return ["runuser", "-u", self.run_as, "--", *args] if self.run_as else list(args)

    def _run(self, args: Sequence[str], timeout: float = _START_TIMEOUT) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self._cmd(args), capture_output=True, text=True, timeout=timeout, check=False, cwd=self.workdir
        )

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        options = f"-p {self.port} -k {self.workdir} -c listen_addresses={self.host}"
        done = self._run(
            [str(self.bin / "pg_ctl"), "-D", str(self.datadir), "-l", str(self.log), "-w",
             "-t", str(_START_TIMEOUT), "-o", options, "start"]
        )  # fmt: skip
        if done.returncode != 0:
            log = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            msg = f"pg_ctl start failed ({done.returncode}): {done.stdout}{done.stderr}\n{log}"
            raise RuntimeError(msg)

    def stop(self) -> None:
        """Stop the server (fast shutdown); kill its postmaster by PID if pg_ctl cannot."""
        pid = self.pid
        if pid is None:
            return
        done = self._run([str(self.bin / "pg_ctl"), "-D", str(self.datadir), "-m", "fast", "-w", "stop"])
        if done.returncode != 0 and self.pid == pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGQUIT)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.1)


#: Where a cluster's folder may go when it runs as another user, after $TMPDIR.
_SHARED_TEMP = ("/tmp", "/var/tmp", "/dev/shm")


def _reachable_by(path: Path, uid: int, gid: int) -> bool:
    """Whether the user ``uid`` (group ``gid``) may pass through every folder down to ``path``."""
    for folder in [path, *path.parents]:
        try:
            st = folder.stat()
        except OSError:
            return False
        if st.st_uid == uid:
            ok = st.st_mode & 0o100
        elif st.st_gid == gid:
            ok = st.st_mode & 0o010
        else:
            ok = st.st_mode & 0o001
        if not ok:
            return False
    return True


def _workdir_base(run_as: str | None) -> Path | None:
    """Where the cluster's folder is made: TMPDIR (None) unless the server runs as ``run_as`` and
    that user cannot reach it; then the first shared temporary folder it can reach."""
    if run_as is None:
        return None
    entry = pwd.getpwnam(run_as)
    for candidate in (tempfile.gettempdir(), *_SHARED_TEMP):
        path = Path(candidate).resolve()
        if path.is_dir() and _reachable_by(path, entry.pw_uid, entry.pw_gid):
            return path
    msg = f"no temporary folder that the {run_as} user can reach among $TMPDIR and {_SHARED_TEMP}"
    raise RuntimeError(msg)


def _initdb(bin_dir: Path, workdir: Path, run_as: str | None, *, durable: bool) -> None:
    cmd = [str(bin_dir / "initdb"), "-D", str(workdir / "data"), "-U", _SUPERUSER, "-A", "trust",
           "-E", "UTF8", "--locale=C", "--no-sync"]  # fmt: skip
    if run_as:
        cmd = ["runuser", "-u", run_as, "--", *cmd]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False, cwd=workdir)
    if done.returncode != 0:
        msg = f"initdb failed ({done.returncode}): {done.stdout}{done.stderr}"
        raise RuntimeError(msg)
    settings = ["listen_addresses = '127.0.0.1'", "max_connections = 50", "shared_buffers = 32MB"]
    if not durable:
        settings += ["fsync = off", "synchronous_commit = off", "full_page_writes = off"]
    with (workdir / "data" / "postgresql.conf").open("a", encoding="utf-8") as f:
        f.write("\n# truagents tests\n" + "\n".join(settings) + "\n")
    (workdir / "data" / "pg_hba.conf").write_text(
        "local all all trust\nhost all all 127.0.0.1/32 trust\n", encoding="utf-8"
    )


@contextmanager
def run_postgres(bin_dir: Path | None = None, *, durable: bool = False) -> Iterator[PostgresServer]:
    """A throwaway cluster, stopped and deleted on exit. ``durable=False`` turns fsync off (tests)."""
    bin_dir = bin_dir or find_pg_bin()
    if bin_dir is None:
        msg = "PostgreSQL is not installed (apt-get install -y postgresql)"
        raise RuntimeError(msg)
    run_as = "postgres" if os.geteuid() == 0 else None
    workdir = Path(tempfile.mkdtemp(prefix="truagents-pg-", dir=_workdir_base(run_as)))
    server: PostgresServer | None = None
    try:
        if run_as:
            entry = pwd.getpwnam(run_as)
            os.chown(workdir, entry.pw_uid, entry.pw_gid)
        workdir.chmod(0o700)
        _initdb(bin_dir, workdir, run_as, durable=durable)
        if run_as:
            entry = pwd.getpwnam(run_as)
            for path in (workdir / "data" / "postgresql.conf", workdir / "data" / "pg_hba.conf"):
                os.chown(path, entry.pw_uid, entry.pw_gid)
        for attempt in range(_BIND_ATTEMPTS):
            server = PostgresServer(bin_dir, workdir, _free_port(), run_as=run_as)
            try:
                server.start()
                break
            except RuntimeError:
                if attempt == _BIND_ATTEMPTS - 1:
                    raise
        assert server is not None
        yield server
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
