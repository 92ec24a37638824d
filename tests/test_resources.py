"""Failures of local resources and data (issue 17, part B): a full spool, locked databases, kills
between the sink's commit and the state's record, archived files of the same name, and files
another importer moved away. Each ends in a clear report and exit status, and a re-run leaves
the sink exactly as one uninterrupted run would."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import pytest

from conftest import IN_CI, Endpoint
from truagents_import import DataSource, Importer, SQLiteSink, StateStore

EXE = Path(sys.executable).with_name("truagents-import")


def _age(path: Path, seconds: float) -> None:
    t = time.time() - seconds
    os.utime(path, (t, t))


def _rows(prefix: str, n: int, pad: int = 0) -> str:
    """A CSV with ``n`` contacts (``<prefix>-<i>``), each with a note of ``pad`` characters."""
    note = "x" * pad
    return "id,email,first name,note\n" + "".join(f"{prefix}-{i},{prefix}{i}@example.com,N{i},{note}\n"
                                                   for i in range(n))


def _config(tmp_path: Path, inbox: Path, *, sink: str = "", state: str = "", sink_type: str = "sqlite",
            sink_path: Path | None = None) -> Path:
    path = tmp_path / "truagents-import.toml"
    path.write_text(textwrap.dedent(f"""
        [[sources]]
        name = "crm"
        path = "{inbox}"
        pattern = "*.csv"
        min_age = 0

        [sink]
        type = "{sink_type}"
        path = "{sink_path or tmp_path / 'out' / 'contacts.db'}"
        {sink}

        [state]
        path = "{tmp_path / 'state' / 'state.db'}"
        {state}
        """), encoding="utf-8")
    return path


def _import(config: Path, **env: str) -> tuple[int, dict[str, Any], str]:
    """``truagents-import import --json`` in a child process: exit status, the JSON document, stderr."""
    proc = subprocess.run([str(EXE), "import", "--json", "--config", str(config)], capture_output=True, text=True,
                          timeout=300, check=False, env=os.environ | env)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc.returncode, json.loads(proc.stdout), proc.stderr


def _statuses(doc: dict[str, Any]) -> dict[str, str]:
    return {Path(f["path"]).name: f["status"] for f in doc["files"]}


def _reasons(doc: dict[str, Any]) -> dict[str, str | None]:
    return {Path(f["path"]).name: f["reason"] for f in doc["files"]}


def _sink_rows(db: Path) -> list[tuple[object, ...]]:
    with sqlite3.connect(db) as conn:
        return conn.execute("select identity, email, first_name, source_file, source_row from contacts"
                            " order by identity").fetchall()


def _expected_rows(inbox: Path, names: list[str]) -> list[tuple[object, ...]]:
    """The contacts table one uninterrupted import of ``names`` leaves (identity = the id column)."""
    rows = []
    for name in names:
        lines = (inbox / name).read_text().splitlines()[1:]
        for n, line in enumerate(lines, start=1):
            ident, email, first, _ = line.split(",")
            rows.append((ident, email, first, str(inbox / name), n))
    return sorted(rows)


# -- the spool fills up ---------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 2 MiB tmpfs, to be the spool folder (TMPDIR) of an import."""
    where = tmp_path / "small-disk"
    where.mkdir()
    mount = shutil.which("mount") or "/bin/mount"
    try:
        proc = subprocess.run([mount, "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(where)], capture_output=True,
                              text=True, timeout=30, check=False)
        said = proc.stderr.strip() or f"exit status {proc.returncode}"
    except OSError as exc:
        proc, said = None, str(exc)
    if proc is None or proc.returncode != 0:
        reason = f"cannot mount a 2 MiB tmpfs for the spool ({said}): run the tests as root (or with CAP_SYS_ADMIN)"
        if IN_CI:
            pytest.fail("CI=true but " + reason)
        pytest.skip(reason)
    try:
        yield where
    finally:
        subprocess.run(["umount", str(where)], capture_output=True, timeout=30, check=False)


def test_full_spool_fails_that_file_and_the_run_goes_on(tmp_path: Path, small_disk: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "a_big.csv").write_text(_rows("a", 30_000, pad=60))  # ~3 MB: does not fit the spool at all
    (inbox / "b_mid.csv").write_text(_rows("b", 9_000, pad=100))  # ~1.2 MB: fits, its staging does not
    (inbox / "c_small.csv").write_text(_rows("c", 50))
    for age, name in enumerate(["c_small.csv", "b_mid.csv", "a_big.csv"]):
        _age(inbox / name, 100 + age)  # oldest first: a, b, c
    config = _config(tmp_path, inbox)

    status, doc, _ = _import(config, TMPDIR=str(small_disk))
    assert status == 1
    assert _statuses(doc) == {"a_big.csv": "failed", "b_mid.csv": "failed", "c_small.csv": "imported"}
    reasons = _reasons(doc)
    for name, said in (("a_big.csv", "No space left on device"), ("b_mid.csv", "database or disk is full")):
        reason = reasons[name]
        assert reason is not None
        assert reason.startswith(f"not imported: the spool folder {small_disk}/truagents-import-")
        assert f"ran out of space ({said}): nothing of this file reached the sink" in reason
        assert f"Free space in {small_disk}, or set TMPDIR to a folder on a disk" in reason
    assert doc["totals"]["imported"] == 50
    assert _sink_rows(tmp_path / "out" / "contacts.db") == _expected_rows(inbox, ["c_small.csv"])
    assert list(small_disk.iterdir()) == []  # the spool is gone with the run

    status, doc, _ = _import(config)  # with room to spare
    assert status == 0
    assert _statuses(doc) == {"a_big.csv": "imported", "b_mid.csv": "imported", "c_small.csv": "skipped"}
    everything = _expected_rows(inbox, ["a_big.csv", "b_mid.csv", "c_small.csv"])
    assert _sink_rows(tmp_path / "out" / "contacts.db") == everything


def test_full_spool_while_the_columnar_path_stages(
    tmp_path: Path, small_disk: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The columnar path stages from a thread of its own: the spool filling up there fails the file
    as it does on the row path (nothing reaches the sink), and the next run imports it whole."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "b_mid.csv").write_text(_rows("b", 9_000, pad=100))  # ~1.2 MB: fits, its staging does not
    source = DataSource(name="crm", path=str(inbox), min_age=0)
    db = tmp_path / "contacts.db"

    def run() -> Any:
        with Importer(source, SQLiteSink(db), entry_points=False, state=StateStore(tmp_path / "state.db")) as imp:
            imp.columnar_min_bytes = 0  # the columnar path, whatever the file's size
            [result] = imp.run().files
        return result

    monkeypatch.setattr(tempfile, "tempdir", str(small_disk))
    result = run()
    assert result.status == "failed"
    assert "ran out of space (database or disk is full): nothing of this file reached the sink" in result.reason
    assert _sink_rows(db) == []
    assert list(small_disk.iterdir()) == []

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    result = run()
    assert (result.status, result.imported) == ("imported", 9_000)
    assert _sink_rows(db) == _expected_rows(inbox, ["b_mid.csv"])


def test_full_disk_under_a_jsonl_sink_keeps_only_whole_files(tmp_path: Path, small_disk: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "a.csv").write_text(_rows("a", 100))
    (inbox / "b.csv").write_text(_rows("b", 20_000, pad=20))  # its JSON lines do not fit what is left
    _age(inbox / "a.csv", 100)
    _age(inbox / "b.csv", 50)
    out = small_disk / "contacts.jsonl"
    config = _config(tmp_path, inbox, sink_type="jsonl", sink_path=out)

    status, doc, _ = _import(config)
    assert status == 1
    assert _statuses(doc) == {"a.csv": "imported", "b.csv": "failed"}
    reason = _reasons(doc)["b.csv"]
    assert reason is not None
    assert reason.startswith(f"not imported: jsonl sink {out}: the disk is full (No space left on device)")
    assert [json.loads(line)["external_id"] for line in out.read_text().splitlines()] == [
        f"a-{i}" for i in range(100)]


# -- a database locked by another process ---------------------------------------------------------

HOLD = """
import sqlite3, sys
db = sqlite3.connect(sys.argv[1], isolation_level=None)
if sys.argv[2] == "exclusive":
    db.execute("PRAGMA locking_mode=EXCLUSIVE")  # not even readers get in: the database cannot be opened
db.execute("BEGIN EXCLUSIVE")
db.execute("SELECT count(*) FROM sqlite_master").fetchall()
print("held", flush=True)
sys.stdin.read()
"""


@contextmanager
def locked(db: Path, mode: str = "write") -> Iterator[None]:
    """Another process holding ``BEGIN EXCLUSIVE`` on ``db`` until the block ends."""
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(db), mode], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        yield
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=60)
        if holder.stdout is not None:
            holder.stdout.close()


