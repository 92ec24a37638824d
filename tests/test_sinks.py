"""Acceptance tests of the built-in sinks: exact contents after an import, a re-import and an update.

The same scenario runs into every sink (``memory``, ``jsonl``, ``csv``, ``sqlite`` here;
``postgres`` in test_postgres.py): a first file, the same file again (nothing changes), then the
same file with new content (the log sinks append it; the upserting sinks merge it, or replace
with ``merge = "replace"``).
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from truagents_import import ConfigError, Contact, DataSource, Importer, ImportReport, MemorySink, StateStore
from truagents_import._jsontext import dumps, dumps_attributes, dumps_tags
from truagents_import.config import parse_config
from truagents_import.hookspecs import Sink
from truagents_import.plugins import Plugins
from truagents_import.sinks import CSVSink, JSONLSink, SQLiteSink
from truagents_import.sinks._merge import merge_attributes, union_tags
from truagents_import.sinks.csv import neutralise_cell

FIRST = (
    "id,email,phone,first name,last name,tz,tags,opt out,city,note\n"
    "1,Ann@Example.com,(415) 555-0100,Ann,Lee,europe/paris,vip;news,no,Paris,=1+2\n"
    "2,bob@example.com,,Bob,,,news,,Berlin,\n"
    "3,,+44 20 7946 0958,=cmd,Carr,,,yes,,\n"
)

UPDATE = (
    "id,email,phone,first name,last name,tz,tags,opt out,city,note\n"
    "1,,,Annie,,,pro;vip,yes,,hello\n"
    "2,bob@new.example.com,,,Stone,,,no,Munich,\n"
    "4,dan@example.com,,Dan,,,,,,\n"
)

# The contacts each file makes, as Contact.to_dict() without source_file (the folder varies).
FIRST_CONTACTS: list[dict[str, Any]] = [
    {"external_id": "1", "email": "ann@example.com", "phone": "+14155550100", "first_name": "Ann",
     "last_name": "Lee", "timezone": "Europe/Paris", "tags": ["vip", "news"], "unsubscribed": False,
     "attributes": {"city": "Paris", "note": "=1+2"}, "source": "crm", "source_row": 1},
    {"external_id": "2", "email": "bob@example.com", "phone": None, "first_name": "Bob", "last_name": None,
     "timezone": None, "tags": ["news"], "unsubscribed": None, "attributes": {"city": "Berlin", "note": ""},
     "source": "crm", "source_row": 2},
    {"external_id": "3", "email": None, "phone": "+442079460958", "first_name": "=cmd", "last_name": "Carr",
     "timezone": None, "tags": [], "unsubscribed": True, "attributes": {"city": "", "note": ""},
     "source": "crm", "source_row": 3},
]  # fmt: skip

UPDATE_CONTACTS: list[dict[str, Any]] = [
    {"external_id": "1", "email": None, "phone": None, "first_name": "Annie", "last_name": None,
     "timezone": None, "tags": ["pro", "vip"], "unsubscribed": True, "attributes": {"city": "", "note": "hello"},
     "source": "crm", "source_row": 1},
    {"external_id": "2", "email": "bob@new.example.com", "phone": None, "first_name": None, "last_name": "Stone",
     "timezone": None, "tags": [], "unsubscribed": False, "attributes": {"city": "Munich", "note": ""},
     "source": "crm", "source_row": 2},
    {"external_id": "4", "email": "dan@example.com", "phone": None, "first_name": "Dan", "last_name": None,
     "timezone": None, "tags": [], "unsubscribed": None, "attributes": {"city": "", "note": ""},
     "source": "crm", "source_row": 3},
]  # fmt: skip

# What an upserting sink holds after the update, by identity, under each merge policy.
MERGED: dict[str, dict[str, Any]] = {
    "1": {"external_id": "1", "email": "ann@example.com", "phone": "+14155550100", "first_name": "Annie",
          "last_name": "Lee", "timezone": "Europe/Paris", "tags": ["vip", "news", "pro"], "unsubscribed": True,
          "attributes": {"city": "Paris", "note": "hello"}, "source": "crm", "source_row": 1},
    "2": {"external_id": "2", "email": "bob@new.example.com", "phone": None, "first_name": "Bob",
          "last_name": "Stone", "timezone": None, "tags": ["news"], "unsubscribed": False,
          "attributes": {"city": "Munich", "note": ""}, "source": "crm", "source_row": 2},
    "3": FIRST_CONTACTS[2],
    "4": UPDATE_CONTACTS[2],
}  # fmt: skip
REPLACED: dict[str, dict[str, Any]] = {"1": UPDATE_CONTACTS[0], "2": UPDATE_CONTACTS[1], "3": FIRST_CONTACTS[2],
                                       "4": UPDATE_CONTACTS[2]}  # fmt: skip
FIRST_BY_ID = {c["external_id"]: c for c in FIRST_CONTACTS}

FILE_NAME = "contacts.csv"


def local_source(inbox: Path, **options: Any) -> DataSource:
    """A data source on a local folder, as the scenario uses it."""
    inbox.mkdir(exist_ok=True)
    return DataSource(name="crm", path=str(inbox), min_age=0, default_region="US", **options)


def put(inbox: Path, text: str, mtime: int) -> None:
    """Write the scenario's file with a given mtime (so a rewrite is seen as changed whatever the clock)."""
    path = inbox / FILE_NAME
    path.write_text(text, encoding="utf-8")
    os.utime(path, (mtime, mtime))


