"""Throughput of the whole import, step by step, as a ratio to the raw transfer of the same file.

    python benchmarks/throughput.py [--rows 1000000] [--seed 0] [--server auto|openssh|embedded]
                                    [--steps transfer,parse,null,memory,sqlite] [--repeats 1]
                                    [--sftp-repeats 3] [--limit-mb 150] [--profile] [--json]

What it does:

1. generates (once; cached under ``benchmarks/data/``, which git ignores) a deterministic
   contacts CSV with ``benchmarks/generate.py``: 1,000,000 rows are about 127 MB;
2. starts a real OpenSSH ``sshd`` on 127.0.0.1 (the embedded ``truagents_import.remote.server.SFTPServer``
   when there is none) with a fresh key pair and a pinned host key, the file in its inbox
   (the server set-up of ``benchmarks/memory.py``);
3. measures, each step in a fresh CHILD process (so nothing of this one is counted) whose peak
   RSS is read from ``wait4`` when it is reaped:

   ``transfer``  the raw transfer: the OpenSSH ``sftp`` client fetching the file (median of
                 ``--sftp-repeats``); without that client, the importer's own download;
   ``parse``     reading the local file with ``reading.open_rows`` (decode, CSV, limits), no mapping;
   ``null``      ``Importer.run`` from SFTP into a sink that discards what it is given: the
                 importer's own cost (download, read, map, validate, stage, deliver);
   ``memory``    the same into the ``MemorySink`` (which keeps every contact: its RSS grows
                 with the file by design; skipped above 2,000,000 rows unless named in ``--steps``);
   ``sqlite``    the same into the ``SQLiteSink`` (a fresh database file);

4. prints a table: seconds, rows/s, microseconds per row, peak RSS of the step's process (and of
   the importer's worker process, when it used one), and each time as a multiple of the raw
   transfer measured in the same run. With ``--profile``, the SQLite import runs once more under
   cProfile (after the measured runs) and the top entries by own time are printed.

Exit status: 0, or 1 when the SQLite import's peak RSS (importer plus helper process) is above
``--limit-mb``, or 2 when an import did not succeed. ``--rows 10000000`` is the memory check: RSS
must not grow with the file.
Traffic goes to 127.0.0.1 only; the only processes it stops are those it started.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))

import memory  # noqa: E402  (the server set-up, the sftp client and the cached data file)

DEFAULT_ROWS = 1_000_000
LIMIT_MB = 150.0
CHILD_TIMEOUT = 3600.0
MB = float(1 << 20)
STEPS = ("transfer", "parse", "null", "memory", "sqlite")
#: Above this many rows the memory sink (which keeps every contact) is left out unless asked for.
MEMORY_SINK_MAX_ROWS = 2_000_000


# -- the child: one step, measured -------------------------------------------------------------


class _NullSink:
    """Takes contacts and forgets them: what is left is the importer's own cost."""

    def write(self, contacts: Sequence[Any]) -> None:
        """Discard a batch."""

    def commit(self) -> None:
        """Nothing to commit."""

    def close(self) -> None:
        """Nothing to release."""


