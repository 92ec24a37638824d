"""Rows per second into the upserting sinks: SQLite and PostgreSQL, on the same generated file.

    python benchmarks/sinks.py [--rows 100000] [--seed 0] [--batch 5000] [--repeat 3] [--url postgresql://...] [--json]

What it does:

1. generates (once; cached under ``benchmarks/data/``, which git ignores) a deterministic
   contacts CSV with ``benchmarks/generate.py``;
2. reads it once through the real pipeline (local folder source, mapping, validation) into
   memory, so the sinks are measured alone;
3. for each sink, times three phases, each one file (one transaction), ``--repeat`` times (the
   machine may be shared: medians are reported, with every run in the JSON):
   ``insert``  every contact into an empty table (``write`` in batches of ``--batch``, then ``commit``),
   ``upsert``  the same contacts again: every row conflicts and goes through the merge policy,
   ``import``  the whole file end to end (``Importer.run`` from the local folder into an empty table),
               with the seconds spent inside the sink (for SQLite, the importer hands it the staging
               file, as it does outside benchmarks; ``insert`` and ``upsert`` time ``write``);
4. PostgreSQL is the server at ``--url``, or else a throwaway cluster on 127.0.0.1 started with
   ``tests/pg.py`` (fsync on, so a commit is as durable as in production) and stopped at the end.

It prints a table (or JSON with ``--json``) with rows/s and the PostgreSQL/SQLite ratio per phase.
Only 127.0.0.1 is contacted unless ``--url`` says otherwise; the only processes it stops are those it started.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
DATA_DIR = BENCH_DIR / "data"
TESTS_DIR = REPO / "tests"

DEFAULT_ROWS = 100_000
PHASES = ("insert", "upsert", "import")


def _data_file(rows: int, seed: int) -> Path:
    """The cached input file, generated when missing."""
    path = DATA_DIR / f"contacts-{rows}-seed{seed}.csv"
    if not path.exists():
        sys.path.insert(0, str(BENCH_DIR))
        from generate import generate  # type: ignore[import-not-found,unused-ignore]

        generate(path, rows, seed=seed)
    return path


def _source(data: Path) -> Any:
    from truagents_import import DataSource

    return DataSource(name="bench", path=str(data.parent), pattern=data.name, default_region="US",
                      default_timezone="America/New_York", min_age=0)  # fmt: skip


def _contacts(data: Path) -> list[Any]:
    """Every valid contact of the file, as the importer hands them to a sink."""
    from truagents_import import Importer, MemorySink

    sink = MemorySink()
    with Importer(_source(data), sink, entry_points=False) as importer:
        report = importer.run()
    if not sink.contacts:
        msg = f"{data} gave no contacts: {report.to_dict()}"
        raise SystemExit(msg)
    return sink.contacts


def _timed_writes(sink: Any, contacts: Sequence[Any], batch: int) -> float:
    t = time.perf_counter()
    for i in range(0, len(contacts), batch):
        sink.write(contacts[i : i + batch])
    sink.commit()
    return time.perf_counter() - t


class _SinkClock:
    """Counts the seconds a sink spends taking contacts and committing during a real import.

    It wraps the sink's own methods on the instance (``write``, ``commit``, and the SQLite sink's
    ``_load_staging``), so the importer takes the same path as with an unwrapped sink: the
    SQLite sink is handed its staging file, other sinks get Contact batches.
    """

    def __init__(self, sink: Any) -> None:
        self.seconds = 0.0
        for name in ("write", "commit", "_load_staging"):
            method = getattr(sink, name, None)
            if method is not None:
                setattr(sink, name, self._timed(method))

    def _timed(self, method: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any) -> Any:
            t = time.perf_counter()
            try:
                return method(*args)
            finally:
                self.seconds += time.perf_counter() - t

        return timed


def _figures(rows: int, runs: list[float]) -> dict[str, Any]:
    seconds = statistics.median(runs)
    return {"rows": rows, "seconds": seconds, "rows_per_s": rows / seconds, "runs": runs}


def _measure(name: str, make_sink: Callable[[str], Any], data: Path, contacts: Sequence[Any],
             batch: int, repeat: int) -> dict[str, Any]:  # fmt: skip
    """The phases for one sink, each run ``repeat`` times (medians are reported);
    ``make_sink(label)`` opens a sink on an empty table called ``label``."""
    from truagents_import import Importer

    inserts, upserts, imports, sink_shares = [], [], [], []
    rows = 0
    for _ in range(repeat):
        sink = make_sink("bench_contacts")
        inserts.append(_timed_writes(sink, contacts, batch))
        upserts.append(_timed_writes(sink, contacts, batch))
        sink.close()
        sink = make_sink("bench_import")
        clock = _SinkClock(sink)
        t = time.perf_counter()
        with Importer(_source(data), sink, entry_points=False, batch_size=batch) as importer:
            report = importer.run()
        imports.append(time.perf_counter() - t)
        sink_shares.append(clock.seconds)
        rows = report.totals.rows
    n = len(contacts)
    return {
        "sink": name,
        "insert": _figures(n, inserts),
        "upsert": _figures(n, upserts),
        "import": _figures(rows, imports),
        "import_sink_seconds": statistics.median(sink_shares),
    }


def _sqlite(work: Path) -> Callable[[str], Any]:
    from truagents_import import SQLiteSink

    def make(label: str) -> Any:
        path = work / f"{label}.db"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        return SQLiteSink(path)

    return make


def _postgres(url: str) -> Callable[[str], Any]:
    import psycopg

    from truagents_import.sinks.postgres import PostgresSink

    def make(label: str) -> Any:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f"DROP TABLE IF EXISTS {label}")  # type: ignore[arg-type]
        return PostgresSink(url, table=label)

    return make


@contextlib.contextmanager
def _postgres_url(url: str | None) -> Iterator[tuple[str, str]]:
    """``(url, where)``: the given server, or a throwaway cluster for the length of the block."""
    if url:
        yield url, "given server"
        return
    sys.path.insert(0, str(TESTS_DIR))
    from pg import run_postgres  # type: ignore[import-not-found,unused-ignore]

    with run_postgres(durable=True) as server:
        yield server.url(), f"throwaway PostgreSQL cluster on 127.0.0.1:{server.port} (fsync on)"


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Do the whole benchmark and return its figures."""
    data = _data_file(args.rows, args.seed)
    with tempfile.TemporaryDirectory(prefix="truagents-bench-sinks-") as tmp:
        contacts = _contacts(data)
        results = [_measure("sqlite", _sqlite(Path(tmp)), data, contacts, args.batch, args.repeat)]
        with _postgres_url(args.url) as (url, where):
            results.append(_measure("postgres", _postgres(url), data, contacts, args.batch, args.repeat))
    ratios = {p: results[1][p]["rows_per_s"] / results[0][p]["rows_per_s"] for p in PHASES}
    return {"file": str(data), "rows": args.rows, "contacts": len(contacts), "batch": args.batch,
            "repeat": args.repeat, "postgres": where, "results": results, "postgres_over_sqlite": ratios}  # fmt: skip


