"""Fan-out on Celery: files per second with 1, 2 and 4 worker processes, and where their time goes.

    python benchmarks/fanout.py [--sources 200] [--rows 1000] [--workers 1,2,4] [--json]

What it does:

1. starts a real OpenSSH ``sshd`` (``tests/sshd.py``), a throwaway PostgreSQL (``tests/pg.py``,
   fsync on) and a ``redis-server``, all on 127.0.0.1 and free ports;
2. puts one file of ``--rows`` rows (``benchmarks/generate.py``, a seed per source) in each of
   ``--sources`` folders on that one server: one source each, listed in one configuration
   whose ``[state]`` and ``[sink]`` are that PostgreSQL (a fresh database per run);
3. for each worker count: starts that many ``celery worker --concurrency 1`` processes (not
   counted), sends one ``import_source`` task per source, and measures the wall time until every
   file is recorded imported and the queue is empty: files per second;
4. inside the workers, times each task and the parts of it spent waiting on SFTP (connecting,
   listing, downloading, closing), checking rows (reading, mapping, validating, staging: the
   importer's row pipeline) and in the sink (writing and committing); the rest is the task's own
   set-up (reading the configuration, plugins, opening the state and sink connections) and
   Celery. Shares are of the summed task time.

The instrumentation wraps a few library functions in the benchmark's own task module; the
library is not changed. Traffic goes to 127.0.0.1 only; the only processes it stops are those
it started (by PID).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
TESTS_DIR = BENCH_DIR.parent / "tests"
sys.path.insert(0, str(BENCH_DIR))
sys.path.insert(0, str(TESTS_DIR))

from generate import generate  # noqa: E402

from pg import run_postgres  # noqa: E402
from service_kit import descendants  # noqa: E402
from sshd import run_sshd  # noqa: E402
from truagents_import import keys  # noqa: E402

TASKS = """
import functools
import json
import os
import time

from celery.signals import task_postrun, task_prerun

from truagents_import import DataSource, Integration
from truagents_import.celery import create_app
from truagents_import.pipeline.file_import import FileImport

TIMES = {{}}
STACK = []  # [kind, time spent in timed calls inside it] of the timed calls under way


def timed(kind, function):
    # A call's own time counts under kind; time in timed calls inside it counts for those.
    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        started = time.perf_counter()
        STACK.append([kind, 0.0])
        try:
            return function(*args, **kwargs)
        finally:
            elapsed = time.perf_counter() - started
            _, inner = STACK.pop()
            TIMES[kind] = TIMES.get(kind, 0.0) + elapsed - inner
            if STACK:
                STACK[-1][1] += elapsed
    return wrapper


Integration.connect = timed("connect", Integration.connect)
Integration.close = timed("sftp", Integration.close)
DataSource.list_files = timed("sftp", DataSource.list_files)
DataSource.download = timed("sftp", DataSource.download)
FileImport._stage = timed("rows", FileImport._stage)
FileImport._deliver = timed("sink", FileImport._deliver)


@task_prerun.connect
def started(**_):
    TIMES.clear()
    TIMES["t0"] = time.perf_counter()


@task_postrun.connect
def finished(**_):
    TIMES["task"] = time.perf_counter() - TIMES.pop("t0")
    with open(os.path.join({out!r}, f"{{os.getpid()}}.jsonl"), "a") as f:
        f.write(json.dumps(TIMES) + "\\n")


