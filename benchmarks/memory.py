"""Memory and speed of one real import: a ~100 MB contacts file from SFTP into the SQLite sink.

    python benchmarks/memory.py [--rows 800000] [--seed 0] [--server auto|openssh|embedded]
                                [--sftp-repeats 3] [--limit-mb 150] [--profile] [--json]

What it does:

1. generates (once; cached under ``benchmarks/data/``, which git ignores) a deterministic
   contacts CSV with ``benchmarks/generate.py``: 800,000 rows are about 101 MB;
2. starts a real OpenSSH ``sshd`` on 127.0.0.1 through ``tests/sshd.py`` (or, without one, the
   embedded ``truagents_import.remote.server.SFTPServer``), with a fresh key pair and a pinned host key,
   and puts the file in its inbox;
3. in a CHILD process, so that nothing of this one (the generator, the server) is counted, runs
   ``Importer(DataSource(..., integration=Integration(...), min_age=0), SQLiteSink(...), state=...)``
   and reads the child's peak RSS from ``getrusage(RUSAGE_CHILDREN).ru_maxrss`` once it is reaped
   (cross-checked with ``wait4``'s figure for that child and the child's own ``RUSAGE_SELF``);
4. for reference, downloads the same file with the OpenSSH ``sftp`` client (``sftp -b`` batch,
   pinned host key, ``IdentitiesOnly``, ``BatchMode``, no user config), ``--sftp-repeats`` times,
   and gives the import time as a multiple of the median;
5. with ``--profile``, runs the import once more in a child under cProfile (after the measured
   run, so the figures above are not inflated) and prints the top 15 entries by cumulative time.

The importer's helper process (a second CPU, for large files) is a child of that child: its peak
RSS (``VmHWM``, sampled every 50 ms) is added to the importer's, and the sum is what the limit
applies to. It prints a table (or JSON with ``--json``) and exits 1 when that sum is above
``--limit-mb`` (150 MB, the target), 2 when the import did not succeed. Sizes are in MB of
2**20 bytes. Traffic goes to 127.0.0.1 only; the only processes it stops are those it started.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
DATA_DIR = BENCH_DIR / "data"
TESTS_DIR = REPO / "tests"

DEFAULT_ROWS = 800_000
LIMIT_MB = 150.0
CHILD_TIMEOUT = 3600.0
SFTP_TIMEOUT = 600.0
MB = float(1 << 20)


# -- the child: one import, measured ---------------------------------------------------------


class _RSSSampler:
    """Samples this process's resident set every 50 ms and keeps the peak of each named phase."""

    def __init__(self, interval: float = 0.05) -> None:
        import threading

        self.phase = "connect+list"
        self.peaks: dict[str, float] = {}
        self._interval = interval
        self._page = os.sysconf("SC_PAGE_SIZE")
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="rss-sampler", daemon=True)

    def _sample(self) -> None:
        try:
            with open("/proc/self/statm", encoding="ascii") as f:
                resident = int(f.read().split()[1]) * self._page / MB
        except (OSError, ValueError, IndexError):
            return
        phase = self.phase
        if resident > self.peaks.get(phase, 0.0):
            self.peaks[phase] = resident

    def _loop(self) -> None:
        while not self._stopped.wait(self._interval):
            self._sample()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join()
        self._sample()


class DescendantPeaks:
    """Every 50 ms, the peak RSS (``VmHWM``) of each process this one started (the importer's helper process)."""

    def __init__(self, interval: float = 0.05) -> None:
        self.peaks_mb: dict[int, float] = {}
        self._interval = interval
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="descendant-rss", daemon=True)

    def _sample(self) -> None:
        tasks = Path("/proc/self/task")
        try:
            children = {int(pid) for task in tasks.iterdir() for pid in (task / "children").read_text().split()}
        except (OSError, ValueError):
            return
        for pid in children:
            try:
                status = Path(f"/proc/{pid}/status").read_text(encoding="ascii")
            except OSError:
                continue
            for line in status.splitlines():
                if line.startswith("VmHWM:"):
                    mb = int(line.split()[1]) / 1024
                    self.peaks_mb[pid] = max(self.peaks_mb.get(pid, 0.0), mb)

    def _loop(self) -> None:
        while not self._stopped.wait(self._interval):
            self._sample()

    def start(self) -> None:
        """Start sampling."""
        self._thread.start()

    def stop(self) -> float:
        """Stop; the largest peak of any one descendant, in MB (0 when there was none)."""
        self._stopped.set()
        self._thread.join()
        return max(self.peaks_mb.values(), default=0.0)


