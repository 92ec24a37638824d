"""Integration tests against a real PostgreSQL: the ``postgres`` sink, the PostgreSQL state
store, two importer processes on one database, and a sink that fails in the middle of a file.

A throwaway cluster (tests/pg.py) runs for the session on 127.0.0.1; every test gets a database
of its own. Without PostgreSQL (or psycopg) these tests are skipped, except when ``CI=true``,
where that fails the run.
"""

from __future__ import annotations

import json
import os
import pwd
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from pg import PostgresServer, find_pg_bin, run_postgres
from test_sinks import check_source_merge_option, local_source, run_scenario, table_checker
from truagents_import import ConfigError, Contact, Importer, StateStore
from truagents_import._postgres import mask_url
from truagents_import.config import parse_config
from truagents_import.report import FileResult
from truagents_import.sinks.postgres import PostgresSink
from truagents_import.state import ClaimRefused
from truagents_import.state.postgres import PostgresStateStore

IN_CI = os.environ.get("CI") == "true"
SOURCE = "crm"


def _unavailable(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"CI=true but {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def pg_bin() -> Path:
    """The PostgreSQL server binaries (and psycopg), or a skip (a failure when CI=true)."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        _unavailable("psycopg is not installed: pip install 'truagents-import[postgres]'")
    found = find_pg_bin()
    if found is None:
        _unavailable("PostgreSQL is not installed (apt-get install -y postgresql)")
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            _unavailable("running as root, the throwaway cluster needs a 'postgres' OS user to run as")
    assert found is not None
    return found


@pytest.fixture(scope="session")
def postgres(pg_bin: Path) -> Iterator[PostgresServer]:
    """A throwaway cluster for the whole session (stopped by pg_ctl, by its PID if need be)."""
    with run_postgres(pg_bin) as server:
        yield server


@pytest.fixture
def pg_url(postgres: PostgresServer) -> Iterator[str]:
    """The URL of a fresh, empty database for one test (dropped afterwards)."""
    import psycopg

    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres.url(), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield postgres.url(name)
    with psycopg.connect(postgres.url(), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def query(url: str, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    """Run one statement on its own connection and return its rows."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        cur = conn.execute(sql, params)  # type: ignore[arg-type]
        return cur.fetchall() if cur.description else []


def pg_rows(url: str, table: str = "contacts") -> dict[str, dict[str, Any]]:
    """The contacts table by identity (tags as a list, attributes as a dict, times as datetimes)."""
    import psycopg
    from psycopg.rows import dict_row

    with psycopg.connect(url, row_factory=dict_row) as conn:
        rows = conn.execute(f"SELECT * FROM {table} ORDER BY identity").fetchall()  # type: ignore[arg-type]
    return {row.pop("identity"): row for row in rows}


# -- the sink: exact contents --------------------------------------------------------------------


@pytest.mark.parametrize(("sink_policy", "source_policy"), [("merge", "replace"), ("replace", "merge")])
def test_postgres_sink_takes_a_sources_merge_option(
    tmp_path: Path, pg_url: str, sink_policy: str, source_policy: str
) -> None:
    check_source_merge_option(tmp_path, lambda p: PostgresSink(pg_url, merge=p), lambda: pg_rows(pg_url),  # type: ignore[arg-type]
                              sink_policy, source_policy)


@pytest.mark.parametrize("merge", ["merge", "replace"])
def test_postgres_sink_contents(tmp_path: Path, pg_url: str, merge: str) -> None:
    snapshots: dict[str, dict[str, dict[str, Any]]] = {}
    check = table_checker(lambda: pg_rows(pg_url), merge, snapshots)
    # The merge run keeps its state on PostgreSQL too; the replace run on SQLite.
    state = (lambda: PostgresStateStore(pg_url)) if merge == "merge" else None
    run_scenario(tmp_path, lambda: PostgresSink(pg_url, merge=merge), check, state=state)  # type: ignore[arg-type]
    assert snapshots["update"]["1"]["updated_at"] > snapshots["import"]["1"]["updated_at"]
    types = dict(query(pg_url, "SELECT column_name, data_type FROM information_schema.columns "
                               "WHERE table_name = 'contacts'"))  # fmt: skip
    assert (types["tags"], types["attributes"], types["unsubscribed"], types["created_at"]) == (
        "ARRAY", "jsonb", "boolean", "timestamp with time zone")  # fmt: skip


def test_postgres_sink_batches_rollback_and_table_option(pg_url: str) -> None:
    sink = PostgresSink(pg_url, table="public.people")
    sink.write([Contact(external_id="1", email="a@example.com", tags=("x",))])
    sink.write([Contact(external_id="1", email="b@example.com"), Contact(external_id="2")])  # later row wins
    assert query(pg_url, "SELECT count(*) FROM people") == [(0,)]  # nothing before commit
    sink.commit()
    sink.write([Contact(external_id="3")])
    sink.rollback()
    sink.commit()  # nothing pending: a no-op
    sink.close()
    assert query(pg_url, "SELECT identity, email, tags FROM people ORDER BY 1") == [
        ("1", "b@example.com", []), ("2", None, [])]  # fmt: skip
    with pytest.raises(ConfigError, match="not a plain table name"):
        PostgresSink(pg_url, table="people; drop table people")
    other = PostgresSink(pg_url)
    with pytest.raises(ValueError, match="without external_id"):
        other.write([Contact(first_name="nobody")])
    other.close()


def test_passwords_are_masked(pg_url: str) -> None:
    secret = "s3cr3t-Pa55"  # trust authentication ignores it, so it reaches every message
    url = pg_url.replace("truagents@", f"truagents:{secret}@")
    sink = PostgresSink(url)
    store = PostgresStateStore(url)
    for text in (repr(sink), sink.url, repr(store), store.url):
        assert secret not in text and "***" in text
    sink.close()
    store.close()
    dead = f"postgresql://truagents:{secret}@127.0.0.1:1/postgres"  # nothing listens on port 1
    for make in (PostgresSink, PostgresStateStore):
        with pytest.raises(ConfigError) as info:
            make(dead)  # type: ignore[operator]
        assert secret not in str(info.value) and "cannot connect" in str(info.value) and "***" in str(info.value)
    assert mask_url("postgresql://u:pw@h/db?sslmode=require&password=pw2") == (
        "postgresql://u:***@h/db?sslmode=require&password=***")  # fmt: skip
    assert mask_url("host=h password='a b' dbname=x") == "host=h password=*** dbname=x"
    assert mask_url("postgresql://u@h/db") == "postgresql://u@h/db"


def test_missing_psycopg_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "psycopg", None)  # import psycopg now raises ImportError
    for make in (PostgresSink, PostgresStateStore):
        with pytest.raises(ConfigError, match=r"pip install 'truagents-import\[postgres\]'"):
            make("postgresql://u@127.0.0.1/db")  # type: ignore[operator]