def _inbox_with(tmp_path: Path, *names: str) -> Path:
    inbox = tmp_path / "inbox"
    inbox.mkdir(exist_ok=True)
    for n, name in enumerate(names):
        if not (inbox / name).exists():  # files delivered before keep their time
            (inbox / name).write_text(_rows(name.split(".")[0], 20))
            _age(inbox / name, 100 - n)
    return inbox


def test_locked_state_database_fails_those_files_within_its_timeout(tmp_path: Path) -> None:
    inbox = _inbox_with(tmp_path, "a.csv")
    config = _config(tmp_path, inbox, state="lock_timeout = 0.2")
    assert _import(config)[0] == 0
    _inbox_with(tmp_path, "a.csv", "b.csv", "c.csv")
    state_db = tmp_path / "state" / "state.db"

    with locked(state_db):
        status, doc, _ = _import(config)
    assert status == 1
    assert _statuses(doc) == {"a.csv": "skipped", "b.csv": "failed", "c.csv": "failed"}
    for name in ("b.csv", "c.csv"):
        assert _reasons(doc)[name] == (
            f"not imported: state database {state_db} is locked by another process (waited 0.2 s). Find what "
            f"holds it (`fuser {state_db}`: another truagents-import, or a program that opened the database and "
            "left a transaction open), let it finish or close it, then run the import again ([state] lock_timeout "
            "sets how long to wait)"
        )
    assert _sink_rows(tmp_path / "out" / "contacts.db") == _expected_rows(inbox, ["a.csv"])

    status, doc, _ = _import(config)
    assert status == 0
    assert _statuses(doc) == {"a.csv": "skipped", "b.csv": "imported", "c.csv": "imported"}
    assert _sink_rows(tmp_path / "out" / "contacts.db") == _expected_rows(inbox, ["a.csv", "b.csv", "c.csv"])


