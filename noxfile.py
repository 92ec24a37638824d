"""Sessions: `nox` runs the tests, the linters and the docs build; `nox -s bench` measures speed and memory."""

from __future__ import annotations

import nox

nox.options.sessions = ["tests", "lint", "docs"]
nox.options.reuse_existing_virtualenvs = True

TEST_DEPS = ["pytest>=8", "hypothesis>=6", "paramiko>=3"]


@nox.session
def tests(session: nox.Session) -> None:
    """Run the test suite against the built package (real sshd, embedded server, real files)."""
    # The example plugin is installed too: tests/test_plugins.py uses it through its entry point.
    # The [celery] extra too: tests/test_celery.py starts real workers (and redis-server, from .ci/run).
    session.install(".[postgres,celery]", "./examples/truagents-import-vendor", *TEST_DEPS)
    session.run("pytest", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff and mypy --strict."""
    session.install(".[postgres,celery]", "ruff", "mypy", *TEST_DEPS)
    session.run("ruff", "check", "src", "tests", "benchmarks", "noxfile.py")
    session.run("ruff", "format", "--check", "src")
    session.run("mypy", "--strict", "src/truagents_import")


@nox.session
def docs(session: nox.Session) -> None:
    """Build the documentation site with `mkdocs build --strict`: any warning fails it."""
    session.install(".", "mkdocs", "mkdocs-material", "mkdocstrings[python]", "mkdocs-click", "ruff")
    site = session.posargs[0] if session.posargs else session.create_tmp()
    session.run("mkdocs", "build", "--strict", "--site-dir", site)


#: Only the bench session installs these: the libraries workload.py compares with, and a profiler.
BENCH_DEPS = ["dlt[duckdb,sftp]", "pyarrow", "py-spy"]


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmarks: the workload of issue 18 (1M rows: the sftp floor, pyarrow, SQLite, PostgreSQL, dlt),
    throughput step by step, peak memory of a large import, the sinks, latency under watch, Celery fan-out.

    Minutes, not for CI. Arguments go to workload.py, throughput.py and memory.py:
    ``nox -s bench -- --rows 10000000`` is the memory run.
    """
    session.install(".[postgres,celery]", *TEST_DEPS, *BENCH_DEPS)
    # One run, one table: seconds, rows/s and the ratio to the floor, peak memory of the process group,
    # every row accounted for (exit 1 otherwise), and a py-spy profile of the SQLite import.
    session.run("python", "benchmarks/workload.py", "--profile", *session.posargs)
    session.run("python", "benchmarks/throughput.py", *session.posargs)
    # The differential test on the whole 1,000,000-row benchmark file, row by row and in columns: the
    # fast paths change no verdict; then the columnar path against the row path on the same file.
    session.run(
        "pytest", "-q", "tests/test_differential.py", "-k", "benchmark_file",
        env={"TRUAGENTS_DIFFERENTIAL_ROWS": "1000000"},
    )
    session.run(
        "pytest", "-q", "tests/test_columnar.py", "-k", "benchmark_file", env={"TRUAGENTS_COLUMNAR_ROWS": "1000000"}
    )
    session.run("python", "benchmarks/memory.py", *session.posargs)
    session.run("python", "benchmarks/sinks.py")
    # Issue 20: upload-to-contacts latency under watch, and files per second with 1, 2 and 4 Celery workers.
    session.run("python", "benchmarks/latency.py")
    session.run("python", "benchmarks/fanout.py")