# -- the state store -----------------------------------------------------------------------------

CLAIMER = """
import sys, time
from truagents_import.state.postgres import PostgresStateStore
store = PostgresStateStore(sys.argv[1])
claim = store.claim("crm", "f" * 64, "/inbox/held.csv")
print("claimed" if type(claim).__name__ == "Claim" else claim.message, flush=True)
time.sleep(600)
"""


def test_state_store_follows_the_protocol(tmp_path: Path, pg_url: str) -> None:
    from datetime import UTC, datetime

    pg, lite = PostgresStateStore(pg_url), StateStore(tmp_path / "state.db")
    mtime, started = datetime(2026, 1, 2, 3, 4, 5, 678, tzinfo=UTC), datetime(2026, 1, 2, tzinfo=UTC)
    for store in (pg, lite):
        assert store.file_state(SOURCE, "/in/a.csv", 10, mtime) == "new"
        first = store.claim(SOURCE, "a" * 64, "/in/a.csv")
        assert not isinstance(first, ClaimRefused)
        assert store.claim(SOURCE, "a" * 64, "/in/a.csv").message.startswith("being imported by another importer")
        result = FileResult("/in/a.csv", "imported", rows=2, imported=2, sha256="a" * 64, size=10)
        store.record(SOURCE, result, mtime=mtime, header=["id", "email"], started_at=started)
        store.release(first)
        assert store.claim(SOURCE, "a" * 64, "/in/a.csv").message == "already imported"
        assert store.claim(SOURCE, "a" * 64, "/in/b.csv").message == "same content already imported as /in/a.csv"
        forced = store.claim(SOURCE, "a" * 64, "/in/a.csv", force=True)
        assert not isinstance(forced, ClaimRefused)
        store.release(forced)
        assert store.imported_sha(SOURCE, "a" * 64) == "/in/a.csv" and store.imported_sha(SOURCE, "b" * 64) is None
        assert store.file_state(SOURCE, "/in/a.csv", 10, mtime) == "imported"
        assert store.file_state(SOURCE, "/in/a.csv", 11, mtime) == "changed"
        assert store.last_header(SOURCE) == ["id", "email"] and store.last_header("other") is None
    [pg_entry], [lite_entry] = pg.history(SOURCE), lite.history(SOURCE)
    assert {k: v for k, v in pg_entry.items() if k != "finished_at"} == {
        k: v for k, v in lite_entry.items() if k != "finished_at"}  # fmt: skip
    pg.close()
    lite.close()