def test_state_locked_between_sink_commit_and_record(tmp_path: Path) -> None:
    """The lock comes after the sink committed: the file fails saying so, its claim is given back once
    the lock is gone, and the next run imports it again without a second copy in the sink."""
    inbox = _inbox_with(tmp_path, "a.csv")
    state_db = tmp_path / "state.db"
    state = StateStore(state_db, lock_timeout=0.2)
    lock = ExitStack()
    commits: list[None] = []

    class LockAfterCommit(SQLiteSink):
        def commit(self) -> None:
            super().commit()
            if not commits:  # the first commit only
                lock.enter_context(locked(state_db))
            commits.append(None)

    with Importer(DataSource(name="s", path=str(inbox), min_age=0), LockAfterCommit(tmp_path / "contacts.db"),
                  state=state, entry_points=False) as importer:
        with lock:
            [result] = importer.run().files
        assert result.status == "failed"
        assert result.reason is not None and result.reason.startswith(
            f"its contacts reached the sink, but the import could not be recorded: state database {state_db} is "
            "locked by another process (waited 0.2 s)")
        assert len(state._unreleased) == 1  # the claim is given back at the next chance
        assert [f.status for f in importer.run().files] == ["imported"]
        assert state._unreleased == []
    assert _sink_rows(tmp_path / "contacts.db") == _expected_rows(inbox, ["a.csv"])


