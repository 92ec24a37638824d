"""The benchmark workload of issue 18, measured in one run: the floor, pyarrow, this library, dlt.

    python benchmarks/workload.py [--rows 1000000] [--seed 20240601] [--sftp-repeats 3]
                                  [--steps floor,pyarrow,sqlite,postgres,dlt,dlt-local]
                                  [--timeout SECONDS] [--profile] [--json] [--save FILE]

What it does:

1. generates (once; cached under ``benchmarks/data/``, which git ignores) the benchmark file with
   ``../shared/bench/gen_contacts.py ROWS --seed 20240601`` exactly as that folder's README says
   (``$TRUAGENTS_BENCH_GENERATOR`` names another copy of the generator);
2. starts a real OpenSSH ``sshd`` on 127.0.0.1 (``tests/sshd.py``: fresh host key, pinned) and puts
   the file in its inbox with the OpenSSH ``sftp`` client;
3. measures, each step one fresh process (or process group) timed by its wall clock:

   ``floor``      ``sftp`` getting the file to /dev/null, best of ``--sftp-repeats``;
   ``pyarrow``    ``pyarrow.csv.open_csv`` streaming the local file, every column as a string
                  (the parse itself; skipped with a note when pyarrow is not installed);
   ``sqlite``     ``truagents-import import --json`` as ONE process, with a fresh configuration
                  (``default_region = "US"``, ``default_timezone = "America/Chicago"``, the file
                  on the sshd), into a fresh SQLite database: the whole command's wall clock;
   ``postgres``   the same into a throwaway PostgreSQL cluster (``tests/pg.py``, fsync on);
   ``dlt``        dlt's fastest path: its filesystem source over ``sftp://`` (paramiko, as dlt
                  documents it; the host key pinned) piped into ``read_csv_duckdb(use_pyarrow=True)``,
                  loaded into DuckDB, validating nothing; skipped with a note without dlt;
   ``dlt-local``  the same on the local copy of the file (``file://``): dlt without the transfer;

4. takes each step's peak memory as the sum of the peak RSS (``VmHWM``) of every process in its
   group (the importer and its helper process), sampled every 25 ms from /proc and cross-checked
   with ``wait4`` (``procgroup.py``); the largest sum of their RSS at one moment is given too;
5. checks the import reports: rows = imported + rejected + duplicates, rows = the file's rows, the
   sink holding ``imported`` rows; dlt and pyarrow must see every row too;
6. with ``--profile``, runs the SQLite import once more under ``py-spy`` (helper process included;
   cProfile of the main process when py-spy is not installed) and prints the top entries.

It prints a table (JSON with ``--json``): seconds, rows/s, the ratio to the floor of the same run,
peak memory. Exit status 1 when a step failed or a report does not account for every row; the
targets of issue 18 are printed, not enforced. Each step is killed after ``--timeout`` seconds
(by default 60 s + 300 s per million rows). Only 127.0.0.1 is contacted; the only processes it
stops are those it started.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
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
CHILDREN = [sys.executable, str(BENCH_DIR / "workload_children.py")]
sys.path.insert(0, str(BENCH_DIR))

from procgroup import Measured, run_measured  # noqa: E402

GENERATOR = Path(os.environ.get("TRUAGENTS_BENCH_GENERATOR", REPO.parent / "shared" / "bench" / "gen_contacts.py"))

DEFAULT_ROWS = 1_000_000
DEFAULT_SEED = 20240601
STEPS = ("floor", "pyarrow", "sqlite", "postgres", "dlt", "dlt-local")
#: Issue 18's targets, printed next to the figures.
TARGETS = {"sqlite": 200_000, "postgres": 150_000}
TARGET_MB = 150.0
MB = float(1 << 20)


# -- the parent: server, steps, figures ------------------------------------------------------------


@dataclass
class Bench:
    """What the steps share: the file, the server, the key, where to work."""

    args: argparse.Namespace
    data: Path
    work: Path
    host: str = "127.0.0.1"
    port: int = 0
    username: str = ""
    fingerprint: str = ""
    host_key_blob: str = ""
    private_key: Path = Path()
    known_hosts: Path = Path()
    inbox: Path = Path()
    remote: str = ""
    counter: int = 0
    results: dict[str, dict[str, Any]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def folder(self, name: str) -> Path:
        """A fresh folder for one process."""
        self.counter += 1
        return self.work / f"{self.counter:02d}-{name}"


def data_file(rows: int, seed: int) -> tuple[Path, float]:
    """The cached benchmark file, generated when missing; the seconds generating took (0 when cached)."""
    path = DATA_DIR / f"workload-{rows}-seed{seed}.csv"
    if path.exists():
        return path, 0.0
    if not GENERATOR.is_file():
        msg = f"the generator {GENERATOR} is missing (set TRUAGENTS_BENCH_GENERATOR to its path)"
        raise SystemExit(msg)
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".csv.part")
    t = time.perf_counter()
    subprocess.run([sys.executable, str(GENERATOR), str(rows), "--seed", str(seed), "--out", str(partial)],
                   check=True, timeout=7200)  # fmt: skip
    partial.replace(path)
    return path, time.perf_counter() - t


@contextmanager
def _server(bench: Bench) -> Iterator[None]:
    """An OpenSSH sshd on 127.0.0.1 (stopped on exit) with the file put in its inbox by ``sftp``."""
    sys.path.insert(0, str(TESTS_DIR))
    from sshd import find_sshd, run_sshd, sftp_batch_argv  # type: ignore[import-not-found,unused-ignore]
    from truagents_import.remote import keys

    if find_sshd() is None or shutil.which("sftp") is None:
        msg = "OpenSSH sshd and sftp are needed (apt-get install openssh-server openssh-client; PATH=$PATH:/usr/sbin)"
        raise SystemExit(msg)
    key = keys.generate_key_pair("truagents-import workload benchmark")
    bench.private_key = keys.write_key_pair(key, bench.work / "keys", "id_ed25519").private_key
    bench.inbox = bench.work / "inbox"
    bench.inbox.mkdir()
    with run_sshd(bench.work / "sshd", [keys.authorized_keys_line(key)]) as sshd:
        bench.port, bench.username, bench.fingerprint = sshd.port, sshd.username, sshd.host_key_fingerprint
        bench.host_key_blob = sshd.host_public_line.split()[1]
        bench.known_hosts = bench.work / "known_hosts"
        bench.known_hosts.write_text(sshd.known_hosts_line + "\n", encoding="ascii")
        bench.remote = f"{bench.inbox}/contacts.csv"
        batch = bench.work / "put.batch"
        batch.write_text(f'put "{bench.data}" "{bench.inbox}/.contacts.csv.part"\n'
                         f'rename "{bench.inbox}/.contacts.csv.part" "{bench.remote}"\n', encoding="utf-8")  # fmt: skip
        argv = sftp_batch_argv(str(batch), bench.port, f"{bench.username}@{bench.host}", bench.private_key,
                               bench.known_hosts)  # fmt: skip
        subprocess.run(argv, check=True, capture_output=True, timeout=bench.args.timeout)
        yield


def step_floor(bench: Bench) -> dict[str, Any]:
    """``sftp`` getting the file to /dev/null, best of ``--sftp-repeats``."""
    sys.path.insert(0, str(TESTS_DIR))
    from sshd import sftp_batch_argv

    batch = bench.work / "get.batch"
    batch.write_text(f'get "{bench.remote}" /dev/null\n', encoding="utf-8")
    argv = sftp_batch_argv(str(batch), bench.port, f"{bench.username}@{bench.host}", bench.private_key,
                           bench.known_hosts)  # fmt: skip
    runs = [run_measured(argv, bench.folder("floor"), bench.args.timeout) for _ in range(bench.args.sftp_repeats)]
    failed = [m for m in runs if m.returncode != 0]
    if failed:
        return {"error": f"sftp get failed ({failed[0].returncode}): {failed[0].stderr[-500:]}"}
    best = min(runs, key=lambda m: m.seconds)
    return {"seconds": best.seconds, "runs": [m.seconds for m in runs], "peak_mb": best.peak_mb,
            "rows": bench.args.rows, "label": f"floor: OpenSSH sftp get to /dev/null, best of {len(runs)}"}  # fmt: skip


def _child_json(measured: Measured) -> dict[str, Any]:
    lines = measured.stdout.strip().splitlines()
    if measured.returncode != 0 or not lines:
        reason = "timed out" if measured.timed_out else f"exit {measured.returncode}"
        return {"error": f"{reason}: {measured.stderr[-1500:]}"}
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def step_pyarrow(bench: Bench) -> dict[str, Any]:
    """pyarrow's streaming parse of the local file (the parse, timed inside the process)."""
    m = run_measured([*CHILDREN, "pyarrow", str(bench.data)], bench.folder("pyarrow"), bench.args.timeout)
    out = _child_json(m)
    if "rows" in out:
        out.update(seconds=out["parse_seconds"], process_seconds=m.seconds, peak_mb=m.peak_mb,
                   label=f"pyarrow {out['version']} streaming CSV parse, all columns strings (local file)")  # fmt: skip
        if out["rows"] != bench.args.rows:
            bench.problems.append(f"pyarrow read {out['rows']:,} rows, not {bench.args.rows:,}")
    return out