app = create_app({broker!r}, {config!r}, beat=False)
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(condition: Any, what: str, timeout: float = 600.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(f"gave up waiting for {what}")
        time.sleep(0.02)


@contextlib.contextmanager
def _redis(work: Path) -> Iterator[str]:
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    port = _free_port()
    argv = [binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no", "--dir", str(work)]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        import redis

        client = redis.Redis(port=port)

        def up() -> bool:
            with contextlib.suppress(redis.ConnectionError):
                return bool(client.ping())
            return False

        _wait(up, "redis-server", 30)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@contextlib.contextmanager
def _workers(app: Path, n: int, logs: Path) -> Iterator[list[subprocess.Popen[bytes]]]:
    procs = []
    env = dict(os.environ, PYTHONPATH=str(app))
    try:
        for i in range(n):
            log = logs / f"worker-{n}-{i}.log"
            argv = [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "tasks",
                "worker",
                "--pool",
                "prefork",
                "--concurrency",
                "1",
                "--hostname",
                f"w{i}@%h",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
                "--loglevel",
                "INFO",
                "--logfile",
                str(log),
            ]
            procs.append(subprocess.Popen(argv, cwd=app, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT))
        for i in range(n):  # not measured: each worker says when it is ready
            log = logs / f"worker-{n}-{i}.log"
            _wait(lambda log=log: log.exists() and " ready." in log.read_text(errors="replace"), "a worker", 120)
        yield procs
    finally:
        leftovers = [child for proc in procs for child in descendants(proc.pid)]
        for proc in procs:
            proc.send_signal(signal.SIGQUIT)
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        for pid in leftovers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _imported(url: str) -> int:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        try:
            row = conn.execute("SELECT count(*) FROM truagents_import_files WHERE status = 'imported'").fetchone()
        except psycopg.errors.UndefinedTable:
            return 0
    return int(row[0]) if row else 0


def _drained(broker: str) -> bool:
    import redis

    r = redis.Redis.from_url(broker)
    return r.llen("celery") == 0 and r.hlen("unacked") == 0


def _one_run(n: int, *, work: Path, broker: str, pg: Any, sshd: Any, pair: Any, inboxes: list[Path]) -> dict[str, Any]:
    import psycopg
    import redis
    from celery import Celery

    from truagents_import.celery import TASK_NAME

    db = f"fanout_{n}"
    with psycopg.connect(pg.url(), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{db}"')
        conn.execute(f'CREATE DATABASE "{db}"')
    url = pg.url(db)
    run_dir = work / f"run-{n}"
    app, out = run_dir / "app", run_dir / "times"
    app.mkdir(parents=True)
    out.mkdir()
    text = (
        f'[integration]\nhost = "127.0.0.1"\nport = {sshd.port}\nusername = "{sshd.username}"\n'
        f'private_key = "{pair.private_key}"\nhost_key = "{sshd.host_key_fingerprint}"\n'
    )
    for inbox in inboxes:
        text += f'\n[[sources]]\nname = "{inbox.name}"\npath = "{inbox}"\nmin_age = 0\ndefault_region = "US"\n'
    text += f'\n[sink]\ntype = "postgres"\nurl = "{url}"\n\n[state]\nurl = "{url}"\n'
    config = run_dir / "truagents-import.toml"
    config.write_text(text, encoding="utf-8")
    (app / "tasks.py").write_text(TASKS.format(out=str(out), broker=broker, config=str(config)), encoding="utf-8")
    redis.Redis.from_url(broker).flushdb()
    with _workers(app, n, run_dir):
        client = Celery("client", broker=broker)
        started = time.perf_counter()
        with client.connection_for_write() as conn:
            for inbox in inboxes:
                client.send_task(TASK_NAME, args=(inbox.name,), connection=conn)
        _wait(lambda: _imported(url) >= len(inboxes) and _drained(broker), "every file imported")
        wall = time.perf_counter() - started
    tasks = [json.loads(line) for f in out.glob("*.jsonl") for line in f.read_text().splitlines()]
    total = sum(t["task"] for t in tasks)
    parts = {k: sum(t.get(k, 0.0) for t in tasks) for k in ("connect", "sftp", "rows", "sink")}
    return {
        "workers": n,
        "files": len(inboxes),
        "wall_s": wall,
        "files_per_s": len(inboxes) / wall,
        "task_s_mean": total / len(tasks),
        "share": {k: v / total for k, v in parts.items()} | {"other": 1 - sum(parts.values()) / total},
    }


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    results = []
    with tempfile.TemporaryDirectory(prefix="truagents-fanout-") as tmp:
        work = Path(tmp)
        pair = keys.create_key_pair(work / "keys", "id_ed25519")
        data = work / "data"
        data.mkdir()
        inboxes = []
        for i in range(args.sources):
            inbox = data / f"tenant-{i:03d}"
            inbox.mkdir()
            generate(inbox / "contacts.csv", args.rows, seed=args.seed + i)
            inboxes.append(inbox)
        with (
            run_sshd(work / "sshd", [pair.authorized_keys_line()]) as sshd,
            run_postgres(durable=True) as pg,
            _redis(work) as broker,
        ):
            for n in args.workers:
                result = _one_run(n, work=work, broker=broker, pg=pg, sshd=sshd, pair=pair, inboxes=inboxes)
                results.append(result)
                if not args.json:
                    print(_line(result), flush=True)
    return results


def _line(r: dict[str, Any]) -> str:
    share = r["share"]
    return (
        f"{r['workers']} worker(s): {r['files']} files in {r['wall_s']:.1f} s = {r['files_per_s']:.1f} files/s; "
        f"a task {r['task_s_mean'] * 1000:.0f} ms on average: SFTP {share['connect'] + share['sftp']:.0%} "
        f"(connecting {share['connect']:.0%}, listing and downloading {share['sftp']:.0%}), "
        f"checking rows {share['rows']:.0%}, sink {share['sink']:.0%}, other {share['other']:.0%}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--sources", type=int, default=200)
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--workers", default="1,2,4", type=lambda s: [int(x) for x in s.split(",")])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    results = run(args)
    if args.json:
        print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