def test_state_locked_while_it_opens_is_exit_1_with_its_json(tmp_path: Path) -> None:
    inbox = _inbox_with(tmp_path, "a.csv")
    config = _config(tmp_path, inbox, state="lock_timeout = 0.2")
    assert _import(config)[0] == 0
    state_db = tmp_path / "state" / "state.db"
    with locked(state_db, "exclusive"):
        proc = subprocess.run([str(EXE), "import", "--json", "--config", str(config)], capture_output=True,
                              text=True, timeout=120, check=False)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert json.loads(proc.stdout) == {
        "error": f"state database {state_db} is locked by another process (waited 0.2 s). Find what holds it "
                 f"(`fuser {state_db}`: another truagents-import, or a program that opened the database and left "
                 "a transaction open), let it finish or close it, then run the import again ([state] lock_timeout "
                 "sets how long to wait)",
        "exit_status": 1,
    }


@pytest.mark.parametrize("mode", ["write", "exclusive"])
def test_locked_sqlite_sink_fails_the_file_not_the_configuration(tmp_path: Path, mode: str) -> None:
    inbox = _inbox_with(tmp_path, "a.csv")
    config = _config(tmp_path, inbox, sink="lock_timeout = 0.2")
    assert _import(config)[0] == 0
    _inbox_with(tmp_path, "a.csv", "b.csv")
    sink_db = tmp_path / "out" / "contacts.db"

    with locked(sink_db, mode):
        status, doc, _ = _import(config)
    assert status == 1
    assert _statuses(doc) == {"a.csv": "skipped", "b.csv": "failed"}
    assert _reasons(doc)["b.csv"] == (
        f"not imported: sqlite sink {sink_db} is locked by another process (waited 0.2 s). Find what holds it "
        f"(`fuser {sink_db}`: another truagents-import, or a program that opened the database and left a "
        "transaction open), let it finish or close it, then run the import again ([sink] lock_timeout sets how "
        "long to wait)"
    )
    assert _sink_rows(sink_db) == _expected_rows(inbox, ["a.csv"])

    status, doc, _ = _import(config)
    assert (status, _statuses(doc)) == (0, {"a.csv": "skipped", "b.csv": "imported"})
    assert _sink_rows(sink_db) == _expected_rows(inbox, ["a.csv", "b.csv"])


# -- jsonl and csv: a kill anywhere, then a re-run ------------------------------------------------

KILL_CHILD = textwrap.dedent(
    """
    import os, signal, sys
    from truagents_import import DataSource, Importer, StateStore, hookimpl
    from truagents_import.sinks import CSVSink, JSONLSink

    inbox, out, state, kind, crash = sys.argv[1:6]

    def die():
        os.kill(os.getpid(), signal.SIGKILL)

    class Source(DataSource):
        def download(self, file, dest, progress=None):
            if crash == "transfer" and file.name == "b.csv":
                dest.write_bytes(b"partial")
                die()
            return super().download(file, dest, progress)

    class Killer:
        batches = 0

        @hookimpl
        def validate_contacts(self, contacts, source):
            Killer.batches += 1
            if crash == "rows" and Killer.batches == 13:  # in b.csv
                die()
            return []

    class Sink(JSONLSink if kind == "jsonl" else CSVSink):
        current = ""

        def begin_file(self, source, sha256, path):
            super().begin_file(source, sha256, path)
            Sink.current = path

        def write(self, contacts):
            super().write(contacts)
            if crash == "write" and Sink.current.endswith("b.csv"):
                die()  # b.csv's lines are in the file, not committed

        def _add_entry(self, entry):
            if crash == "ledger" and entry.get("file", "").endswith("b.csv"):
                die()  # b.csv's lines are fsynced, the ledger does not say so yet
            super()._add_entry(entry)

        def commit(self):
            super().commit()
            if crash == "commit" and Sink.current.endswith("b.csv"):
                die()  # b.csv is committed; the state does not know

    source = Source(name="s", path=inbox, min_age=0)
    with Importer(source, Sink(out), state=StateStore(state), plugins=[Killer()], batch_size=100,
                  entry_points=False) as importer:
        report = importer.run()
    print(report.to_json())
    """
)