def _child(spec_path: Path) -> int:
    """Run one import as the spec says and write what happened next to the spec, as JSON."""
    t_start = time.perf_counter()
    spec: dict[str, Any] = json.loads(spec_path.read_text(encoding="utf-8"))

    from truagents_import import DataSource, Importer, Integration, SQLiteSink
    from truagents_import.source import RemoteFile

    module_seconds = time.perf_counter() - t_start
    baseline_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    timings: dict[str, float] = {"download": 0.0, "sink_write": 0.0, "sink_commit": 0.0}
    sampler = _RSSSampler()
    sampler.start()
    helper = DescendantPeaks()
    helper.start()

    class TimedSource(DataSource):
        def download(self, file: RemoteFile | str, dest: Path, *args: Any, **kwargs: Any) -> str:
            t = time.perf_counter()
            sampler.phase = "download"
            try:
                return super().download(file, dest, *args, **kwargs)
            finally:
                timings["download"] += time.perf_counter() - t
                sampler.phase = "read+validate+stage"

    class TimedSink(SQLiteSink):
        # The importer hands the built-in SQLite sink its staging file (not write()): time that.
        def _load_staging(self, staging: Path, source: str, file: str) -> None:
            t = time.perf_counter()
            sampler.phase = "deliver (staging -> sink)"
            try:
                super()._load_staging(staging, source, file)
            finally:
                timings["sink_write"] += time.perf_counter() - t

        def commit(self) -> None:
            t = time.perf_counter()
            try:
                super().commit()
            finally:
                timings["sink_commit"] += time.perf_counter() - t
                sampler.phase = "state and cleanup"

    integration = Integration(
        host=spec["host"],
        port=spec["port"],
        username=spec["username"],
        private_key=Path(spec["private_key"]),
        host_key=spec["fingerprint"],
    )
    source = TimedSource(
        name="bench",
        path=spec["inbox_remote"],
        pattern="*.csv",
        default_region="US",
        default_timezone="America/New_York",
        min_age=0,
        integration=integration,
    )
    profiler = None
    if spec.get("profile"):
        import cProfile

        profiler = cProfile.Profile()
    t_run = time.perf_counter()
    with Importer(
        source,
        TimedSink(spec["sink_path"]),
        state=spec["state_path"],
        rejects_dir=spec["rejects_dir"],
    ) as importer:
        report = importer.run() if profiler is None else profiler.runcall(importer.run)
        run_seconds = time.perf_counter() - t_run
    sampler.stop()
    helper_mb = helper.stop()
    files = [
        {
            "path": f.path,
            "status": f.status,
            "reason": f.reason,
            "rows": f.rows,
            "imported": f.imported,
            "rejected": f.rejected,
            "duplicates": f.duplicates,
            "rejects_file": f.rejects_file,
            "warnings": f.warnings,
        }
        for f in report.files
    ]
    out: dict[str, Any] = {
        "files": files,
        "run_seconds": run_seconds,
        "module_seconds": module_seconds,
        "timings": timings,
        "baseline_maxrss_kb": baseline_kb,
        "self_maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        "rss_by_phase_mb": sampler.peaks,
        "helper_maxrss_mb": helper_mb,
    }
    return write_result(spec, out, profiler, sort="cumulative", top=15)


def write_result(spec: dict[str, Any], out: dict[str, Any], profiler: Any, *, sort: str, top: int) -> int:
    """End a child: its profile (when it ran under one) saved and summarised, its figures written as
    JSON where the parent reads them; the child's exit status."""
    if profiler is not None:
        import io
        import pstats

        profiler.dump_stats(spec["profile"])
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).strip_dirs().sort_stats(sort).print_stats(top)
        out["profile_text"] = text.getvalue()
    Path(spec["result_path"]).write_text(json.dumps(out), encoding="utf-8")
    return 0


# -- the parent ----------------------------------------------------------------------------------


@dataclass
class Endpoint:
    """An SFTP server on 127.0.0.1 with an inbox holding the file."""

    kind: str
    host: str
    port: int
    username: str
    fingerprint: str
    known_hosts_line: str
    inbox_remote: str
    inbox_local: Path