def run_scenario(
    tmp_path: Path,
    make_sink: Callable[[], Sink],
    check: Callable[[str], None],
    state: Callable[[], Any] | None = None,
    **source_options: Any,
) -> list[ImportReport]:
    """Import FIRST, import it again, then import UPDATE under the same name; ``check(step)`` after each.

    Every run is a new importer with a new sink from ``make_sink`` and the same state database,
    as a scheduled job would be.
    """
    inbox = tmp_path / "inbox"
    source = local_source(inbox, **source_options)
    state_path = tmp_path / "state.db"
    reports = []
    for step, text, mtime in (("import", FIRST, 1_700_000_000), ("reimport", FIRST, 1_700_000_000),
                              ("update", UPDATE, 1_700_086_400)):  # fmt: skip
        if step != "reimport":
            put(inbox, text, mtime)
        store = state() if state is not None else StateStore(state_path)
        with Importer(source, make_sink(), state=store, entry_points=False) as importer:
            report = importer.run()
        [result] = report.files
        expected = "skipped" if step == "reimport" else "imported"
        assert result.status == expected, (step, result.status, result.reason)
        if step != "reimport":
            assert (result.rows, result.imported, result.rejected, result.duplicates) == (3, 3, 0, 0)
        check(step)
        reports.append(report)
    return reports


def with_file(rows: list[dict[str, Any]], source_file: str) -> list[dict[str, Any]]:
    """Contact dicts in the key order of Contact.to_dict(), with ``source_file`` filled in."""
    keys = list(Contact().to_dict())
    return [{k: (source_file if k == "source_file" else row[k]) for k in keys} for row in rows]


# -- memory ---------------------------------------------------------------------------------------


def test_memory_sink_contents(tmp_path: Path) -> None:
    sink = MemorySink()
    source_file = str(tmp_path / "inbox" / FILE_NAME)
    expected = {
        "import": with_file(FIRST_CONTACTS, source_file),
        "reimport": with_file(FIRST_CONTACTS, source_file),
        "update": with_file(FIRST_CONTACTS + UPDATE_CONTACTS, source_file),
    }

    def check(step: str) -> None:
        assert [c.to_dict() for c in sink.contacts] == expected[step]

    run_scenario(tmp_path, lambda: sink, check)
    assert sink.commits == 2
    assert {k: c.to_dict()["first_name"] for k, c in sink.by_identity().items()} == {
        "1": "Annie", "2": None, "3": "=cmd", "4": "Dan"}  # fmt: skip


# -- jsonl ----------------------------------------------------------------------------------------


def test_jsonl_sink_contents(tmp_path: Path) -> None:
    out = tmp_path / "out" / "contacts.jsonl"
    source_file = str(tmp_path / "inbox" / FILE_NAME)
    expected = {
        "import": with_file(FIRST_CONTACTS, source_file),
        "reimport": with_file(FIRST_CONTACTS, source_file),
        "update": with_file(FIRST_CONTACTS + UPDATE_CONTACTS, source_file),
    }

    def check(step: str) -> None:
        lines = out.read_text(encoding="utf-8").splitlines()
        assert [json.loads(line) for line in lines] == expected[step]

    run_scenario(tmp_path, lambda: JSONLSink(out), check)


# -- csv ------------------------------------------------------------------------------------------

CSV_HEADER_LINE = (
    "external_id,email,phone,first_name,last_name,timezone,tags,unsubscribed,attributes,source,source_file,"
    "source_row\r\n"
)