def _table(r: dict[str, Any]) -> str:
    lines = [
        f"file: {r['file']} ({r['rows']:,} rows, {r['contacts']:,} valid contacts; batches of {r['batch']:,}; "
        f"median of {r['repeat']} runs)",
        f"postgres: {r['postgres']}",
        "",
        f"{'sink':<10}{'phase':<8}{'rows':>10}{'seconds':>10}{'rows/s':>12}",
    ]
    for result in r["results"]:
        for phase in PHASES:
            m = result[phase]
            lines.append(
                f"{result['sink']:<10}{phase:<8}{m['rows']:>10,}{m['seconds']:>10.2f}{m['rows_per_s']:>12,.0f}"
            )
    ratio = ", ".join(f"{p} {v:.2f}x" for p, v in r["postgres_over_sqlite"].items())
    share = ", ".join(f"{x['sink']} {x['import_sink_seconds']:.2f} s" for x in r["results"])
    lines += ["", f"postgres / sqlite rows/s: {ratio}", f"time in the sink during import: {share}",
              "(import is end to end: reading, mapping and validating cost the same for both sinks)"]  # fmt: skip
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the arguments, run, print."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=DEFAULT_ROWS, help=f"rows in the file (default {DEFAULT_ROWS:,})")
    parser.add_argument("--seed", type=int, default=0, help="generator seed (default 0)")
    parser.add_argument("--batch", type=int, default=5000, help="contacts per write (default 5,000, the importer's)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each phase; medians are reported (default 3)")
    parser.add_argument("--url", help="a PostgreSQL server to use instead of a throwaway cluster (tables bench_*)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    result = run(args)
    print(json.dumps(result, indent=2) if args.json else _table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
