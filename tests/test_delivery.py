"""Delivery semantics: ordering, completeness, after_import, faults, freshness, exactly-once."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from conftest import Endpoint
from truagents_import import DataSource, Importer, MemorySink, SQLiteSink, StateStore, hookimpl
from truagents_import.remote.server import SFTPServer
from truagents_import.report import ImportReport
from truagents_import.state import ClaimRefused


def _age(path: Path, seconds: float) -> None:
    t = time.time() - seconds
    os.utime(path, (t, t))


def test_regex_pattern_orders_by_date_group(tmp_path: Path) -> None:
    inbox = tmp_path / "in"
    inbox.mkdir()
    for name, age in (("c_2026-11-03.csv", 10), ("c_2026-11-01.csv", 5), ("c_2026-11-02.csv", 100), ("x.csv", 1)):
        (inbox / name).write_text("email\na@example.com\n")
        _age(inbox / name, age)
    source = DataSource(name="s", path=str(inbox), pattern=r"re:c_(?P<date>\d{4}-\d{2}-\d{2})\.csv", min_age=0)
    assert [f.name for f in source.list_files()] == ["c_2026-11-01.csv", "c_2026-11-02.csv", "c_2026-11-03.csv"]
    glob = DataSource(name="s", path=str(inbox), pattern="c_*.csv", min_age=0)
    assert [f.name for f in glob.list_files()] == ["c_2026-11-02.csv", "c_2026-11-03.csv", "c_2026-11-01.csv"]


@pytest.mark.parametrize(("marker", "marker_name"), [("{name}.done", "a.csv.done"), ("{stem}.ok", "a.ok")])
def test_ready_marker(tmp_path: Path, marker: str, marker_name: str) -> None:
    inbox = tmp_path / "in"
    inbox.mkdir()
    (inbox / "a.csv").write_text("email\na@example.com\n")
    source = DataSource(name="s", path=str(inbox), pattern="*", min_age=0, ready_marker=marker)
    [f] = source.list_files()
    assert (f.state, f.note) == ("incomplete", f"waiting for ready marker {marker_name}")
    (inbox / marker_name).write_text("")
    assert [(f.name, f.state) for f in source.list_files()] == [("a.csv", "new")]


def test_after_import_delete_and_move(endpoint: Endpoint, key_file: Path) -> None:
    endpoint.put("good.csv", "email\na@example.com\n")
    endpoint.put("bad.csv", "colour\nred\n")
    source = endpoint.source(key_file, after_import="move:done")
    with Importer(source, MemorySink()) as importer:
        report = importer.run()
    assert {Path(f.path).name: f.status for f in report.files} == {"good.csv": "imported", "bad.csv": "rejected"}
    assert sorted(p.name for p in endpoint.inbox_local.iterdir()) == ["bad.csv", "done"]
    assert [p.name for p in (endpoint.inbox_local / "done").iterdir()] == ["good.csv"]
    endpoint.put("again.csv", "email\nb@example.com\n")
    source = endpoint.source(key_file, after_import="delete")
    with Importer(source, MemorySink()) as importer:
        report = importer.run()
    assert sorted(p.name for p in endpoint.inbox_local.iterdir()) == ["bad.csv", "done"]


@pytest.mark.parametrize("after_import", ["delete", "move:done"])
def test_read_and_preview_never_apply_after_import(endpoint: Endpoint, key_file: Path, after_import: str) -> None:
    endpoint.put("a.csv", "email\na@example.com\n")
    source = endpoint.source(key_file, after_import=after_import)
    try:
        assert [c.email for c in source.read("a.csv")] == ["a@example.com"]
        assert source.preview("a.csv").valid == 1
    finally:
        assert source.integration is not None
        source.integration.close()
    assert [p.name for p in endpoint.inbox_local.iterdir()] == ["a.csv"]


def test_connection_drop_is_retried_once(sftp_server: SFTPServer, key_file: Path) -> None:
    import getpass

    from truagents_import import Integration

    inbox = sftp_server.root / "inbox"
    inbox.mkdir()
    big = "email,note\n" + "".join(f"u{i}@example.com,{'x' * 100}\n" for i in range(20_000))
    (inbox / "a_big.csv").write_text(big)
    (inbox / "b_small.csv").write_text("email\nsmall@example.com\n")
    _age(inbox / "a_big.csv", 100)
    integration = Integration(host=sftp_server.host, port=sftp_server.port, username=getpass.getuser(),
                              private_key=key_file, host_key=sftp_server.host_key_fingerprint)
    source = DataSource(name="s", path="/inbox", min_age=0, integration=integration)

    # A drop on every connection: the file is retried once, reported failed, and the run goes on.
    sftp_server.drop_after_bytes = 500_000
    sink = MemorySink()
    with Importer(source, sink) as importer:
        report = importer.run()
    assert {Path(f.path).name: f.status for f in report.files} == {"a_big.csv": "failed", "b_small.csv": "imported"}
    failed = report.files[0]
    assert failed.reason is not None and "download failed" in failed.reason
    assert [c.email for c in sink.contacts] == ["small@example.com"]

    # A drop on the first connection only: the retry on a fresh connection succeeds.
    class HealsAfterOneDrop(DataSource):
        def download(self, file: object, dest: Path, progress: object = None) -> str:  # type: ignore[override]
            try:
                return super().download(file, dest, progress)  # type: ignore[arg-type]
            except Exception:
                sftp_server.drop_after_bytes = None
                raise

    flaky = HealsAfterOneDrop(name="s", path="/inbox", min_age=0, integration=integration)
    sftp_server.drop_after_bytes = 500_000
    sink = MemorySink()
    with Importer(flaky, sink) as importer:
        report = importer.run(files=["/inbox/a_big.csv"])
    assert [(f.status, f.imported) for f in report.files] == [("imported", 20_000)]


def test_growing_file_waits_for_min_age(openssh: Endpoint, key_file: Path) -> None:
    endpoint = openssh
    target = endpoint.inbox_local / "growing.csv"
    done = threading.Event()

    def writer() -> None:
        with target.open("w") as f:
            f.write("email\n")
            for i in range(50):
                f.write(f"g{i}@example.com\n")
                f.flush()
                time.sleep(0.01)
        done.set()

    thread = threading.Thread(target=writer)
    thread.start()
    source = endpoint.source(key_file, min_age=30)
    sink = MemorySink()
    with Importer(source, sink) as importer:
        first = importer.run()
        assert [f.status for f in first.files] == ["incomplete"]
        thread.join()
        assert done.is_set()
        _age(target, 60)
        second = importer.run()
    assert [(f.status, f.imported) for f in second.files] == [("imported", 50)]
    assert len(sink.contacts) == 50


def test_overdue_source_warns(tmp_path: Path) -> None:
    inbox = tmp_path / "in"
    inbox.mkdir()
    (inbox / "old.csv").write_text("email\na@example.com\n")
    _age(inbox / "old.csv", 3 * 3600)
    source = DataSource(name="s", path=str(inbox), min_age=0, expect_every="1h")
    with Importer(source, MemorySink()) as importer:
        report = importer.run()
    assert any("expected every 1h" in w for w in report.warnings)
    assert source.overdue(source.list_files(), datetime.now(UTC) - timedelta(hours=2, minutes=30)) is None


class Recorder:
    def __init__(self) -> None:
        self.reports: list[ImportReport] = []

    @hookimpl
    def import_finished(self, report: ImportReport, source: DataSource) -> None:
        self.reports.append(report)


def test_import_finished_once_per_run(tmp_path: Path) -> None:
    inbox = tmp_path / "in"
    inbox.mkdir()
    for i in range(3):
        (inbox / f"{i}.csv").write_text(f"email\na{i}@example.com\n")
    recorder = Recorder()
    with Importer(DataSource(name="s", path=str(inbox), min_age=0), MemorySink(), plugins=[recorder]) as importer:
        report = importer.run()
        importer.run(dry_run=True)
    assert len(recorder.reports) == 2
    assert recorder.reports[0] is report and len(report.files) == 3


def test_force_reimports_on_purpose(tmp_path: Path) -> None:
    inbox = tmp_path / "in"
    inbox.mkdir()
    (inbox / "a.csv").write_text("email\na@example.com\n")
    sink = MemorySink()
    with Importer(DataSource(name="s", path=str(inbox), min_age=0), sink) as importer:
        importer.run()
        assert [f.status for f in importer.run(files=["a.csv"]).files] == ["skipped"]
        assert [f.status for f in importer.run(files=["a.csv"], force=True).files] == ["imported"]
    assert [c.email for c in sink.contacts] == ["a@example.com", "a@example.com"]


# -- exactly once across processes and crashes ------------------------------------------------

CHILD = textwrap.dedent(
    """
    import os, signal, sys
    from pathlib import Path
    from truagents_import import DataSource, Importer, SQLiteSink, StateStore, hookimpl

    inbox, db, state, crash = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]

    def die():
        os.kill(os.getpid(), signal.SIGKILL)

    class Source(DataSource):
        def download(self, file, dest, progress=None):
            if crash == "transfer" and file.name == "b.csv":
                with open(dest, "wb") as f:
                    f.write(b"partial")
                die()
            return super().download(file, dest, progress)

    class Killer:
        batches = 0

        @hookimpl
        def validate_contacts(self, contacts, source):
            Killer.batches += 1
            if crash == "rows" and Killer.batches == 3:
                die()
            return []

    class Sink(SQLiteSink):
        def load_staging(self, staging, source, file, merge=None):
            super().load_staging(staging, source, file, merge)
            if crash == "load" and file.endswith("b.csv"):
                die()  # b.csv is in the sink's open transaction, not committed

        def commit(self):
            super().commit()
            if crash == "commit" and any(r[0] for r in self._db.execute(
                    "select 1 from contacts where source_file like '%b.csv' limit 1")):
                die()

    source = Source(name="s", path=inbox, min_age=0)
    with Importer(source, Sink(db), state=StateStore(state), plugins=[Killer()], batch_size=100,
                  entry_points=False) as importer:
        report = importer.run()
    print(report.to_json())
    """
)


def _make_inbox(tmp_path: Path) -> Path:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    for n, name in enumerate(["a.csv", "b.csv", "c.csv"]):
        rows = "".join(f"{n}-{i},user{n}_{i}@example.com,Name {i}\n" for i in range(1000))
        (inbox / name).write_text("id,email,first name\n" + rows)
        _age(inbox / name, 100 - n)
    return inbox


def _run_child(tmp_path: Path, inbox: Path, tag: str, crash: str) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    return subprocess.run(
        [sys.executable, str(script), str(inbox), str(tmp_path / f"{tag}.db"), str(tmp_path / f"{tag}-state.db"),
         crash], capture_output=True, text=True, timeout=120, check=False,
    )


def _contents(db: Path) -> list[tuple[object, ...]]:
    with sqlite3.connect(db) as conn:
        return conn.execute(
            "select identity, external_id, email, first_name, tags, attributes, source, source_file, source_row"
            " from contacts order by identity"
        ).fetchall()


@pytest.mark.parametrize("crash", ["transfer", "rows", "load", "commit"])
def test_sigkill_anywhere_then_rerun_equals_uninterrupted(tmp_path: Path, crash: str) -> None:
    inbox = _make_inbox(tmp_path)
    clean = _run_child(tmp_path, inbox, "clean", "none")
    assert clean.returncode == 0, clean.stderr
    expected = _contents(tmp_path / "clean.db")
    assert len(expected) == 3000

    killed = _run_child(tmp_path, inbox, "crash", crash)
    assert killed.returncode == -9, killed.stderr
    rerun = _run_child(tmp_path, inbox, "crash", "none")
    assert rerun.returncode == 0, rerun.stderr
    assert _contents(tmp_path / "crash.db") == expected
    state = StateStore(tmp_path / "crash-state.db")
    imported = [h["path"] for h in state.history("s") if h["status"] == "imported"]
    assert sorted(set(imported)) == sorted(str(inbox / n) for n in ("a.csv", "b.csv", "c.csv"))


TWO = textwrap.dedent(
    """
    import sys, time
    from truagents_import import DataSource, Importer, SQLiteSink, StateStore
    inbox, db, state, start = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
    while time.time() < start:
        time.sleep(0.005)
    with Importer(DataSource(name="s", path=inbox, min_age=0), SQLiteSink(db), state=StateStore(state),
                  entry_points=False) as importer:
        print(importer.run().to_json())
    """
)


def test_two_importers_at_once_import_each_file_once(tmp_path: Path) -> None:
    import json

    inbox = tmp_path / "inbox"
    inbox.mkdir()
    for n in range(8):
        rows = "".join(f"{n}-{i},u{n}_{i}@example.com\n" for i in range(300))
        (inbox / f"f{n}.csv").write_text("id,email\n" + rows)
    script = tmp_path / "two.py"
    script.write_text(TWO)
    start = time.time() + 1.0
    procs = [
        subprocess.Popen([sys.executable, str(script), str(inbox), str(tmp_path / "c.db"), str(tmp_path / "s.db"),
                          str(start)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1] for o in outputs]
    imported = [f["path"] for out, _ in outputs for f in json.loads(out)["files"] if f["status"] == "imported"]
    assert sorted(imported) == sorted(str(inbox / f"f{n}.csv") for n in range(8))
    history = StateStore(tmp_path / "s.db").history("s")
    assert sorted(h["path"] for h in history if h["status"] == "imported") == sorted(imported)
    with sqlite3.connect(tmp_path / "c.db") as conn:
        assert conn.execute("select count(*) from contacts").fetchone() == (2400,)


OPEN_AT_ONCE = """
import sys, time
from truagents_import import SQLiteSink, StateStore
folder, start = sys.argv[1], float(sys.argv[2])
while time.time() < start:
    pass