def test_two_state_connections_exclude_each_other(pg_url: str) -> None:
    one, two = PostgresStateStore(pg_url), PostgresStateStore(pg_url)
    claim = one.claim(SOURCE, "c" * 64, "/in/c.csv")
    assert not isinstance(claim, ClaimRefused)
    refused = two.claim(SOURCE, "c" * 64, "/in/c2.csv")
    assert isinstance(refused, ClaimRefused) and refused.message.startswith("being imported by another importer")
    assert claim.owner in refused.message and "/in/c.csv" in refused.message
    one.release(claim)
    again = two.claim(SOURCE, "c" * 64, "/in/c2.csv")
    assert not isinstance(again, ClaimRefused)
    two.release(again)
    one.close()
    two.close()


def test_a_killed_worker_does_not_block_its_file(tmp_path: Path, pg_url: str) -> None:
    script = tmp_path / "claimer.py"
    script.write_text(CLAIMER)
    child = subprocess.Popen([sys.executable, str(script), pg_url], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "claimed"
        store = PostgresStateStore(pg_url)
        assert store.claim(SOURCE, "f" * 64, "/inbox/held.csv").message.startswith("being imported by another")
        os.kill(child.pid, signal.SIGKILL)  # a crash: no release, no clean close
        child.wait(timeout=60)
        deadline = time.monotonic() + 60  # the server notices the closed socket; give it ample time
        taken = store.claim(SOURCE, "f" * 64, "/inbox/held.csv")
        while isinstance(taken, ClaimRefused) and time.monotonic() < deadline:
            time.sleep(0.2)
            taken = store.claim(SOURCE, "f" * 64, "/inbox/held.csv")
        assert not isinstance(taken, ClaimRefused), taken
        store.release(taken)
        store.close()
    finally:
        if child.poll() is None:
            os.kill(child.pid, signal.SIGKILL)
            child.wait(timeout=60)
        if child.stdout is not None:
            child.stdout.close()


def test_state_url_in_config(tmp_path: Path, pg_url: str) -> None:
    (tmp_path / "inbox").mkdir()
    data = {
        "sources": [{"name": SOURCE, "path": str(tmp_path / "inbox")}],
        "sink": {"type": "postgres", "url": pg_url, "table": "crm_contacts"},
        "state": {"url": pg_url},
    }
    config = parse_config(data, tmp_path)
    assert config.state.url == pg_url
    with Importer.from_config(config) as importer:
        assert isinstance(importer.state, PostgresStateStore)
        assert isinstance(importer.sink, PostgresSink) and importer.sink.table == "crm_contacts"
    assert query(pg_url, "SELECT to_regclass('truagents_import_files') IS NOT NULL, "
                         "to_regclass('crm_contacts') IS NOT NULL") == [(True, True)]  # fmt: skip


def test_ls_and_check_read_the_postgres_state(tmp_path: Path, pg_url: str) -> None:
    import json

    from click.testing import CliRunner

    from truagents_import.cli import main

    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "a.csv").write_text("email\na@example.com\n")
    config = tmp_path / "truagents-import.toml"
    config.write_text(
        f'[[sources]]\nname = "{SOURCE}"\npath = "{inbox}"\nmin_age = 0\n'
        f'[sink]\ntype = "postgres"\nurl = "{pg_url}"\n[state]\nurl = "{pg_url}"\n'
    )
    runner = CliRunner()
    before = json.loads(runner.invoke(main, ["ls", "--config", str(config), "--json"]).stdout)
    assert before["files"][0]["state"] == "new"
    assert runner.invoke(main, ["import", "--config", str(config), "--json"]).exit_code == 0
    listing = json.loads(runner.invoke(main, ["ls", "--config", str(config), "--json"]).stdout)
    assert [f["state"] for f in listing["files"]] == ["imported"]
    checked = json.loads(runner.invoke(main, ["check", "--config", str(config), "--json", "--all"]).stdout)
    [state] = [s for s in checked["steps"] if s["name"] == "state"]
    assert state["status"] == "pass" and "PostgreSQL state database reachable; 1 attempts recorded" in state["detail"]


