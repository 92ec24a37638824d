"""``truagents_import.celery`` with a real ``redis-server`` and real ``celery worker`` processes.

Every file of many sources (some listed in the configuration, some served by a source factory
from a tenants database) is imported exactly once when each task is sent twice, and when a
worker process is killed with SIGKILL in the middle of a file; ``beat`` follows each source's
``poll_every``. Without redis-server or Celery these tests are skipped, except when ``CI=true``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from service_kit import (
    contacts_csv,
    deliver,
    descendants,
    imported_rows,
    install_hold_plugin,
    sink_identities,
    wait_for,
)
from sshd import SSHD
from truagents_import.config import parse_config

pytestmark = pytest.mark.sshd
IN_CI = os.environ.get("CI") == "true"


def _unavailable(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"CI=true but {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A redis-server of our own on 127.0.0.1 and a free port, stopped by its PID."""
    try:
        import celery  # noqa: F401
        import redis
    except ImportError:
        _unavailable("Celery is not installed: pip install 'truagents-import[celery]'")
    binary = shutil.which("redis-server") or (
        "/usr/bin/redis-server" if os.path.exists("/usr/bin/redis-server") else None
    )
    if binary is None:
        _unavailable("redis-server is not installed (apt-get install -y redis-server)")
    assert binary is not None
    folder = tmp_path_factory.mktemp("redis")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    argv = [
        binary,
        "--bind",
        "127.0.0.1",
        "--port",
        str(port),
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        str(folder),
    ]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    try:
        client = redis.Redis.from_url(url)

        def up() -> bool:
            with contextlib.suppress(redis.ConnectionError):
                return bool(client.ping())
            return False

        wait_for(up, "redis-server to answer", timeout=30)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@pytest.fixture
def broker(redis_url: str) -> str:
    """The broker, emptied for this test."""
    import redis

    redis.Redis.from_url(redis_url).flushdb()
    return redis_url


TASKS = '''
import sqlite3

from truagents_import import DataSource
from truagents_import.celery import create_app


def tenant_source(name, config):
    """The tenants' sources live in the application's own database."""
    db = sqlite3.connect({tenants!r})
    try:
        row = db.execute("SELECT folder FROM tenants WHERE name = ?", (name,)).fetchone()
    finally:
        db.close()
    if row is None:
        return None
    return DataSource(name=name, path=row[0], pattern="*.csv", min_age=0, integration=config.integration)


app = create_app({broker!r}, {config!r}, source_factory=tenant_source)
'''