def _run_kill_child(tmp_path: Path, inbox: Path, kind: str, tag: str, crash: str) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "kill_child.py"
    script.write_text(KILL_CHILD)
    return subprocess.run(
        [sys.executable, str(script), str(inbox), str(tmp_path / f"{tag}.{kind}"), str(tmp_path / f"{tag}-state.db"),
         kind, crash], capture_output=True, text=True, timeout=120, check=False,
    )


@pytest.mark.parametrize("crash", ["transfer", "rows", "write", "ledger", "commit"])
@pytest.mark.parametrize("kind", ["jsonl", "csv"])
def test_append_sinks_sigkill_anywhere_then_rerun_equals_uninterrupted(tmp_path: Path, kind: str,
                                                                       crash: str) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    for n, name in enumerate(["a.csv", "b.csv", "c.csv"]):
        rows = "".join(f"{n}-{i},user{n}_{i}@example.com,Name {i}\n" for i in range(1000))
        (inbox / name).write_text("id,email,first name\n" + rows)
        _age(inbox / name, 100 - n)
    clean = _run_kill_child(tmp_path, inbox, kind, "clean", "none")
    assert clean.returncode == 0, clean.stderr
    expected = (tmp_path / f"clean.{kind}").read_bytes()
    assert expected.count(b"@example.com") == 3000

    killed = _run_kill_child(tmp_path, inbox, kind, "crash", crash)
    assert killed.returncode == -9, killed.stderr
    rerun = _run_kill_child(tmp_path, inbox, kind, "crash", "none")
    assert rerun.returncode == 0, rerun.stderr
    assert "Traceback" not in rerun.stderr
    assert (tmp_path / f"crash.{kind}").read_bytes() == expected
    report = json.loads(rerun.stdout)
    assert {Path(f["path"]).name: f["status"] for f in report["files"]} == {
        "a.csv": "skipped", "b.csv": "imported", "c.csv": "imported"}
    b_warnings = next(f["warnings"] for f in report["files"] if f["path"].endswith("b.csv"))
    if crash == "commit":  # b.csv was in the sink already: not written again, and the report says so
        assert b_warnings == ["its contacts were already in the sink, committed by a run that stopped before "
                              "recording the file: not written again"]
    else:
        assert b_warnings == []
    history = StateStore(tmp_path / "crash-state.db").history("s")
    assert sorted(Path(str(h["path"])).name for h in history if h["status"] == "imported") == [
        "a.csv", "b.csv", "c.csv"]


def test_a_forced_reimport_appends_again_on_purpose(tmp_path: Path) -> None:
    from truagents_import.sinks import JSONLSink

    inbox = _inbox_with(tmp_path, "a.csv")
    out = tmp_path / "c.jsonl"
    for force in (False, True):
        with Importer(DataSource(name="s", path=str(inbox), min_age=0), JSONLSink(out),
                      state=StateStore(tmp_path / "s.db"), entry_points=False) as importer:
            report = importer.run(files=["a.csv"] if force else None, force=force)
            assert [f.status for f in report.files] == ["imported"]
    assert len(out.read_text().splitlines()) == 40
    ledger = [json.loads(line) for line in (tmp_path / ".c.jsonl.committed").read_text().splitlines()]
    assert [e.get("file") for e in ledger] == [None, str(inbox / "a.csv"), str(inbox / "a.csv")]