# -- two importer processes ----------------------------------------------------------------------

WORKER = """
import json, sys, time
from pathlib import Path
from truagents_import import DataSource, Importer
from truagents_import.sinks.postgres import PostgresSink
from truagents_import.state.postgres import PostgresStateStore

inbox, url, ready, go, out = sys.argv[1:6]
source = DataSource(name="crm", path=inbox, min_age=0, default_region="US")
importer = Importer(source, PostgresSink(url), state=PostgresStateStore(url), entry_points=False, batch_size=25)
Path(ready).touch()
deadline = time.monotonic() + 120
while not Path(go).exists():
    if time.monotonic() > deadline:
        sys.exit("never told to start")
    time.sleep(0.005)
report = importer.run()
importer.close()
Path(out).write_text(json.dumps([[f.path, f.status, f.reason, f.imported, f.sha256] for f in report.files]))
"""


def _worker_file(n: int, rows: int) -> str:
    lines = ["id,email,tags"] + [f"f{n:02d}-{i:03d},p{n}.{i}@example.com,file{n:02d}" for i in range(rows)]
    return "\n".join(lines) + "\n"


def test_two_importer_processes_never_import_a_file_twice(tmp_path: Path, pg_url: str) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    files, rows = 12, 120
    for n in range(files):
        (inbox / f"contacts_{n:02d}.csv").write_text(_worker_file(n, rows))
    # The same content under a second name: it must be imported once, under one of the names.
    (inbox / "contacts_99.csv").write_text(_worker_file(5, rows))
    PostgresStateStore(pg_url).close()  # tables made once, so that both workers start on equal terms
    PostgresSink(pg_url).close()
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    go = tmp_path / "go"
    children = []
    for name in ("a", "b"):
        args = [str(inbox), pg_url, str(tmp_path / f"ready-{name}"), str(go), str(tmp_path / f"out-{name}.json")]
        children.append(subprocess.Popen([sys.executable, str(script), *args]))
    try:
        deadline = time.monotonic() + 120
        while not all((tmp_path / f"ready-{n}").exists() for n in "ab"):
            assert all(c.poll() is None for c in children), "a worker died before starting"
            assert time.monotonic() < deadline, "workers never became ready"
            time.sleep(0.01)
        go.touch()  # both start together
        assert [c.wait(timeout=300) for c in children] == [0, 0]
    finally:
        for c in children:
            if c.poll() is None:
                os.kill(c.pid, signal.SIGKILL)
                c.wait(timeout=60)
    results = [json.loads((tmp_path / f"out-{n}.json").read_text()) for n in "ab"]
    imported: list[str] = []
    for report in results:
        for path, status, reason, _, _ in report:
            assert status in ("imported", "skipped"), (path, status, reason)
            if status == "imported":
                imported.append(Path(path).name)
    expected = {f"contacts_{n:02d}.csv" for n in range(files)}
    twins = {"contacts_05.csv", "contacts_99.csv"}
    assert len(imported) == len(set(imported)) == files  # no file imported twice, every content once
    assert set(imported) - twins == expected - twins and len(set(imported) & twins) == 1
    # The state agrees: one 'imported' record per content, and no claim left behind.
    history = query(pg_url, "SELECT sha256, count(*) FROM truagents_import_files WHERE status = 'imported' "
                            "GROUP BY sha256")  # fmt: skip
    assert len(history) == files and all(count == 1 for _, count in history)
    assert query(pg_url, "SELECT count(*) FROM truagents_import_claims") == [(0,)]
    # The sink: every contact once, from the file it is in.
    contacts = pg_rows(pg_url)
    assert len(contacts) == files * rows
    for identity, row in contacts.items():
        file_no = int(identity[1:3])
        name = Path(row["source_file"]).name
        assert name == f"contacts_{file_no:02d}.csv" or (file_no == 5 and name == "contacts_99.csv")
        assert row["tags"] == [f"file{file_no:02d}"]