class Cluster:
    """An app folder (tasks.py, truagents-import.toml, a tenants database) and its worker processes."""

    def __init__(
        self,
        root: Path,
        broker: str,
        sshd: SSHD,
        key_file: Path,
        config_sources: list[str],
        tenants: list[str],
        polls: dict[str, str] | None = None,
        extra: str = "",
    ) -> None:
        self.root, self.broker = root, broker
        self.app = root / "app"
        self.app.mkdir()
        self.inboxes: dict[str, Path] = {}
        for name in [*config_sources, *tenants]:
            self.inboxes[name] = root / f"inbox-{name}"
            self.inboxes[name].mkdir()
        text = (
            f'[integration]\nhost = "127.0.0.1"\nport = {sshd.port}\nusername = "{sshd.username}"\n'
            f'private_key = "{key_file}"\nhost_key = "{sshd.host_key_fingerprint}"\n'
        )
        for name in config_sources:
            every = f'poll_every = "{polls[name]}"\n' if polls and name in polls else ""
            text += f'\n[[sources]]\nname = "{name}"\npath = "{self.inboxes[name]}"\nmin_age = 0\n{every}'
        text += extra
        text += f'\n[sink]\ntype = "sqlite"\npath = "{root / "contacts.db"}"\n\n[state]\npath = "{root / "state.db"}"\n'
        self.config = root / "truagents-import.toml"
        self.config.write_text(text, encoding="utf-8")
        db = sqlite3.connect(root / "tenants.db")
        db.execute("CREATE TABLE tenants (name TEXT PRIMARY KEY, folder TEXT)")
        db.executemany("INSERT INTO tenants VALUES (?, ?)", [(t, str(self.inboxes[t])) for t in tenants])
        db.commit()
        db.close()
        (self.app / "tasks.py").write_text(
            TASKS.format(tenants=str(root / "tenants.db"), broker=broker, config=str(self.config)), encoding="utf-8"
        )
        install_hold_plugin(self.app)
        self.hold = root / "hold"
        self.hold.mkdir()
        self.procs: list[subprocess.Popen[bytes]] = []
        self.logs: list[Path] = []

    def _start(self, *args: str) -> tuple[subprocess.Popen[bytes], Path]:
        log = self.root / f"{args[0]}-{len(self.procs)}.log"
        env = dict(os.environ, PYTHONPATH=str(self.app), TRUAGENTS_TEST_HOLD_DIR=str(self.hold))
        argv = [sys.executable, "-m", "celery", "-A", "tasks", *args, "--loglevel", "INFO", "--logfile", str(log)]
        proc = subprocess.Popen(argv, cwd=self.app, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        self.procs.append(proc)
        self.logs.append(log)
        return proc, log

    def worker(self) -> int:
        """Start one worker (one pool process) and wait until it is ready; its main PID."""
        n = len(self.procs)
        proc, log = self._start(
            "worker",
            "--pool",
            "prefork",
            "--concurrency",
            "1",
            "--hostname",
            f"w{n}@%h",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        )
        wait_for(lambda: log.exists() and " ready." in log.read_text(errors="replace"), f"worker {n} ready")
        return proc.pid

    def beat(self) -> None:
        self._start("beat", "--schedule", str(self.root / "beat-schedule"))

    def send(self, *names: str) -> None:
        from celery import Celery

        from truagents_import.celery import TASK_NAME

        client = Celery("client", broker=self.broker)
        with client.connection_for_write() as conn:
            for name in names:
                client.send_task(TASK_NAME, args=(name,), connection=conn)

    def drained(self) -> bool:
        """No task queued and none being worked on (late acknowledgement keeps those unacked)."""
        import redis

        r = redis.Redis.from_url(self.broker)
        return r.llen("celery") == 0 and r.hlen("unacked") == 0

    def log_text(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in self.logs if p.exists())

    def pool_processes(self) -> set[int]:
        return {child for proc in self.procs for child in descendants(proc.pid)}

    def stop(self) -> None:
        """Cold shutdown of everything we started, by PID; leftovers are killed."""
        leftovers = [p for proc in self.procs for p in descendants(proc.pid)]
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGQUIT)
        for proc in self.procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        for pid in leftovers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


@pytest.fixture
def cluster_factory(tmp_path: Path, broker: str, sshd: SSHD, key_file: Path) -> Iterator[Any]:
    made: list[Cluster] = []

    def make(
        config_sources: list[str], tenants: list[str], polls: dict[str, str] | None = None, extra: str = ""
    ) -> Cluster:
        cluster = Cluster(tmp_path, broker, sshd, key_file, config_sources, tenants, polls, extra)
        made.append(cluster)
        return cluster

    yield make
    for cluster in made:
        cluster.stop()


def _expect_exactly_once(cluster: Cluster, files: dict[str, list[str]], emails: list[str]) -> None:
    state, sink = cluster.root / "state.db", cluster.root / "contacts.db"
    want = sorted((source, name) for source, names in files.items() for name in names)
    wait_for(
        lambda: len(imported_rows(state)) >= len(want) and cluster.drained(), "every file imported and every task done"
    )
    assert [(s, n) for s, n, _ in imported_rows(state)] == want, cluster.log_text()[-3000:]
    assert sink_identities(sink) == sorted(emails)


def test_every_file_imported_exactly_once_when_each_task_is_sent_twice(cluster_factory: Any) -> None:
    cluster: Cluster = cluster_factory(["crm-a", "crm-b", "crm-c"], ["tenant-1", "tenant-2", "tenant-3"])
    files: dict[str, list[str]] = {}
    emails: list[str] = []
    for name, inbox in cluster.inboxes.items():
        for k in range(3):
            prefix = f"{name}-{k}"
            deliver(inbox, f"contacts_{k}.csv", contacts_csv(prefix, 20))
            files.setdefault(name, []).append(f"contacts_{k}.csv")
            emails += [f"{prefix}-{i}@example.com" for i in range(20)]
    cluster.worker()
    cluster.worker()
    cluster.send(*[name for name in cluster.inboxes for _ in range(2)])  # each source twice, back to back
    _expect_exactly_once(cluster, files, emails)