@dataclass
class ChildRun:
    """One child import and how much it took."""

    returncode: int
    wall_seconds: float
    rusage_children_maxrss_mb: float
    wait4_maxrss_mb: float
    user_seconds: float
    system_seconds: float
    result: dict[str, Any] = field(default_factory=dict)
    stderr_tail: str = ""


def _have_openssh() -> bool:
    sys.path.insert(0, str(TESTS_DIR))
    try:
        from sshd import find_sshd  # type: ignore[import-not-found]
    except ImportError:
        return False
    return find_sshd() is not None and shutil.which("sftp") is not None


@contextmanager
def _endpoint(kind: str, work: Path, authorized_line: str) -> Iterator[Endpoint]:
    """Start the chosen server (stopped on exit) with an inbox folder."""
    if kind == "openssh":
        sys.path.insert(0, str(TESTS_DIR))
        from sshd import run_sshd

        inbox = work / "inbox"
        inbox.mkdir()
        with run_sshd(work / "sshd", [authorized_line]) as sshd:
            yield Endpoint(
                kind="openssh",
                host=sshd.host,
                port=sshd.port,
                username=sshd.username,
                fingerprint=sshd.host_key_fingerprint,
                known_hosts_line=sshd.known_hosts_line,
                inbox_remote=str(inbox),
                inbox_local=inbox,
            )
        return
    from truagents_import.remote.server import SFTPServer

    root = work / "server"
    inbox = root / "inbox"
    inbox.mkdir(parents=True)
    username = getpass.getuser()
    with SFTPServer(root, [authorized_line], username=username) as server:
        yield Endpoint(
            kind="embedded",
            host=server.host,
            port=server.port,
            username=username,
            fingerprint=server.host_key_fingerprint,
            known_hosts_line=server.known_hosts_line(),
            inbox_remote="/inbox",
            inbox_local=inbox,
        )


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("SSH_AUTH_SOCK", None)  # never the developer's agent
    return env


def spawn_child(script: Path, spec_path: Path, stderr_path: Path, timeout: float) -> tuple[int, Any, float]:
    """Run ``script _child spec_path`` (stdout and stderr into ``stderr_path``) and reap it with wait4;
    killed after ``timeout`` seconds. Returns its exit code, its rusage and its wall seconds."""
    t = time.perf_counter()
    with stderr_path.open("wb") as err:
        proc = subprocess.Popen(
            [sys.executable, str(script), "_child", str(spec_path)],
            stdin=subprocess.DEVNULL,
            stdout=err,
            stderr=err,
            env=_child_env(),
        )
    deadline = time.monotonic() + timeout
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid == proc.pid:
            break
        if time.monotonic() > deadline:
            proc.kill()  # our own child, by its PID
            pid, status, usage = os.wait4(proc.pid, 0)
            break
        time.sleep(0.05)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, usage, time.perf_counter() - t


def _run_child(spec: dict[str, Any], spec_path: Path, timeout: float) -> ChildRun:
    """Run the import in a child, reap it with wait4 and read RUSAGE_CHILDREN right after."""
    spec_path.write_text(json.dumps(spec), encoding="utf-8")
    stderr_path = spec_path.with_suffix(".stderr")
    returncode, usage, wall = spawn_child(Path(__file__).resolve(), spec_path, stderr_path, timeout)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    result: dict[str, Any] = {}
    result_path = Path(spec["result_path"])
    if result_path.exists():
        result = json.loads(result_path.read_text(encoding="utf-8"))
    tail = stderr_path.read_text(encoding="utf-8", errors="replace")[-4000:]
    return ChildRun(
        returncode=returncode,
        wall_seconds=wall,
        rusage_children_maxrss_mb=children.ru_maxrss / 1024,
        wait4_maxrss_mb=usage.ru_maxrss / 1024,
        user_seconds=usage.ru_utime,
        system_seconds=usage.ru_stime,
        result=result,
        stderr_tail=tail,
    )