def csv_first_rows(source_file: str) -> str:
    """The exact bytes the csv sink writes for FIRST (formulas neutralised, tags joined, attributes JSON)."""
    return (
        f'1,ann@example.com,\'+14155550100,Ann,Lee,Europe/Paris,vip;news,false,"{{""city"": ""Paris"", '
        f'""note"": ""=1+2""}}",crm,{source_file},1\r\n'
        f'2,bob@example.com,,Bob,,,news,,"{{""city"": ""Berlin"", ""note"": """"}}",crm,{source_file},2\r\n'
        f'3,,\'+442079460958,\'=cmd,Carr,,,true,"{{""city"": """", ""note"": """"}}",crm,{source_file},3\r\n'
    )


def csv_update_rows(source_file: str) -> str:
    """The exact bytes the csv sink appends for UPDATE."""
    return (
        f'1,,,Annie,,,pro;vip,true,"{{""city"": """", ""note"": ""hello""}}",crm,{source_file},1\r\n'
        f'2,bob@new.example.com,,,Stone,,,false,"{{""city"": ""Munich"", ""note"": """"}}",crm,{source_file},2\r\n'
        f'4,dan@example.com,,Dan,,,,,"{{""city"": """", ""note"": """"}}",crm,{source_file},3\r\n'
    )


def test_csv_sink_contents(tmp_path: Path) -> None:
    out = tmp_path / "out" / "contacts.csv"
    source_file = str(tmp_path / "inbox" / FILE_NAME)
    first = CSV_HEADER_LINE + csv_first_rows(source_file)
    expected = {"import": first, "reimport": first, "update": first + csv_update_rows(source_file)}

    def check(step: str) -> None:
        assert out.read_bytes().decode("utf-8") == expected[step]

    run_scenario(tmp_path, lambda: CSVSink(out), check)


def test_csv_sink_rollback_header_and_formulas(tmp_path: Path) -> None:
    out = tmp_path / "c.csv"
    sink = CSVSink(out)
    assert out.read_bytes().decode() == CSV_HEADER_LINE  # the header is there (and durable) from the start
    sink.write([Contact(email="a@example.com", tags=("@t", "u"), attributes={"k": "v"})])
    sink.commit()
    committed = out.read_bytes()
    sink.write([Contact(email="b@example.com")])
    sink.rollback()
    assert out.read_bytes() == committed
    sink.write([Contact(email="c@example.com", last_name="-1", first_name="\tx")])
    sink.close()  # not committed: dropped
    assert out.read_bytes() == committed
    assert committed.decode().splitlines()[1] == ',a@example.com,,,,,\'@t;u,,"{""k"": ""v""}",,,'
    reopened = CSVSink(out)  # appends after what is there, without a second header
    reopened.write([Contact(email="d@example.com")])
    reopened.commit()
    reopened.close()
    assert out.read_bytes() == committed + b",d@example.com,,,,,,,{},,,\r\n"  # no second header
    assert [neutralise_cell(v) for v in ("=a", "+1", "-1", "@a", "\ta", "\ra", "a=", "")] == [
        "'=a", "'+1", "'-1", "'@a", "'\ta", "'\ra", "a=", ""]  # fmt: skip


def test_csv_sink_refuses_a_file_with_another_header(tmp_path: Path) -> None:
    out = tmp_path / "other.csv"
    out.write_text("name,phone\nx,1\n")
    with pytest.raises(ConfigError, match=r"another header.*new file"):
        CSVSink(out)
    assert out.read_text() == "name,phone\nx,1\n"


CSV_CRASHER = """
import sys, time
from truagents_import import Contact
from truagents_import.sinks import CSVSink
sink = CSVSink(sys.argv[1])
sink.write([Contact(email="kept@example.com")])
sink.commit()
sink.write([Contact(email="lost@example.com")] * 1000)
sink._file.flush()  # the rows reached the file, as a big batch does, but were never committed
print("written", flush=True)
time.sleep(600)
"""