def test_a_worker_killed_mid_file_loses_nothing_and_doubles_nothing(cluster_factory: Any) -> None:
    cluster: Cluster = cluster_factory(["crm-a", "crm-b"], ["tenant-1", "tenant-2"])
    files: dict[str, list[str]] = {}
    emails: list[str] = []
    for name, inbox in cluster.inboxes.items():
        prefix = f"slow-{name}" if name == "crm-a" else name  # crm-a's file holds its importer half-way
        deliver(inbox, "contacts.csv", contacts_csv(prefix, 6000))
        files[name] = ["contacts.csv"]
        emails += [f"{prefix}-{i}@example.com" for i in range(6000)]
    (cluster.hold / "hold").touch()
    cluster.worker()
    cluster.worker()
    cluster.send(*cluster.inboxes)
    wait_for(lambda: any(cluster.hold.glob("holding-*")), "a worker in the middle of crm-a's file")
    victim = int(next(cluster.hold.glob("holding-*")).name.removeprefix("holding-"))
    assert victim in cluster.pool_processes()  # one of our workers' pool processes, nothing else
    os.kill(victim, signal.SIGKILL)
    for marker in cluster.hold.glob("holding-*"):
        marker.unlink()
    (cluster.hold / "hold").unlink()

    # The task is re-queued (late acknowledgement, reject on worker lost) and another process
    # takes over the dead one's claim.
    _expect_exactly_once(cluster, files, emails)
    text = cluster.log_text()
    assert "WorkerLostError" in text or "exited with 'signal 9" in text
    assert "taken over (its process is gone)" in text


def test_beat_schedule_follows_poll_every(cluster_factory: Any, tmp_path: Path) -> None:
    from truagents_import.celery import TASK_NAME, beat_schedule

    config = parse_config(
        {
            "sources": [
                {"name": "fast", "path": "/a", "poll_every": "1s"},
                {"name": "daily", "path": "/b", "poll_every": "24h"},
                {"name": "plain", "path": "/c"},
            ]
        },
        tmp_path,
    )
    schedule = beat_schedule(config, more={"tenant-9": "5m"})
    assert {
        name: (entry["task"], entry["args"], entry["schedule"], entry["options"]["expires"])
        for name, entry in schedule.items()
    } == {
        "truagents-import:fast": (TASK_NAME, ("fast",), 1.0, 1.0),
        "truagents-import:daily": (TASK_NAME, ("daily",), 86400.0, 86400.0),
        "truagents-import:plain": (TASK_NAME, ("plain",), 10.0, 10.0),
        "truagents-import:tenant-9": (TASK_NAME, ("tenant-9",), 300.0, 300.0),
    }

    # A real beat sends the fast source again and again, and the daily one not within the day.
    cluster: Cluster = cluster_factory(["fast", "daily"], [], {"fast": "1s", "daily": "24h"})
    deliver(cluster.inboxes["daily"], "contacts_1.csv", contacts_csv("daily-1", 3))
    deliver(cluster.inboxes["fast"], "contacts_1.csv", contacts_csv("fast-1", 3))
    cluster.worker()
    cluster.beat()
    state = cluster.root / "state.db"
    wait_for(lambda: [n for s, n, _ in imported_rows(state)] == ["contacts_1.csv"], "fast's first file imported")
    deliver(cluster.inboxes["fast"], "contacts_2.csv", contacts_csv("fast-2", 3))
    wait_for(lambda: len(imported_rows(state)) == 2, "fast's second file imported by a later beat")
    assert [(s, n) for s, n, _ in imported_rows(state)] == [("fast", "contacts_1.csv"), ("fast", "contacts_2.csv")]
    assert cluster.log_text().count("Scheduler: Sending due task truagents-import:fast") >= 2
    assert "Sending due task truagents-import:daily" not in cluster.log_text()


def test_a_server_that_is_down_is_retried_with_backoff(cluster_factory: Any, sshd: SSHD, key_file: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens there once the socket is closed
    extra = (
        f'\n[integrations.gone]\nhost = "127.0.0.1"\nport = {port}\nusername = "{sshd.username}"\n'
        f'private_key = "{key_file}"\nhost_key = "{sshd.host_key_fingerprint}"\n'
        f'\n[[sources]]\nname = "down"\nintegration = "gone"\npath = "/inbox"\nmin_age = 0\n'
    )
    cluster: Cluster = cluster_factory([], [], None, extra)
    cluster.worker()
    cluster.send("down")
    wait_for(lambda: "down: attempt 2 failed (ConnectError" in cluster.log_text(), "a second attempt, after backoff")
    text = cluster.log_text()
    assert "down: attempt 1 failed (ConnectError: cannot connect to 127.0.0.1:" in text
    assert "Task truagents_import.import_source[" in text and "retry: Retry in" in text