def test_ledger_of_an_earlier_version_and_a_replaced_file(tmp_path: Path) -> None:
    from truagents_import import Contact
    from truagents_import.sinks import CSVSink

    out = tmp_path / "c.csv"
    sink = CSVSink(out)
    sink.begin_file("s", "ab" * 32, "/in/a.csv")
    sink.write([Contact(email="kept@example.com")])
    sink.commit()
    committed = out.read_bytes()
    sink.write([Contact(email="lost@example.com")])
    sink._file.close()  # a crash: no rollback
    sink._ledger.close()
    marker = tmp_path / ".c.csv.committed"
    marker.write_text(json.dumps({"size": len(committed), "inode": out.stat().st_ino}))  # the old one-object form
    reopened = CSVSink(out)
    assert out.read_bytes() == committed  # cut back to the old marker's length
    assert not reopened.holds("s", "ab" * 32)  # the old form does not say which files
    reopened.close()
    assert marker.read_text().endswith("\n")

    replaced = tmp_path / "replaced.csv"
    replaced.write_bytes(out.read_bytes())
    os.replace(replaced, out)  # another inode: the ledger is about the file that was there before
    again = CSVSink(out)
    assert out.read_bytes() == committed and not again.holds("s", "ab" * 32)
    again.close()


# -- after_import = "move:..." --------------------------------------------------------------------


def test_move_never_replaces_an_archived_file(endpoint: Endpoint, key_file: Path, tmp_path: Path) -> None:
    first = "email\nfirst@example.com\n"
    second = "email\nsecond@example.com\n"
    state = StateStore(tmp_path / "s.db")
    endpoint.put("contacts.csv", first)
    with Importer(endpoint.source(key_file, after_import="move:done"), SQLiteSink(tmp_path / "c.db"), state=state,
                  entry_points=False) as importer:
        [one] = importer.run().files
        assert (one.status, one.warnings) == ("imported", [])
        endpoint.put("contacts.csv", second)
        [two] = importer.run().files
    done = endpoint.inbox_local / "done"
    assert two.status == "imported" and two.sha256 is not None
    content_name = f"contacts.{two.sha256[:12]}.csv"
    assert two.warnings == [f"moved to {endpoint.inbox_remote}/done/{content_name}: the folder already holds an "
                            "earlier delivery named contacts.csv"]
    assert sorted(p.name for p in done.iterdir()) == sorted(["contacts.csv", content_name])
    assert (done / "contacts.csv").read_text() == first
    assert (done / content_name).read_text() == second
    assert sorted(p.name for p in endpoint.inbox_local.iterdir()) == ["done"]
    rows = sqlite3.connect(tmp_path / "c.db").execute("select email from contacts order by email").fetchall()
    assert rows == [("first@example.com",), ("second@example.com",)]


def test_move_on_a_local_folder_never_replaces(tmp_path: Path) -> None:
    inbox = tmp_path / "in"
    (inbox / "done").mkdir(parents=True)
    (inbox / "done" / "a.csv.gz").write_text("earlier")
    (inbox / "a.csv.gz").write_text("later")
    source = DataSource(name="s", path=str(inbox), min_age=0)
    moved = source.move(str(inbox / "a.csv.gz"), "done", sha256="0123456789abcdef")
    assert moved == f"{inbox}/done/a.0123456789ab.csv.gz"
    (inbox / "a.csv.gz").write_text("latest")
    again = source.move(str(inbox / "a.csv.gz"), "done", sha256="0123456789abcdef")
    assert again.startswith(f"{inbox}/done/a.0123456789ab.") and again.endswith("Z.csv.gz")
    assert sorted(p.read_text() for p in (inbox / "done").iterdir()) == ["earlier", "later", "latest"]
    source.remove(str(inbox / "gone.csv"))  # already gone: nothing to do