def test_csv_sink_cuts_off_a_killed_run(tmp_path: Path) -> None:
    out = tmp_path / "c.csv"
    script = tmp_path / "crasher.py"
    script.write_text(CSV_CRASHER)
    child = subprocess.Popen([sys.executable, str(script), str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "written"
        assert b"lost@example.com" in out.read_bytes()
        with pytest.raises(ConfigError, match="being written by another importer"):
            CSVSink(out)  # one writer at a time
    finally:
        os.kill(child.pid, signal.SIGKILL)  # a crash: no rollback, no close
        child.wait(timeout=60)
        if child.stdout is not None:
            child.stdout.close()
    sink = CSVSink(out)
    sink.close()
    assert out.read_bytes().decode() == CSV_HEADER_LINE + ",kept@example.com,,,,,,,{},,,\r\n"


# -- sqlite ---------------------------------------------------------------------------------------


def sqlite_rows(path: Path) -> dict[str, dict[str, Any]]:
    """The contacts table by identity, in the neutral form of the scenario (JSON decoded, booleans)."""
    db = sqlite3.connect(path)
    db.row_factory = sqlite3.Row
    out = {}
    for row in db.execute("SELECT * FROM contacts ORDER BY identity"):
        d = dict(row)
        d["tags"] = json.loads(d["tags"])
        d["attributes"] = json.loads(d["attributes"])
        d["unsubscribed"] = None if d["unsubscribed"] is None else bool(d["unsubscribed"])
        out[d.pop("identity")] = d
    db.close()
    return out


def strip_times(rows: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Rows without created_at/updated_at, and with source_file reduced to its name."""
    return {
        k: {c: (Path(v).name if c == "source_file" else v) for c, v in row.items() if not c.endswith("_at")}
        for k, row in rows.items()
    }


def expected_rows(rows: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Scenario rows as strip_times() gives them."""
    return {k: {**row, "source_file": FILE_NAME} for k, row in rows.items()}


def table_checker(read: Callable[[], dict[str, dict[str, Any]]], merge: str,
                  snapshots: dict[str, dict[str, dict[str, Any]]]) -> Callable[[str], None]:  # fmt: skip
    """A ``check`` for run_scenario on an upserting sink: the table's exact rows after each step."""

    def check(step: str) -> None:
        snapshots[step] = read()
        if step == "import":
            assert strip_times(snapshots[step]) == expected_rows(FIRST_BY_ID)
        elif step == "reimport":
            assert snapshots["reimport"] == snapshots["import"]  # timestamps included: nothing was written
        else:
            assert strip_times(snapshots[step]) == expected_rows(MERGED if merge == "merge" else REPLACED)
            before, after = snapshots["import"], snapshots["update"]
            assert after["3"] == before["3"]  # not in the update: untouched, timestamps included
            assert after["1"]["created_at"] == before["1"]["created_at"]
            assert after["1"]["updated_at"] >= before["1"]["updated_at"] >= before["1"]["created_at"]

    return check


class WritingSQLiteSink(SQLiteSink):
    """The SQLite sink with its own ``write``: the importer then calls ``write`` with Contact batches
    instead of handing it the staging file (the path every sink takes)."""

    def write(self, contacts: Sequence[Contact]) -> None:
        super().write(contacts)


@pytest.mark.parametrize("path", ["staging", "write"])
@pytest.mark.parametrize("merge", ["merge", "replace"])
def test_sqlite_sink_contents(tmp_path: Path, merge: str, path: str) -> None:
    """The same exact rows whether the sink takes the staging file in SQL or Contact batches."""
    db = tmp_path / "contacts.db"
    check = table_checker(lambda: sqlite_rows(db), merge, {})
    kind = SQLiteSink if path == "staging" else WritingSQLiteSink
    assert kind(tmp_path / "probe.db").takes_staging() is (path == "staging")
    run_scenario(tmp_path, lambda: kind(db, merge=merge), check)  # type: ignore[arg-type]


def check_source_merge_option(tmp_path: Path, make_sink: Callable[[str], Any],
                              read: Callable[[], dict[str, dict[str, Any]]], sink_policy: str,
                              source_policy: str) -> None:  # fmt: skip
    """The scenario with a source whose ``merge`` differs from the sink's: the source's policy wins,
    and each sink has its own policy again after the file."""
    sinks: list[Any] = []

    def make() -> Any:
        sinks.append(make_sink(sink_policy))
        return sinks[-1]

    run_scenario(tmp_path, make, table_checker(read, source_policy, {}), merge=source_policy)
    assert [sink.merge for sink in sinks] == [sink_policy] * 3


@pytest.mark.parametrize(("sink_policy", "source_policy"), [("merge", "replace"), ("replace", "merge")])
def test_a_sources_merge_option_wins_over_the_sinks(tmp_path: Path, sink_policy: str, source_policy: str) -> None:
    db = tmp_path / "contacts.db"
    check_source_merge_option(tmp_path, lambda p: SQLiteSink(db, merge=p), lambda: sqlite_rows(db),  # type: ignore[arg-type]
                              sink_policy, source_policy)


def test_a_merge_option_needs_an_upserting_sink(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    source = local_source(inbox, merge="replace")
    put(inbox, FIRST, 1_700_000_000)
    with Importer(source, JSONLSink(tmp_path / "out.jsonl"), entry_points=False) as importer:
        with pytest.raises(ConfigError, match=r"sets merge = 'replace', but its sink \(JSONLSink\) does not upsert"):
            importer.run()
        assert importer.run(dry_run=True).files[0].imported == 3  # a dry run writes nothing: no policy needed
    assert not (tmp_path / "out.jsonl").exists() or (tmp_path / "out.jsonl").read_text() == ""
    assert [c.external_id for c in source.read(FILE_NAME)] == ["1", "2", "3"]
    with pytest.raises(ValueError, match="merge must be 'merge' or 'replace'"):
        local_source(inbox, merge="upsert")
    with pytest.raises(ConfigError, match=r"sources\[0\]\.merge: merge must be 'merge' or 'replace'"):
        parse_config({"sources": [{"name": "a", "path": "/in", "merge": "upsert"}]}, tmp_path)
    config = parse_config({"sources": [{"name": "a", "path": "/in", "merge": "replace"}]}, tmp_path)
    assert config.sources[0].merge == "replace"


def test_merge_helpers() -> None:
    assert union_tags(["a", "b"], ["c", "a"]) == ["a", "b", "c"]
    assert merge_attributes({"a": "1", "b": "2"}, {"a": "", "b": "3", "c": ""}) == {"a": "1", "b": "3", "c": ""}


@settings(max_examples=300, deadline=None)
@given(
    tags=st.lists(st.text(), max_size=4),
    attributes=st.dictionaries(st.text(), st.text(), max_size=4),
)
def test_json_text_is_exactly_json_dumps(tags: list[str], attributes: dict[str, str]) -> None:
    """The sinks' JSON text (one encoder built once) is byte for byte what json.dumps writes."""
    for value in (tags, tuple(tags), attributes, [attributes, tags]):
        assert dumps(value) == json.dumps(value, ensure_ascii=False)
    assert dumps_tags(tuple(tags)) == dumps_tags(iter(tags)) == json.dumps(tags, ensure_ascii=False)
    proxy = MappingProxyType(attributes)
    assert dumps_attributes(proxy) == dumps_attributes(attributes) == json.dumps(attributes, ensure_ascii=False)


def test_sink_options_from_config(tmp_path: Path) -> None:
    plugins = Plugins.build(entry_points=False)
    config = parse_config({"sink": {"type": "csv", "path": "out/c.csv"}}, tmp_path)
    sink = plugins.make_sink(config.sink.type, config.sink.options)
    assert isinstance(sink, CSVSink) and sink.path == tmp_path / "out/c.csv"
    sink.close()
    sqlite = plugins.make_sink("sqlite", {"path": tmp_path / "x.db", "merge": "replace"})
    assert repr(sqlite) == f"SQLiteSink({str(tmp_path / 'x.db')!r}, merge='replace')"
    sqlite.close()
    with pytest.raises(ConfigError, match=r"merge = 'upsert'.*'merge' \(the default\) or 'replace'"):
        plugins.make_sink("sqlite", {"path": tmp_path / "y.db", "merge": "upsert"})
    assert {"csv", "postgres"} <= set(plugins.sinks)


@pytest.mark.parametrize("kind", ["jsonl", "csv"])
def test_append_sinks_cut_a_killed_files_lines_on_reopen(tmp_path: Path, kind: str) -> None:
    path = tmp_path / f"out.{kind}"
    script = (
        "import os, signal, sys\n"
        "from truagents_import import Contact\n"
        "from truagents_import.sinks.csv import CSVSink\n"
        "from truagents_import.sinks.jsonl import JSONLSink\n"
        f"sink = ({'JSONLSink' if kind == 'jsonl' else 'CSVSink'})(sys.argv[1])\n"
        "sink.write([Contact(email='kept@example.com')]); sink.commit()\n"
        "sink.write([Contact(email='lost@example.com')]); sink._file.flush()\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    proc = subprocess.run([sys.executable, "-c", script, str(path)], check=False, timeout=60)
    assert proc.returncode == -9
    assert "lost@example.com" in path.read_text()
    reopened = JSONLSink(path) if kind == "jsonl" else CSVSink(path)
    reopened.close()
    text = path.read_text()
    assert "kept@example.com" in text and "lost@example.com" not in text