def _child(spec_path: Path) -> int:
    """Run one step as the spec says and write its figures next to the spec, as JSON."""
    spec: dict[str, Any] = json.loads(spec_path.read_text(encoding="utf-8"))
    descendants = memory.DescendantPeaks()
    descendants.start()
    step = spec["step"]
    out: dict[str, Any] = {}
    profiler = None
    if spec.get("profile"):
        import cProfile

        profiler = cProfile.Profile()
    if step == "parse":
        from truagents_import.reading import open_rows

        out["setup_cpu_seconds"] = time.process_time()
        t = time.perf_counter()
        rows = 0
        with open_rows(Path(spec["file"])) as (_layout, it):
            for _row in it:
                rows += 1
        out.update(seconds=time.perf_counter() - t, rows=rows, status="parsed")
    elif step == "download":
        from truagents_import import DataSource, Integration

        source = DataSource(
            name="bench", path=spec["inbox_remote"], min_age=0, integration=_integration(spec, Integration)
        )
        out["setup_cpu_seconds"] = time.process_time()
        t = time.perf_counter()
        source.download(spec["remote"], Path(spec["dest"]))
        out.update(seconds=time.perf_counter() - t, rows=0, status="downloaded")
        source.integration.close()  # type: ignore[union-attr]
    else:
        from truagents_import import DataSource, Importer, Integration, MemorySink, SQLiteSink

        sink: Any = {"null": _NullSink, "memory": MemorySink}.get(step)
        sink = SQLiteSink(spec["sink_path"]) if sink is None else sink()
        source = DataSource(
            name="bench",
            path=spec["inbox_remote"],
            pattern="*.csv",
            default_region="US",
            default_timezone="America/New_York",
            min_age=0,
            integration=_integration(spec, Integration),
        )
        out["setup_cpu_seconds"] = time.process_time()
        t = time.perf_counter()
        with Importer(source, sink, state=spec["state_path"], rejects_dir=spec["rejects_dir"]) as importer:
            report = importer.run() if profiler is None else profiler.runcall(importer.run)
            seconds = time.perf_counter() - t
            if step == "memory":
                out["sink_rows"] = len(sink.contacts)
        f = report.files[0] if report.files else None
        out.update(
            seconds=seconds,
            rows=f.rows if f else 0,
            status=f.status if f else "no file",
            reason=f.reason if f else None,
            imported=f.imported if f else 0,
            rejected=f.rejected if f else 0,
            duplicates=f.duplicates if f else 0,
        )
    out["self_maxrss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out["worker_maxrss_mb"] = descendants.stop()
    return memory.write_result(spec, out, profiler, sort="tottime", top=25)


def _integration(spec: dict[str, Any], integration_class: Any) -> Any:
    return integration_class(
        host=spec["host"],
        port=spec["port"],
        username=spec["username"],
        private_key=Path(spec["private_key"]),
        host_key=spec["fingerprint"],
    )


# -- the parent ----------------------------------------------------------------------------------


@dataclass
class Step:
    """One measured step: its runs and what the child said."""

    name: str
    label: str
    seconds: list[float] = field(default_factory=list)
    rss_mb: float = 0.0
    worker_rss_mb: float = 0.0
    cpu_seconds: list[float] = field(default_factory=list)
    result: dict[str, Any] = field(default_factory=dict)
    error: str = ""

    @property
    def median(self) -> float:
        """The median time of the runs (NaN without any)."""
        return statistics.median(self.seconds) if self.seconds else float("nan")


def _run_child(spec: dict[str, Any], folder: Path, timeout: float) -> tuple[dict[str, Any], float, float, str]:
    """Run a child for ``spec`` and reap it with wait4.

    Returns its result, its peak RSS (MB), the CPU seconds of its measured part (with the worker
    process it waited for) and, when it failed, its stderr.
    """
    folder.mkdir(parents=True, exist_ok=True)
    spec = {**spec, "result_path": str(folder / "result.json")}
    spec_path = folder / "spec.json"
    spec_path.write_text(json.dumps(spec), encoding="utf-8")
    stderr_path = folder / "stderr.txt"
    returncode, usage, _wall = memory.spawn_child(Path(__file__).resolve(), spec_path, stderr_path, timeout)
    result_path = Path(spec["result_path"])
    result = json.loads(result_path.read_text(encoding="utf-8")) if result_path.exists() else {}
    tail = stderr_path.read_text(encoding="utf-8", errors="replace")[-4000:] if returncode else ""
    # wait4's usage covers the child and the children it waited for (the importer's worker).
    cpu = usage.ru_utime + usage.ru_stime - float(result.get("setup_cpu_seconds", 0.0))
    return result, usage.ru_maxrss / 1024, cpu, tail


def _steps(args: argparse.Namespace) -> list[str]:
    wanted = [s.strip() for s in args.steps.split(",") if s.strip()]
    unknown = sorted(set(wanted) - set(STEPS))
    if unknown:
        msg = f"unknown steps: {', '.join(unknown)} (known: {', '.join(STEPS)})"
        raise SystemExit(msg)
    if args.steps == ",".join(STEPS) and args.rows > MEMORY_SINK_MAX_ROWS:
        wanted.remove("memory")
    return wanted


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Do the whole benchmark and return its figures."""
    from truagents_import.remote import keys

    data, generated_in = memory._data_file(args.rows, args.seed)
    size = data.stat().st_size
    wanted = _steps(args)
    kind = args.server
    if kind == "auto":
        kind = "openssh" if memory._have_openssh() else "embedded"
    have_sftp = shutil.which("sftp") is not None
    load_before = os.getloadavg()[0]
    steps: dict[str, Step] = {}
    profile_text = None
    with tempfile.TemporaryDirectory(prefix="truagents-throughput-") as tmp:
        work = Path(tmp)
        key = keys.generate_key_pair("truagents-import benchmark")
        pair = keys.write_key_pair(key, work / "keys", "id_ed25519")
        with memory._endpoint(kind, work, keys.authorized_keys_line(key)) as ep:
            name = "contacts.csv"
            shutil.copyfile(data, ep.inbox_local / name)
            remote = f"{ep.inbox_remote.rstrip('/')}/{name}"
            base = {
                "host": ep.host,
                "port": ep.port,
                "username": ep.username,
                "private_key": str(pair.private_key),
                "fingerprint": ep.fingerprint,
                "inbox_remote": ep.inbox_remote,
                "remote": remote,
                "file": str(data),
            }
            counter = 0

            def child(step: str, profile: Path | None = None) -> tuple[dict[str, Any], float, float, str]:
                nonlocal counter
                counter += 1
                folder = work / f"{counter:02d}-{step}"
                spec = {
                    **base,
                    "step": step,
                    "sink_path": str(folder / "contacts.db"),
                    "state_path": str(folder / "state.db"),
                    "rejects_dir": str(folder / "rejects"),
                    "dest": str(folder / "download.csv"),
                    "profile": None if profile is None else str(profile),
                }
                return _run_child(spec, folder, args.timeout)

            if "transfer" in wanted:
                label = "raw transfer (OpenSSH sftp get)" if have_sftp else "raw transfer (the importer's download)"
                step = steps["transfer"] = Step("transfer", label)
                if have_sftp:
                    known_hosts = work / "known_hosts"
                    known_hosts.write_text(ep.known_hosts_line + "\n", encoding="ascii")
                    for i in range(args.sftp_repeats):
                        dest = work / f"sftp-get-{i}.csv"
                        step.seconds.append(memory._sftp_get(ep, pair.private_key, known_hosts, remote, dest, size))
                else:
                    for _ in range(args.sftp_repeats):
                        result, rss, cpu, error = child("download")
                        step.seconds.append(float(result.get("seconds", float("nan"))))
                        step.cpu_seconds.append(cpu)
                        step.rss_mb, step.error = max(step.rss_mb, rss), error
            labels = {
                "parse": "parse only (open_rows, local file)",
                "null": "import, discarding sink",
                "memory": "import into the memory sink",
                "sqlite": "import into SQLite",
            }
            for name_ in ("parse", "null", "memory", "sqlite"):
                if name_ not in wanted:
                    continue
                step = steps[name_] = Step(name_, labels[name_])
                for _ in range(args.repeats):
                    result, rss, cpu, error = child(name_)
                    step.seconds.append(float(result.get("seconds", float("nan"))))
                    step.cpu_seconds.append(cpu)
                    step.rss_mb = max(step.rss_mb, rss)
                    step.worker_rss_mb = max(step.worker_rss_mb, float(result.get("worker_maxrss_mb", 0.0)))
                    step.result, step.error = result, error
            if args.profile:
                profile_file = memory.DATA_DIR / f"throughput-{args.rows}-seed{args.seed}.prof"
                result, _rss, _cpu, _error = child("sqlite", profile_file)
                profile_text = result.get("profile_text")
    transfer = steps["transfer"].median if "transfer" in steps else float("nan")
    out_steps = []
    for step in steps.values():
        rows = int(step.result.get("rows", args.rows)) if step.name != "transfer" else args.rows
        seconds = step.median
        out_steps.append(
            {
                "step": step.name,
                "label": step.label,
                "seconds": seconds,
                "runs": step.seconds,
                "rows": rows,
                "rows_per_second": rows / seconds if seconds > 0 else None,
                "us_per_row": seconds / rows * 1e6 if rows else None,
                "cpu_seconds": statistics.median(step.cpu_seconds) if step.cpu_seconds else None,
                "peak_rss_mb": step.rss_mb or None,
                "worker_peak_rss_mb": step.worker_rss_mb or None,
                "ratio_to_transfer": seconds / transfer if transfer > 0 else None,
                "status": step.result.get("status"),
                "reason": step.result.get("reason"),
                "imported": step.result.get("imported"),
                "rejected": step.result.get("rejected"),
                "duplicates": step.result.get("duplicates"),
                "error": step.error,
            }
        )
    return {
        "server": kind,
        "file": str(data),
        "file_mb": size / MB,
        "rows": args.rows,
        "generated_seconds": generated_in,
        "steps": out_steps,
        "cpus": os.cpu_count(),
        "load_average_1min": [load_before, os.getloadavg()[0]],
        "limit_mb": args.limit_mb,
        "profile_top": profile_text,
        "python": sys.version.split()[0],
    }


def _fmt(value: float | None, spec: str, missing: str = "-") -> str:
    return missing if value is None or value != value else format(value, spec)  # NaN != NaN


def _table(r: dict[str, Any]) -> str:
    lines = [
        f"truagents_import throughput: {r['rows']:,} rows, {r['file_mb']:.1f} MB, {r['server']} server on 127.0.0.1,"
        f" {r['cpus']} CPUs, 1-min load {r['load_average_1min'][0]:.2f} -> {r['load_average_1min'][1]:.2f}",
        "",
        f"{'step':<38}{'seconds':>9}{'rows/s':>11}{'us/row':>8}{'CPU s':>7}{'peak RSS MB':>13}{'x transfer':>12}",
    ]
    for s in r["steps"]:
        rss = _fmt(s["peak_rss_mb"], ".0f")
        if s["worker_peak_rss_mb"]:
            rss += f" +{s['worker_peak_rss_mb']:.0f}"
        lines.append(
            f"{s['label']:<38}{_fmt(s['seconds'], '.2f'):>9}{_fmt(s['rows_per_second'], ',.0f'):>11}"
            f"{_fmt(s['us_per_row'], '.2f'):>8}{_fmt(s['cpu_seconds'], '.1f'):>7}{rss:>13}"
            f"{_fmt(s['ratio_to_transfer'], '.1f'):>11}x"
        )
    lines.append("")
    lines.append("CPU s: user + system of the step's process and the worker it ran (2 CPUs: up to twice the seconds).")
    lines.append("peak RSS: of the step's process; +N: of the importer's worker process, when it ran one.")
    for s in r["steps"]:
        if s["imported"] is not None:
            lines.append(
                f"{s['step']}: {s['status']}"
                + (f" ({s['reason']})" if s["reason"] else "")
                + f"; {s['rows']:,} rows = {s['imported']:,} imported + {s['rejected']:,} rejected"
                f" + {s['duplicates']:,} duplicates"
            )
        if s["error"]:
            lines += [f"{s['step']} failed:", s["error"]]
    if r["profile_top"]:
        lines += ["", "cProfile of one more SQLite import (top entries by own time):", r["profile_top"].rstrip()]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["_child"] and len(argv) == 2:
        return _child(Path(argv[1]))
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=DEFAULT_ROWS, help=f"rows in the file (default {DEFAULT_ROWS:,})")
    parser.add_argument("--seed", type=int, default=0, help="generator seed (default 0)")
    parser.add_argument("--server", choices=("auto", "openssh", "embedded"), default="auto")
    parser.add_argument("--steps", default=",".join(STEPS), help=f"comma-separated (default {','.join(STEPS)})")
    parser.add_argument("--repeats", type=int, default=1, help="runs of each import step (median)")
    parser.add_argument("--sftp-repeats", type=int, default=3, help="raw transfers (median)")
    parser.add_argument(
        "--limit-mb", type=float, default=LIMIT_MB, help=f"SQLite import peak RSS target ({LIMIT_MB:g})"
    )
    parser.add_argument("--timeout", type=float, default=CHILD_TIMEOUT, help="seconds before a child is killed")
    parser.add_argument("--profile", action="store_true", help="also cProfile one more SQLite import")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    # `nox -s bench -- ARGS` gives ARGS to memory.py too: leave the ones only it knows (--huge-rows, ...).
    args, ignored = parser.parse_known_args(argv)
    if ignored:
        print(f"throughput.py: ignoring {' '.join(ignored)} (for benchmarks/memory.py)", file=sys.stderr)
    if args.repeats < 1 or args.sftp_repeats < 1:
        parser.error("--repeats and --sftp-repeats must be at least 1")
    result = run(args)
    print(json.dumps(result, indent=2) if args.json else _table(result))
    failed = [s for s in result["steps"] if s["step"] in ("null", "memory", "sqlite") and s["status"] != "imported"]
    if failed:
        print("an import did not succeed: " + ", ".join(f"{s['step']} {s['status']}" for s in failed), file=sys.stderr)
        return 2
    sqlite = next((s for s in result["steps"] if s["step"] == "sqlite"), None)
    total = (sqlite or {}).get("peak_rss_mb") or 0.0
    total += (sqlite or {}).get("worker_peak_rss_mb") or 0.0
    if sqlite is not None and total > args.limit_mb:
        message = f"SQLite import peak RSS {total:.1f} MB (importer + helper) is above {args.limit_mb:g} MB"
        print(message, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