SQLiteSink(folder + "/contacts.db").close()
StateStore(folder + "/state.db").close()
"""


def test_processes_creating_one_sqlite_database_at_once(tmp_path: Path) -> None:
    """Creating a database (WAL, schema) takes locks SQLite's busy timeout does not wait for: retried."""
    for attempt in range(6):
        folder = tmp_path / str(attempt)
        folder.mkdir()
        start = time.time() + 0.5
        procs = [subprocess.Popen([sys.executable, "-c", OPEN_AT_ONCE, str(folder), str(start)],
                                  stderr=subprocess.PIPE, text=True) for _ in range(4)]
        errors = [p.communicate(timeout=60)[1] for p in procs]
        assert [p.returncode for p in procs] == [0, 0, 0, 0], errors
        with sqlite3.connect(folder / "contacts.db") as db:
            assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_claim_of_a_dead_process_is_taken_over(tmp_path: Path) -> None:
    state = StateStore(tmp_path / "s.db")
    claim = state.claim("s", "abc", "/in/a.csv")
    assert not isinstance(claim, ClaimRefused)
    assert "being imported by another importer" in state.claim("s", "abc", "/in/a.csv").message
    # Pretend the holder was a process that no longer exists on this host.
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True).stdout.strip()
    host = claim.owner.split(":")[0]
    state._db.execute("update claims set owner = ?", (f"{host}:{dead}:x",))
    assert not isinstance(state.claim("s", "abc", "/in/a.csv"), ClaimRefused)