# -- a sink that fails in the middle of a file ---------------------------------------------------


class FailOnce:
    """A sink wrapper that calls ``action`` after the first batch of the file named ``target``."""

    def __init__(self, inner: PostgresSink, target: str, action: Callable[[], None]) -> None:
        self.inner = inner
        self.target = target
        self.action = action
        self.fired = False

    def write(self, contacts: Sequence[Contact]) -> None:
        self.inner.write(contacts)
        if not self.fired and contacts and str(contacts[0].source_file).endswith(self.target):
            self.fired = True
            self.action()

    def commit(self) -> None:
        self.inner.commit()

    def rollback(self) -> None:
        self.inner.rollback()

    def close(self) -> None:
        self.inner.close()


def _two_files(inbox: Path) -> None:
    inbox.mkdir(exist_ok=True)
    for n, (name, rows) in enumerate((("a.csv", 3), ("b.csv", 7))):
        path = inbox / name
        path.write_text("id,email\n" + "".join(f"{name[0]}{i},{name[0]}{i}@example.com\n" for i in range(rows)))
        os.utime(path, (1_700_000_000 + n, 1_700_000_000 + n))


def _fail_mid_file(tmp_path: Path, url: str, state: Any, action: Callable[[], None],
                   after: Callable[[], None] = lambda: None) -> None:  # fmt: skip
    inbox = tmp_path / "inbox"
    _two_files(inbox)
    sink = FailOnce(PostgresSink(url), "b.csv", action)
    with Importer(local_source(inbox), sink, state=state, entry_points=False, batch_size=2) as importer:
        first = importer.run()
        assert [(Path(f.path).name, f.status) for f in first.files] == [("a.csv", "imported"), ("b.csv", "failed")]
        assert sink.fired and "postgres sink" in str(first.files[1].reason)
        after()
        # Nothing of b.csv was committed; a.csv is all there.
        assert sorted(pg_rows(url)) == ["a0", "a1", "a2"]
        statuses = [(Path(str(h["path"])).name, h["status"]) for h in importer.state.history(SOURCE)]
        assert statuses == [("a.csv", "imported"), ("b.csv", "failed")]
        # The next run (same importer, same sink: it reconnects) completes the job.
        second = importer.run()
        assert [(Path(f.path).name, f.status) for f in second.files] == [("a.csv", "skipped"), ("b.csv", "imported")]
        assert second.files[1].imported == 7
    assert sorted(pg_rows(url)) == ["a0", "a1", "a2"] + [f"b{i}" for i in range(7)]
    assert {Path(r["source_file"]).name for k, r in pg_rows(url).items() if k.startswith("b")} == {"b.csv"}


