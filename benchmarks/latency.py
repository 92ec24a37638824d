"""Upload-to-contacts latency under ``watch``: from the moment an upload's rename puts a file in
place to the moment its contacts are committed.

    python benchmarks/latency.py [--files 20] [--rows 10000] [--interval 1] [--seed 0] [--json]

What it does:

1. starts a real OpenSSH ``sshd`` on 127.0.0.1 (``tests/sshd.py``) with a fresh key pair and a
   pinned host key, and ``truagents-import --log-format json watch --interval 1`` on a source
   with ``min_age = 0`` (SQLite state and sink), as its own process;
2. uploads ``--files`` files of ``--rows`` rows each (``benchmarks/generate.py``, a seed per file)
   the way an upstream owner does: under a temporary name, then renamed into place
   (:meth:`Integration.upload`), one after another with a random pause of 0.3 to 1.7 s between
   them, so that the renames fall at every point of the poll interval;
3. reads the watcher's JSON log records: a file's ``imported`` record is written once its
   contacts are committed to the sink and the state records it. The latency of a file is that
   record's time minus the moment its upload's rename returned (one clock: this machine's);
4. prints p50, p90 and max (and, with ``--json``, every latency), then stops the watcher with
   SIGTERM (it exits 0).

The aim (issue 20): max under 3 s with ``--interval 1``. Expect about half an interval plus the
import of one file at p50, and one interval plus the import at worst.
Traffic goes to 127.0.0.1 only; the only processes it stops are those it started.
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
TESTS_DIR = BENCH_DIR.parent / "tests"
sys.path.insert(0, str(BENCH_DIR))
sys.path.insert(0, str(TESTS_DIR))

from generate import generate  # noqa: E402

from sshd import run_sshd  # noqa: E402
from truagents_import import Integration, keys  # noqa: E402


class Records(threading.Thread):
    """Reads the watcher's JSON log lines; remembers when each file's ``imported`` record was made."""

    def __init__(self, stream: Any) -> None:
        super().__init__(daemon=True)
        self.stream = stream
        self.imported: dict[str, float] = {}
        #: The importer's own time for each file (download, rows, sink): its record's ``duration_s``.
        self.took: dict[str, float] = {}
        self.started = threading.Event()
        self.lines: list[str] = []

    def run(self) -> None:
        for line in self.stream:
            self.lines.append(line)
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if record.get("message", "").startswith("watching "):
                self.started.set()
            if record.get("status") == "imported":
                name = record["file"].rsplit("/", 1)[-1]
                self.imported[name] = datetime.fromisoformat(record["time"]).timestamp()
                self.took[name] = float(record["duration_s"])


def _wait(condition: Any, what: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(f"gave up waiting for {what}")
        time.sleep(0.01)


def run(args: argparse.Namespace) -> dict[str, Any]:
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory(prefix="truagents-latency-") as tmp:
        work = Path(tmp)
        pair = keys.create_key_pair(work / "keys", "id_ed25519")
        local = work / "outbox"
        local.mkdir()
        files = [generate(local / f"contacts_{i:03d}.csv", args.rows, seed=args.seed + i) for i in range(args.files)]
        with run_sshd(work / "sshd", [pair.authorized_keys_line()]) as server:
            inbox = work / "inbox"
            inbox.mkdir()
            config = work / "truagents-import.toml"
            config.write_text(
                f'[integration]\nhost = "127.0.0.1"\nport = {server.port}\nusername = "{server.username}"\n'
                f'private_key = "{pair.private_key}"\nhost_key = "{server.host_key_fingerprint}"\n\n'
                f'[[sources]]\nname = "latency"\npath = "{inbox}"\npattern = "contacts_*.csv"\nmin_age = 0\n'
                f'default_region = "US"\n\n[sink]\ntype = "sqlite"\npath = "contacts.db"\n\n'
                f'[state]\npath = "state.db"\n',
                encoding="utf-8",
            )
            argv = [
                sys.executable,
                "-c",
                "from truagents_import.cli import run; run()",
                "--log-format",
                "json",
                "watch",
                "--config",
                str(config),
                "--interval",
                str(args.interval),
            ]
            watcher = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            records = Records(watcher.stderr)
            records.start()
            try:
                _wait(records.started.is_set, "the watcher to start")
                uploader = Integration(
                    host="127.0.0.1",
                    port=server.port,
                    username=server.username,
                    private_key=pair.private_key,
                    host_key=server.host_key_fingerprint,
                )
                placed: dict[str, float] = {}
                with uploader:
                    for path in files:
                        uploader.upload(path, str(inbox))
                        placed[path.name] = time.time()
                        time.sleep(rng.uniform(0.3, 1.7))
                _wait(lambda: len(records.imported) >= len(files), "every file imported")
            finally:
                watcher.send_signal(signal.SIGTERM)
                status = watcher.wait(timeout=60)
    latencies = sorted(records.imported[name] - placed[name] for name in placed)
    took = sorted(records.took.values())
    return {
        "files": args.files,
        "rows": args.rows,
        "interval_s": args.interval,
        "p50_s": statistics.median(latencies),
        "p90_s": latencies[int(0.9 * (len(latencies) - 1))],
        "max_s": latencies[-1],
        "min_s": latencies[0],
        "import_p50_s": statistics.median(took),
        "import_max_s": took[-1],
        "watch_exit_status": status,
        "latencies_s": [round(x, 3) for x in latencies],
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--files", type=int, default=20)
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    result = run(args)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(
            f"upload-to-contacts latency under watch --interval {args.interval:g} "
            f"({args.files} files of {args.rows:,} rows, min_age = 0):\n"
            f"  p50 {result['p50_s']:.2f} s   p90 {result['p90_s']:.2f} s   max {result['max_s']:.2f} s   "
            f"min {result['min_s']:.2f} s   (watch exited {result['watch_exit_status']} on SIGTERM)\n"
            f"  of which importing the file (download, rows, sink): p50 {result['import_p50_s']:.2f} s, "
            f"max {result['import_max_s']:.2f} s; the rest is waiting for the next listing"
        )
    return 0 if result["watch_exit_status"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