def test_sqlite_sink_between_runs(tmp_path: Path) -> None:
    inbox = tmp_path / "in"
    inbox.mkdir()
    (inbox / "a.csv").write_text("email\na@example.com\n")
    state = StateStore(tmp_path / "s.db")
    with Importer(DataSource(name="s", path=str(inbox), min_age=0), SQLiteSink(tmp_path / "c.db"),
                  state=state) as importer:
        assert importer.run().totals.imported == 1
    state2 = StateStore(tmp_path / "s.db")
    with Importer(DataSource(name="s", path=str(inbox), min_age=0), SQLiteSink(tmp_path / "c.db"),
                  state=state2) as importer:
        assert [f.status for f in importer.run().files] == ["skipped"]


def test_progress_callback_and_silent_cli(tmp_path: Path) -> None:
    from truagents_import.pipeline.importer import Progress

    inbox = tmp_path / "in"
    inbox.mkdir()
    (inbox / "a.csv").write_text("email\n" + "".join(f"u{i}@example.com\n" for i in range(250)))
    seen: list[Progress] = []
    with Importer(DataSource(name="s", path=str(inbox), min_age=0), MemorySink(), batch_size=100) as importer:
        importer.run(progress=seen.append)
    phases = [p.phase for p in seen]
    assert phases[0] == "download" and phases[-1] == "done"
    assert [p.rows for p in seen if p.phase == "rows"] == [100, 200, 250]
    assert seen[-1].rows == 250 and seen[0].bytes_done == (inbox / "a.csv").stat().st_size