def test_sink_connection_killed_mid_file(tmp_path: Path, pg_url: str) -> None:
    url = pg_url + "?application_name=truagents-sink-under-test"

    def terminate() -> None:
        killed = query(pg_url, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                               "WHERE application_name = 'truagents-sink-under-test'")  # fmt: skip
        assert killed == [(True,)]

    _fail_mid_file(tmp_path, url, PostgresStateStore(pg_url), terminate)


def test_sink_server_stopped_mid_file(tmp_path: Path, pg_bin: Path) -> None:
    # A cluster of its own, stopped in the middle of b.csv and started again before the next run;
    # the state is on SQLite here (a state on the stopped server could not record the failure).
    with run_postgres(pg_bin) as server:
        _fail_mid_file(tmp_path, server.url(), StateStore(tmp_path / "state.db"), server.stop, server.start)


class WritingPostgresSink(PostgresSink):
    """The PostgreSQL sink with its own ``write``: the importer then calls ``write`` with Contact
    batches instead of handing it the staging file."""

    def write(self, contacts: Sequence[Contact]) -> None:
        super().write(contacts)


def test_the_staging_file_and_contact_batches_give_the_same_table(tmp_path: Path, pg_url: str) -> None:
    """The bulk load (SQLite writes COPY's text format, PostgreSQL parses tags and attributes from their
    JSON text) stores exactly what write() stores: tabs, newlines, carriage returns and backslashes in
    cells, quotes, non-ASCII text, tags, every opt-out value, a duplicate (the later row wins)."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "contacts.csv").write_text(
        "id,email,first name,tags,unsubscribed,note,Extra\r\n"
        '1,a@example.com,"Tab\there",vip;"b\\c",yes,"line\none\r\ntwo","back\\slash \\N"\r\n'
        "2,b@example.com,Zoë,,no,,\r\n"
        '3,,Ünï,"x | y , z",,"{""json"": [1]}",\\t\r\n'
        "2,b2@example.com,Later,,,,\r\n",
        encoding="utf-8",
    )
    tables = {}
    for table, kind in (("bulk_contacts", PostgresSink), ("written_contacts", WritingPostgresSink)):
        sink = kind(pg_url, table=table)
        assert sink.takes_staging() is (kind is PostgresSink)
        with Importer(local_source(inbox), sink, entry_points=False, state=StateStore(tmp_path / f"{table}.db")) as imp:
            [result] = imp.run().files
        assert (result.status, result.imported, result.duplicates) == ("imported", 3, 1)
        tables[table] = {
            identity: {k: v for k, v in row.items() if k not in ("created_at", "updated_at")}
            for identity, row in pg_rows(pg_url, table).items()
        }
    assert tables["bulk_contacts"] == tables["written_contacts"]
    one, two = tables["bulk_contacts"]["1"], tables["bulk_contacts"]["2"]
    assert (one["first_name"], one["tags"], one["unsubscribed"]) == ("Tab\there", ["vip", "b\\c"], True)
    assert one["attributes"] == {"note": "line\none\r\ntwo", "Extra": "back\\slash \\N"}
    assert (two["email"], two["first_name"], two["source_row"]) == ("b2@example.com", "Later", 4)
    three = tables["bulk_contacts"]["3"]
    assert three["tags"] == ["x", "y", "z"] and three["unsubscribed"] is None
    assert three["attributes"] == {"note": '{"json": [1]}', "Extra": "\\t"}