def test_two_importers_moving_files_the_slower_skips(endpoint: Endpoint, key_file: Path, tmp_path: Path) -> None:
    endpoint.put("a.csv", "email\na@example.com\n")
    endpoint.put("b.csv", "email\nb@example.com\n")
    state_db, sink_db = tmp_path / "s.db", tmp_path / "c.db"
    other_reports = []

    class Racing(DataSource):
        def download(self, file: Any, dest: Path, progress: Any = None) -> str:
            if not other_reports:  # the other importer is faster: it imports and moves every file first
                other = Importer(endpoint.source(key_file, after_import="move:done"), SQLiteSink(sink_db),
                                 state=StateStore(state_db), entry_points=False)
                with other:
                    other_reports.append(other.run())
            return super().download(file, dest, progress)

    slow = Racing(name="crm", path=endpoint.inbox_remote, integration=endpoint.integration(key_file),
                  pattern="*.csv", min_age=0, after_import="move:done")
    with Importer(slow, SQLiteSink(sink_db), state=StateStore(state_db), entry_points=False) as importer:
        report = importer.run()
    assert [f.status for f in other_reports[0].files] == ["imported", "imported"]
    doc = report.to_dict()
    assert [(Path(f["path"]).name, f["status"], f["reason"]) for f in doc["files"]] == [
        (name, "skipped", "already imported by another importer (it moved the file away after this run listed it)")
        for name in ("a.csv", "b.csv")
    ]
    assert report.ok  # exit status 0
    assert sorted(p.name for p in (endpoint.inbox_local / "done").iterdir()) == ["a.csv", "b.csv"]
    rows = sqlite3.connect(sink_db).execute("select email from contacts order by email").fetchall()
    assert rows == [("a@example.com",), ("b@example.com",)]


def test_file_moved_away_before_the_other_recorded_it_is_skipped(tmp_path: Path) -> None:
    """The other importer has moved the file but not yet recorded it: the archive folder tells."""
    inbox = tmp_path / "in"
    (inbox / "done").mkdir(parents=True)
    (inbox / "a.csv").write_text("email\na@example.com\n")
    (inbox / "b.csv").write_text("email\nb@example.com\n")

    class MovedMeanwhile(DataSource):
        def download(self, file: Any, dest: Path, progress: Any = None) -> str:
            if file.name == "a.csv":
                os.rename(inbox / "a.csv", inbox / "done" / "a.csv")  # as the other importer's move
            if file.name == "b.csv":
                os.unlink(inbox / "b.csv")  # deleted by someone: not imported anywhere
            return super().download(file, dest, progress)

    source = MovedMeanwhile(name="s", path=str(inbox), min_age=0, after_import="move:done")
    with Importer(source, SQLiteSink(tmp_path / "c.db"), state=StateStore(tmp_path / "s.db"),
                  entry_points=False) as importer:
        report = importer.run()
    by_name = {Path(f.path).name: f for f in report.files}
    assert (by_name["a.csv"].status, by_name["a.csv"].reason) == (
        "skipped", "already imported by another importer (it moved the file away after this run listed it)")
    assert by_name["b.csv"].status == "failed"
    assert by_name["b.csv"].reason is not None and by_name["b.csv"].reason.startswith("download failed: ")


def test_append_sinks_are_file_ledgers(tmp_path: Path) -> None:
    from truagents_import.sinks import CSVSink, FileLedger, JSONLSink, MemorySink

    for sink in (JSONLSink(tmp_path / "a.jsonl"), CSVSink(tmp_path / "a.csv")):
        assert isinstance(sink, FileLedger)
        sink.close()
    assert not isinstance(SQLiteSink(tmp_path / "a.db"), FileLedger)
    assert not isinstance(MemorySink(), FileLedger)