def _sftp_get(ep: Endpoint, key: Path, known_hosts: Path, remote: str, dest: Path, size: int) -> float:
    """Seconds for the OpenSSH sftp client to fetch ``remote`` into ``dest`` (then removed)."""
    batch = dest.with_suffix(".batch")
    batch.write_text(f'get "{remote}" "{dest}"\n', encoding="utf-8")
    sys.path.insert(0, str(TESTS_DIR))
    from sshd import sftp_batch_argv

    cmd = sftp_batch_argv(str(batch), ep.port, f"{ep.username}@{ep.host}", key, known_hosts)
    t = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, env=_child_env(), timeout=SFTP_TIMEOUT, check=False)
    seconds = time.perf_counter() - t
    got = dest.stat().st_size if dest.exists() else -1
    dest.unlink(missing_ok=True)
    # The embedded server sends no exit status for SFTP sessions, so judge by the bytes received.
    if got != size:
        msg = f"sftp get failed (rc {done.returncode}, {got} of {size} bytes): {done.stderr.decode(errors='replace')}"
        raise RuntimeError(msg)
    return seconds


def _reject_codes(path: str | None) -> dict[str, int]:
    """Counts of ``_code`` in a rejects file, read as a stream."""
    if not path or not Path(path).exists():
        return {}
    import csv

    counts: Counter[str] = Counter()
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.reader(f)
        header = next(reader)
        index = header.index("_code")
        for row in reader:
            counts[row[index] if index < len(row) else "?"] += 1
    return dict(counts.most_common())


def _data_file(rows: int, seed: int, huge_rows: int = 0, huge_mb: int = 140) -> tuple[Path, float | None]:
    """The cached input file, generated when missing; with the generation time when it was.

    With ``huge_rows``, that many rows holding a ``huge_mb`` MB field are spread through the file
    (half of them quoted across many lines, half on one line): each must be rejected as
    ``field_too_large`` without the importer's memory growing with it.
    """
    path = DATA_DIR / f"contacts-{rows}-seed{seed}.csv"
    started = time.perf_counter()
    made = False
    if not path.exists():
        sys.path.insert(0, str(BENCH_DIR))
        from generate import generate  # type: ignore[import-not-found,unused-ignore]

        generate(path, rows, seed=seed)
        made = True
    if huge_rows:
        huge = DATA_DIR / f"contacts-{rows}-seed{seed}-huge{huge_rows}x{huge_mb}mb.csv"
        if not huge.exists():
            _with_huge_rows(path, huge, rows, huge_rows, huge_mb)
            made = True
        path = huge
    return path, (time.perf_counter() - started) if made else None