def _config(bench: Bench, folder: Path, sink: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "truagents-import.toml"
    path.write_text(
        f"[integration]\nhost = {json.dumps(bench.host)}\nport = {bench.port}\n"
        f"username = {json.dumps(bench.username)}\n"
        f"private_key = {json.dumps(str(bench.private_key))}\nhost_key = {json.dumps(bench.fingerprint)}\n\n"
        f'[[sources]]\nname = "bench"\npath = {json.dumps(str(bench.inbox))}\npattern = "*.csv"\n'
        'default_region = "US"\ndefault_timezone = "America/Chicago"\nmin_age = 0\n\n'
        f"{sink}\n[state]\npath = {json.dumps(str(folder / 'state.db'))}\n",
        encoding="utf-8",
    )
    return path


def _cli() -> list[str]:
    script = Path(sys.executable).parent / "truagents-import"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from truagents_import.cli import run; run()"]


def _check_report(bench: Bench, name: str, report: dict[str, Any], sink_rows: int) -> dict[str, Any]:
    """The report's totals, and a problem for each way they do not account for every row."""
    t = report.get("totals", {})
    rows, imported, rejected, duplicates = (int(t.get(k, 0)) for k in ("rows", "imported", "rejected", "duplicates"))
    statuses = [f.get("status") for f in report.get("files", [])]
    if rows != imported + rejected + duplicates:
        bench.problems.append(f"{name}: rows {rows:,} != {imported:,} imported + {rejected:,} rejected "
                              f"+ {duplicates:,} duplicates")  # fmt: skip
    if rows != bench.args.rows:
        bench.problems.append(f"{name}: the report counts {rows:,} rows; the file has {bench.args.rows:,}")
    if sink_rows != imported:
        bench.problems.append(f"{name}: the sink holds {sink_rows:,} rows; the report says {imported:,} imported")
    if statuses != ["imported"]:
        bench.problems.append(f"{name}: file statuses {statuses}, expected ['imported']")
    return {"rows": rows, "imported": imported, "rejected": rejected, "duplicates": duplicates,
            "sink_rows": sink_rows, "statuses": statuses}  # fmt: skip


def step_import(bench: Bench, name: str, sink: str, count: Any) -> dict[str, Any]:
    """``truagents-import import --json`` as one process into the sink the ``[sink]`` text names."""
    folder = bench.folder(name)
    config = _config(bench, folder, sink)
    m = run_measured([*_cli(), "import", "--config", str(config), "--json"], folder / "run", bench.args.timeout)
    try:
        report: dict[str, Any] = json.loads(m.stdout)
    except json.JSONDecodeError:
        reason = "timed out" if m.timed_out else f"exit {m.returncode}"
        return {"error": f"{reason}, no JSON report: {m.stderr[-1500:]}"}
    out = _check_report(bench, name, report, count())
    reasons = Counter(p.get("code") for f in report.get("files", []) for p in f.get("problems", []))
    peaks = {f"{pid} {m.commands.get(pid, '')}": mb for pid, mb in m.peaks_mb.items()}
    out.update(seconds=m.seconds, peak_mb=m.peak_mb, exit_status=m.returncode, processes=len(m.peaks_mb),
               process_peaks_mb=peaks, concurrent_peak_mb=m.concurrent_mb, wait4_maxrss_mb=m.wait4_maxrss_mb,
               problem_codes_shown=dict(reasons),
               label=f"truagents-import into {name}, whole command")  # fmt: skip
    return out


def step_sqlite(bench: Bench) -> dict[str, Any]:
    """This library into a fresh SQLite database."""
    database = bench.work / f"sqlite-{bench.counter + 1}.db"

    def count() -> int:
        with sqlite3.connect(database) as conn:
            return int(conn.execute("SELECT count(*) FROM contacts").fetchone()[0])

    return step_import(bench, "sqlite", f'[sink]\ntype = "sqlite"\npath = {json.dumps(str(database))}\n', count)


def step_postgres(bench: Bench) -> dict[str, Any]:
    """This library into a throwaway PostgreSQL cluster on 127.0.0.1 (fsync on), stopped afterwards."""
    sys.path.insert(0, str(TESTS_DIR))
    try:
        import psycopg

        from pg import find_pg_bin, run_postgres  # type: ignore[import-not-found,unused-ignore]
    except ImportError as exc:
        return {"skipped": f"psycopg is not installed ({exc})"}
    if find_pg_bin() is None:
        return {"skipped": "PostgreSQL is not installed"}
    with run_postgres(durable=True) as server:
        url = server.url()

        def count() -> int:
            with psycopg.connect(url) as conn:
                row = conn.execute("SELECT count(*) FROM contacts").fetchone()
                return int(row[0]) if row else 0

        sink = f'[sink]\ntype = "postgres"\nurl = {json.dumps(url)}\ntable = "contacts"\n'
        return step_import(bench, "postgres", sink, count)


def step_dlt(bench: Bench, via: str) -> dict[str, Any]:
    """dlt's filesystem source and read_csv_duckdb into DuckDB, over SFTP or on the local file."""
    folder = bench.folder(f"dlt-{via}")
    folder.mkdir(parents=True)
    spec = {"via": via, "work": str(folder), "host": bench.host, "port": bench.port, "username": bench.username,
            "private_key": str(bench.private_key), "host_key_blob": bench.host_key_blob,
            "remote_dir": str(bench.inbox), "name": bench.data.name if via == "local" else "contacts.csv",
            "local_dir": str(bench.data.parent)}  # fmt: skip
    spec_path = folder / "spec.json"
    spec_path.write_text(json.dumps(spec), encoding="utf-8")
    m = run_measured([*CHILDREN, "dlt", str(spec_path)], folder / "run", bench.args.timeout)
    out = _child_json(m)
    if "rows" in out:
        where = "over SFTP (paramiko)" if via == "sftp" else "on the local file"
        out.update(seconds=m.seconds, peak_mb=m.peak_mb,
                   label=f"dlt {out['version']} read_csv_duckdb -> DuckDB {where}, whole process")  # fmt: skip
        if out["rows"] != bench.args.rows:
            bench.problems.append(f"dlt {via}: loaded {out['rows']:,} rows, not {bench.args.rows:,}")
    return out


# -- where the time goes --------------------------------------------------------------------------


def _frame_label(frame: dict[str, Any]) -> str:
    parts = Path(str(frame.get("file") or "?")).parts
    return f"{frame.get('name')} ({'/'.join(parts[-2:])}:{frame.get('line')})"


def _interesting(frame: dict[str, Any]) -> bool:
    """Not py-spy's process pseudo-frames, module bodies or the command line's click wrappers."""
    file = str(frame.get("file") or "")
    return bool(file) and frame.get("name") != "<module>" and "/click/" not in file


def _speedscope_top(path: Path, top: int) -> dict[str, Any]:
    """Own and inclusive seconds per function and process from py-spy's speedscope file.

    The importer is the lowest process id py-spy sampled; any other is its helper process.
    """
    doc = json.loads(path.read_text(encoding="utf-8"))
    frames = doc["shared"]["frames"]
    own: Counter[tuple[int, int]] = Counter()
    inclusive: Counter[tuple[int, int]] = Counter()
    per_process: Counter[int] = Counter()
    for profile in doc["profiles"]:
        pid = int(profile["name"].split()[1])
        for sample, weight in zip(profile["samples"], profile["weights"], strict=True):
            per_process[pid] += weight
            if sample:
                own[pid, sample[-1]] += weight
            for index in set(sample):
                if _interesting(frames[index]):
                    inclusive[pid, index] += weight
    main_pid = min(per_process, default=0)

    def role(pid: int) -> str:
        return "main" if pid == main_pid else f"helper {pid}"

    def rows(counter: Counter[tuple[int, int]]) -> list[dict[str, Any]]:
        return [{"process": role(pid), "seconds": s, "function": _frame_label(frames[i])}
                for (pid, i), s in counter.most_common(top)]  # fmt: skip

    # The call chain every sample of a process shares (the command line down to the import) says nothing.
    inclusive = Counter({k: s for k, s in inclusive.items() if s <= 0.85 * per_process[k[0]]})

    return {
        "tool": "py-spy (100 Hz, CPU samples, helper process included)",
        "cpu_seconds_by_process": {role(pid): s for pid, s in sorted(per_process.items())},
        "own": rows(own),
        "inclusive": rows(inclusive),
    }


def profile_sqlite(bench: Bench, top: int = 20) -> dict[str, Any]:
    """The SQLite import once more, under py-spy (or cProfile of the main process without py-spy)."""
    folder = bench.folder("profile")
    database = folder / "contacts.db"
    config = _config(bench, folder, f'[sink]\ntype = "sqlite"\npath = {json.dumps(str(database))}\n')
    argv = [*_cli(), "import", "--config", str(config), "--json"]
    pyspy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if pyspy:
        out = folder / "profile.speedscope.json"
        m = run_measured([pyspy, "record", "--subprocesses", "--function", "--rate", "100", "--format", "speedscope",
                          "--output", str(out), "--", *argv], folder / "run", bench.args.timeout * 2)  # fmt: skip
        if m.returncode == 0 and out.exists():
            return {**_speedscope_top(out, top), "file": str(out), "seconds": m.seconds}
    if len(argv) != 1 + 4:
        return {"skipped": "no truagents-import script to run under cProfile"}
    import io
    import pstats

    out = folder / "profile.prof"
    m = run_measured([sys.executable, "-m", "cProfile", "-o", str(out), *argv], folder / "run", bench.args.timeout * 2)
    if not out.exists():
        return {"error": f"cProfile run failed ({m.returncode}): {m.stderr[-800:]}"}
    text = io.StringIO()
    pstats.Stats(str(out), stream=text).strip_dirs().sort_stats("tottime").print_stats(top)
    return {"tool": "cProfile (main process only)", "text": text.getvalue(), "file": str(out), "seconds": m.seconds}


# -- the run, the table ---------------------------------------------------------------------------


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Every wanted step, in one run; the figures."""
    import truagents_import

    # The work tree's HEAD as the run starts (nox installs the package from the work tree).
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True, check=False).stdout.strip()  # fmt: skip
    os.environ.pop("SSH_AUTH_SOCK", None)  # never the developer's agent, in any step
    os.environ["RUNTIME__DLTHUB_TELEMETRY"] = "false"  # dlt: no traffic off this machine
    data, generated = data_file(args.rows, args.seed)
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="truagents-workload-") as tmp:
        bench = Bench(args=args, data=data, work=Path(tmp))
        with _server(bench):
            steps = {
                "floor": step_floor, "pyarrow": step_pyarrow, "sqlite": step_sqlite, "postgres": step_postgres,
                "dlt": lambda b: step_dlt(b, "sftp"), "dlt-local": lambda b: step_dlt(b, "local"),
            }  # fmt: skip
            for name in args.steps:
                bench.results[name] = steps[name](bench)
            profile = profile_sqlite(bench) if args.profile else None
    floor = bench.results.get("floor", {}).get("seconds")
    for result in bench.results.values():
        if "seconds" in result:
            result["rows_per_second"] = args.rows / result["seconds"]
            result["x_floor"] = result["seconds"] / floor if floor else None
    return {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "commit": commit or None,
        "package": str(Path(truagents_import.__file__).parent),
        "file": str(data),
        "file_mb": data.stat().st_size / MB,
        "file_bytes": data.stat().st_size,
        "rows": args.rows,
        "seed": args.seed,
        "generated_seconds": generated,
        "server": f"OpenSSH sshd on 127.0.0.1:{bench.port}",
        "cpus": os.cpu_count(),
        "load_average_1min": [load_before, os.getloadavg()[0]],
        "python": sys.version.split()[0],
        "steps": bench.results,
        "problems": bench.problems,
        "profile": profile,
    }


def _row(name: str, r: dict[str, Any]) -> str:
    if "seconds" not in r:
        return f"{name:<10}{r.get('skipped') or 'FAILED: ' + str(r.get('error', ''))[-300:]}"
    x = f"{r['x_floor']:.1f}x" if r.get("x_floor") else "-"
    peak = f"{r['peak_mb']:.0f}"
    if r.get("processes", 1) > 1:
        low = f"{r['concurrent_peak_mb']:.0f}"
        peak = f"{low + '-' if low != peak else ''}{peak} ({r['processes']} proc.)"
    return f"{name:<10}{r['seconds']:>9.2f}{r['rows_per_second']:>12,.0f}{x:>9}   {peak:<20}{r['label']}"


def _verdicts(r: dict[str, Any]) -> list[str]:
    lines = []
    for name, rows_per_s in TARGETS.items():
        got = r["steps"].get(name, {})
        if "rows_per_second" in got:
            ok = got["rows_per_second"] >= rows_per_s and got["peak_mb"] <= TARGET_MB
            lines.append(f"  {name}: {got['rows_per_second']:,.0f} rows/s (target {rows_per_s:,}), peak "
                         f"{got['peak_mb']:.0f} MB (target {TARGET_MB:g}): {'met' if ok else 'NOT met'}")  # fmt: skip
    return lines


def table(r: dict[str, Any]) -> str:
    """The figures as text."""
    lines = [
        f"issue 18 workload, {r['date']}: {r['rows']:,} rows ({r['file_bytes']:,} bytes, gen_contacts.py --seed"
        f" {r['seed']}), {r['server']}, {r['cpus']} CPUs, Python {r['python']}, commit {r['commit']}",
        f"{'step':<10}{'seconds':>9}{'rows/s':>12}{'x floor':>9}   {'peak MB':<20}what",
    ]
    lines += [_row(name, step) for name, step in r["steps"].items()]
    lines.append("peak MB: the group's largest sampled RSS at one moment - the sum of its processes' peaks")
    lines.append("accounting (rows = imported + rejected + duplicates; the sink holds the imported rows):")
    for name in ("sqlite", "postgres"):
        s = r["steps"].get(name, {})
        if "rows" in s and "imported" in s:
            lines.append(f"  {name}: {s['rows']:,} = {s['imported']:,} + {s['rejected']:,} + {s['duplicates']:,};"
                         f" sink holds {s['sink_rows']:,}; exit status {s['exit_status']}; peak "
                         + " + ".join(f"{mb:.0f}" for mb in s["process_peaks_mb"].values())
                         + f" MB, {s['concurrent_peak_mb']:.0f} MB at one moment")  # fmt: skip
    accounted = any("imported" in r["steps"].get(name, {}) for name in ("sqlite", "postgres"))
    lines += [f"  PROBLEM: {p}" for p in r["problems"]] or ["  every row accounted for" if accounted else "  -"]
    lines += ["targets of issue 18 (reported, not enforced):", *_verdicts(r)]
    before, after = r["load_average_1min"]
    lines.append(f"1-min load average {before:.2f} before, {after:.2f} after")
    p = r.get("profile")
    if p and "own" in p:
        lines.append(f"\nwhere the time goes: SQLite import under {p['tool']}, {p['seconds']:.1f} s; CPU s by process: "
                     + ", ".join(f"{k} {v:.1f}" for k, v in p["cpu_seconds_by_process"].items()))  # fmt: skip
        lines += [f"  {e['seconds']:7.2f} s own  {e['process']:<8} {e['function']}" for e in p["own"]]
        lines.append("  inclusive:")
        lines += [f"  {e['seconds']:7.2f} s incl {e['process']:<8} {e['function']}" for e in p["inclusive"]]
    elif p:
        lines += ["", str(p.get("text") or p.get("skipped") or p.get("error"))]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the arguments, run, print; the exit status."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=DEFAULT_ROWS, help=f"rows in the file (default {DEFAULT_ROWS:,})")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help=f"generator seed (default {DEFAULT_SEED})")
    parser.add_argument("--steps", default=",".join(STEPS), help=f"comma-separated, of {', '.join(STEPS)}")
    parser.add_argument("--sftp-repeats", type=int, default=3, help="sftp gets for the floor (best of; default 3)")
    parser.add_argument("--timeout", type=float, help="seconds before a step is killed (60 + 300 per million rows)")
    parser.add_argument("--profile", action="store_true", help="also profile one more SQLite import (py-spy)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--save", type=Path, help="also write the JSON document to this file")
    args = parser.parse_args(None if argv is None else list(argv))
    args.steps = [s.strip() for s in args.steps.split(",") if s.strip()]
    unknown = sorted(set(args.steps) - set(STEPS))
    if unknown or args.sftp_repeats < 1 or args.rows < 1:
        parser.error(f"unknown steps {unknown}" if unknown else "--rows and --sftp-repeats must be at least 1")
    if args.timeout is None:
        args.timeout = 60.0 + 300.0 * args.rows / 1e6
    result = run(args)
    print(json.dumps(result, indent=2) if args.json else table(result))
    if args.save:
        args.save.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    failed = [name for name, step in result["steps"].items() if "error" in step]
    if failed or result["problems"]:
        print(f"failed steps: {failed}; problems: {result['problems']}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