def _with_huge_rows(src: Path, dest: Path, rows: int, count: int, mb: int) -> None:
    every = max(1, rows // (count + 1))
    line = b"y" * (1 << 20)
    partial = dest.with_name(f".{dest.name}.part")
    with src.open("rb") as inp, partial.open("wb") as out:
        out.write(inp.readline())  # the header
        placed = 0
        for n, row in enumerate(inp, start=1):
            out.write(row)
            if placed < count and n % every == 0:
                multiline = placed % 2 == 0
                out.write(f"HUGE-{placed},huge{placed}@example.com,,,,,,,,\"".encode())
                for _ in range(mb):
                    out.write(line)
                    if multiline:
                        out.write(b"\n")
                out.write(b'"\n')
                placed += 1
    partial.replace(dest)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Do the whole benchmark and return its figures."""
    from truagents_import.remote import keys

    data, generated_in = _data_file(args.rows, args.seed, args.huge_rows, args.huge_mb)
    load_before = os.getloadavg()[0]
    size = data.stat().st_size
    kind = args.server
    if kind == "auto":
        kind = "openssh" if _have_openssh() else "embedded"
    with tempfile.TemporaryDirectory(prefix="truagents-bench-") as tmp:
        work = Path(tmp)
        key = keys.generate_key_pair("truagents-import benchmark")
        pair = keys.write_key_pair(key, work / "keys", "id_ed25519")
        with _endpoint(kind, work, keys.authorized_keys_line(key)) as ep:
            name = "contacts.csv"
            shutil.copyfile(data, ep.inbox_local / name)
            remote = f"{ep.inbox_remote.rstrip('/')}/{name}"

            def spec(tag: str, profile: Path | None) -> dict[str, Any]:
                folder = work / tag
                folder.mkdir()
                return {
                    "host": ep.host,
                    "port": ep.port,
                    "username": ep.username,
                    "private_key": str(pair.private_key),
                    "fingerprint": ep.fingerprint,
                    "inbox_remote": ep.inbox_remote,
                    "sink_path": str(folder / "contacts.db"),
                    "state_path": str(folder / "state.db"),
                    "rejects_dir": str(folder / "rejects"),
                    "result_path": str(folder / "result.json"),
                    "profile": None if profile is None else str(profile),
                }

            measured_spec = spec("measured", None)
            child = _run_child(measured_spec, work / "measured" / "spec.json", args.timeout)
            load_after = os.getloadavg()[0]
            files = child.result.get("files", [])
            rejects = _reject_codes(files[0].get("rejects_file") if files else None)
            sink_rows = None
            if Path(measured_spec["sink_path"]).exists():
                import sqlite3

                db = sqlite3.connect(measured_spec["sink_path"])
                try:
                    sink_rows = int(db.execute("SELECT count(*) FROM contacts").fetchone()[0])
                finally:
                    db.close()

            known_hosts = work / "known_hosts"
            known_hosts.write_text(ep.known_hosts_line + "\n", encoding="ascii")
            sftp_times = [
                _sftp_get(ep, pair.private_key, known_hosts, remote, work / f"sftp-get-{i}.csv", size)
                for i in range(args.sftp_repeats)
            ]

            profile: ChildRun | None = None
            profile_file = None
            if args.profile:
                profile_file = DATA_DIR / f"import-{args.rows}-seed{args.seed}.prof"
                profile = _run_child(spec("profiled", profile_file), work / "profiled" / "spec.json", args.timeout)

    first: dict[str, Any] = files[0] if files else {}
    run_seconds = float(child.result.get("run_seconds", float("nan")))
    helper_peak = float(child.result.get("helper_maxrss_mb", 0.0))
    rows = int(first.get("rows", 0))
    sftp_median = statistics.median(sftp_times) if sftp_times else float("nan")
    timings: dict[str, float] = child.result.get("timings", {})
    accounted = sum(timings.values())
    return {
        "server": kind,
        "file": str(data),
        "file_bytes": size,
        "file_mb": size / MB,
        "generated_seconds": generated_in,
        "status": first.get("status", "no result"),
        "reason": first.get("reason"),
        "rows": rows,
        "imported": first.get("imported"),
        "rejected": first.get("rejected"),
        "duplicates": first.get("duplicates"),
        "sink_rows": sink_rows,
        "reject_codes": rejects,
        "import_seconds": run_seconds,
        "child_wall_seconds": child.wall_seconds,
        "child_module_seconds": child.result.get("module_seconds"),
        "child_user_seconds": child.user_seconds,
        "child_system_seconds": child.system_seconds,
        "rows_per_second": rows / run_seconds if run_seconds > 0 else None,
        "peak_rss_mb": child.rusage_children_maxrss_mb,
        "helper_peak_rss_mb": helper_peak,
        "peak_rss_total_mb": child.rusage_children_maxrss_mb + helper_peak,
        "peak_rss_wait4_mb": child.wait4_maxrss_mb,
        "peak_rss_self_mb": child.result.get("self_maxrss_kb", 0) / 1024,
        "rss_after_imports_mb": child.result.get("baseline_maxrss_kb", 0) / 1024,
        "rss_by_phase_mb": child.result.get("rss_by_phase_mb", {}),
        "limit_mb": args.limit_mb,
        "breakdown_seconds": {**timings, "read_validate_stage_state": run_seconds - accounted},
        "sftp_seconds": sftp_times,
        "sftp_median_seconds": sftp_median,
        "import_to_sftp_ratio": run_seconds / sftp_median if sftp_median > 0 else None,
        "cpus": os.cpu_count(),
        "load_average_1min": [load_before, load_after],
        "child_returncode": child.returncode,
        "child_stderr_tail": child.stderr_tail if child.returncode else "",
        "profile_file": None if profile_file is None else str(profile_file),
        "profile_seconds": None if profile is None else profile.result.get("run_seconds"),
        "profile_top15": None if profile is None else profile.result.get("profile_text"),
    }


def _table(r: dict[str, Any]) -> str:
    verdict = "OK" if r["peak_rss_total_mb"] <= r["limit_mb"] else "OVER THE LIMIT"
    b = r["breakdown_seconds"]
    lines = [
        f"truagents_import memory benchmark: {r['server']} server on 127.0.0.1, SQLite sink",
        f"{'file':<16}{r['file']} ({r['file_mb']:.1f} MB)",
        f"{'status':<16}{r['status']}" + (f" ({r['reason']})" if r["reason"] else ""),
        f"{'rows':<16}{r['rows']:,} = {r['imported']:,} imported + {r['rejected']:,} rejected"
        f" + {r['duplicates']:,} duplicates; sink holds {r['sink_rows']:,}"
        if r["imported"] is not None and r["sink_rows"] is not None
        else f"{'rows':<16}{r['rows']:,}",
        f"{'rejects':<16}" + ", ".join(f"{k} {v:,}" for k, v in r["reject_codes"].items()),
        f"{'wall time':<16}{r['import_seconds']:.2f} s Importer.run() "
        f"(child process {r['child_wall_seconds']:.2f} s; CPU user {r['child_user_seconds']:.1f} s"
        f" + sys {r['child_system_seconds']:.1f} s)",
        f"{'rows/s':<16}{r['rows_per_second']:,.0f}" if r["rows_per_second"] else f"{'rows/s':<16}-",
        f"{'peak RSS':<16}{r['peak_rss_total_mb']:.1f} MB = importer {r['peak_rss_mb']:.1f} MB"
        f" ({r['rss_after_imports_mb']:.1f} MB after its imports) + helper process {r['helper_peak_rss_mb']:.1f} MB;"
        f" limit {r['limit_mb']:g} MB {verdict}",
        f"{'RSS by phase':<16}"
        + ", ".join(f"{k} {v:.0f}" for k, v in r["rss_by_phase_mb"].items())
        + " MB (peaks, sampled every 50 ms)",
        f"{'sftp get':<16}{r['sftp_median_seconds']:.2f} s median of "
        + ", ".join(f"{s:.2f}" for s in r["sftp_seconds"])
        + " (OpenSSH sftp client, same file)",
        f"{'import / sftp':<16}{r['import_to_sftp_ratio']:.1f}x" if r["import_to_sftp_ratio"] else "",
        f"{'machine':<16}{r['cpus']} CPUs; 1-min load average {r['load_average_1min'][0]:.2f} before the"
        f" import, {r['load_average_1min'][1]:.2f} after"
        + (" (busy: wall time includes waiting for a CPU)" if max(r["load_average_1min"]) > (r["cpus"] or 1) else ""),
        f"{'breakdown':<16}download {b.get('download', 0):.2f} s, read+validate+stage+state "
        f"{b['read_validate_stage_state']:.2f} s, sink write {b.get('sink_write', 0):.2f} s, "
        f"sink commit {b.get('sink_commit', 0):.2f} s",
    ]
    if r["profile_top15"]:
        lines += [
            "",
            f"cProfile of a second child run ({r['profile_seconds']:.1f} s under the profiler; {r['profile_file']}):",
            r["profile_top15"].rstrip(),
        ]
    if r["child_stderr_tail"]:
        lines += ["", "child stderr (tail):", r["child_stderr_tail"]]
    return "\n".join(line for line in lines if line)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["_child"] and len(argv) == 2:
        return _child(Path(argv[1]))
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=DEFAULT_ROWS, help=f"rows in the file (default {DEFAULT_ROWS:,})")
    parser.add_argument("--seed", type=int, default=0, help="generator seed (default 0)")
    parser.add_argument("--huge-rows", type=int, default=0, help="add this many rows with one huge field each")
    parser.add_argument("--huge-mb", type=int, default=140, help="size of each huge field in MB (default 140)")
    parser.add_argument("--server", choices=("auto", "openssh", "embedded"), default="auto")
    parser.add_argument("--sftp-repeats", type=int, default=3, help="OpenSSH sftp reference downloads (median)")
    parser.add_argument("--limit-mb", type=float, default=LIMIT_MB, help=f"peak RSS target (default {LIMIT_MB:g})")
    parser.add_argument("--timeout", type=float, default=CHILD_TIMEOUT, help="seconds before the child is killed")
    parser.add_argument("--profile", action="store_true", help="also cProfile a second child run (top 15 cumulative)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    if args.sftp_repeats < 1:
        parser.error("--sftp-repeats must be at least 1")
    result = run(args)
    print(json.dumps(result, indent=2) if args.json else _table(result))
    if result["child_returncode"] != 0 or result["status"] != "imported":
        print(f"the import did not succeed: {result['status']} {result['reason'] or ''}".rstrip(), file=sys.stderr)
        return 2
    if result["peak_rss_total_mb"] > args.limit_mb:
        print(
            f"peak RSS {result['peak_rss_total_mb']:.1f} MB (importer + helper) is above {args.limit_mb:g} MB",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
