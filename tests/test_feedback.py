"""Feedback to the uploader (SPEC 10) against a real OpenSSH sshd, read back with OpenSSH's own ``sftp``.

Each file imported, rejected or failed leaves ``<name>.result.json`` (and ``<name>.rejects.csv``
when rows were rejected) in the feedback folder on the server; the people who upload fetch them
with ``sftp``, as these tests do.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import logging
import os
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from conftest import Endpoint, endpoint_config, run_cli
from sshd import SSHD, sftp_batch_argv
from truagents_import import Contact, DataSource, Importer, MemorySink, SQLiteSink
from truagents_import.pipeline.feedback import FAILED_REASON, feedback_name

GOOD = "email,phone,first_name\nada@example.com,+12125550123,Ada\ngrace@example.com,+12125550124,Grace\n"
WITH_BAD_ROWS = (
    "email,phone,first_name\n"
    "ada@example.com,+12125550123,Ada\n"
    "not-an-email,,=HYPERLINK(\"http://evil.example\")\n"
    "grace@example.com,+12125550124,Grace\n"
    "@nope,,Bob\n"
)
NO_IDENTITY = "first_name,city\nAda,London\n"


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class Server:
    """The test sshd seen the way an uploader sees it: OpenSSH's ``sftp -b -``."""

    def __init__(self, sshd: SSHD, key_file: Path, tmp_path: Path) -> None:
        self.sshd = sshd
        self.key_file = key_file
        self.known_hosts = tmp_path / "uploader_known_hosts"
        self.known_hosts.write_text(sshd.known_hosts_line + "\n")
        self.work = tmp_path / "uploader"
        self.work.mkdir()

    def sftp(self, batch: str) -> str:
        sftp = shutil.which("sftp")
        if sftp is None:
            pytest.skip("OpenSSH sftp client is not installed")
        argv = sftp_batch_argv("-", self.sshd.port, f"{self.sshd.username}@{self.sshd.host}", self.key_file,
                               self.known_hosts, sftp=sftp)
        proc = subprocess.run(argv, input=batch, capture_output=True, text=True, timeout=60, check=False,
                              cwd=self.work)
        assert proc.returncode == 0, f"{batch}\n{proc.stdout}\n{proc.stderr}"
        return proc.stdout

    def names(self, folder: str) -> list[str]:
        """The names in a remote folder, as ``ls -1a`` shows them (hidden ones too)."""
        out = self.sftp(f'ls -1a "{folder}"\n')
        listed = [ln.strip() for ln in out.splitlines() if ln.strip() and not ln.startswith("sftp>")]
        return sorted(n.rsplit("/", 1)[-1] for n in listed if n.rsplit("/", 1)[-1] not in (".", ".."))

    def get(self, remote: str) -> bytes:
        """Fetch one remote file with ``get`` and return its bytes."""
        local = self.work / "fetched"
        local.unlink(missing_ok=True)
        self.sftp(f'get "{remote}" "{local}"\n')
        return local.read_bytes()

    def result(self, folder: str, name: str) -> dict[str, Any]:
        document: dict[str, Any] = json.loads(self.get(f"{folder}/{name}.result.json"))
        return document


@pytest.fixture
def server(sshd: SSHD, key_file: Path, tmp_path: Path) -> Server:
    return Server(sshd, key_file, tmp_path)


def source_on(openssh: Endpoint, key_file: Path, **kw: Any) -> DataSource:
    options: dict[str, Any] = {"feedback": "results", "owner": "crm-team@example.com", "pattern": "contacts_*.csv"}
    return openssh.source(key_file, **(options | kw))


def run(source: DataSource, sink: Any = None, state: Path | None = None, **kw: Any) -> Any:
    with Importer(source, sink or MemorySink(), state=state, entry_points=False, **kw) as importer:
        return importer.run()


# -- results ------------------------------------------------------------------------------------


@pytest.mark.sshd
def test_rejected_rows_and_a_clean_file_come_back_to_the_uploader(
    openssh: Endpoint, key_file: Path, server: Server, tmp_path: Path
) -> None:
    openssh.put("contacts_1.csv", WITH_BAD_ROWS)
    openssh.put("contacts_2.csv", GOOD)
    state = tmp_path / "state.db"
    report = run(source_on(openssh, key_file), SQLiteSink(tmp_path / "out.db"), state)
    assert [(Path(f.path).name, f.status, f.rejected) for f in report.files] == [
        ("contacts_1.csv", "imported", 2),
        ("contacts_2.csv", "imported", 0),
    ]
    results = f"{openssh.inbox_remote}/results"
    # Nothing left under a temporary name; no rejects file for the clean file.
    assert server.names(results) == [
        "contacts_1.csv.rejects.csv",
        "contacts_1.csv.result.json",
        "contacts_2.csv.result.json",
    ]

    first = server.result(results, "contacts_1.csv")
    assert first["status"] == "imported" and first["owner"] == "crm-team@example.com"
    assert (first["rows"], first["imported"], first["rejected"], first["duplicates"]) == (4, 2, 2, 0)
    assert first["sha256"] == sha(WITH_BAD_ROWS) and first["bytes"] == len(WITH_BAD_ROWS)
    assert first["rejects_file"] == "contacts_1.csv.rejects.csv"
    assert [(p["row"], p["code"]) for p in first["problems"]] == [(2, "invalid_email"), (4, "invalid_email")]
    assert first["mapping"] == {"email": "email", "phone": "phone", "first_name": "first_name"}
    assert first["file"] == "contacts_1.csv" and first["source"] == "crm" and first["reason"] is None
    assert first["started_at"] <= first["finished_at"]

    rejects = list(csv.reader(io.StringIO(server.get(f"{results}/contacts_1.csv.rejects.csv").decode())))
    assert rejects[0] == ["email", "phone", "first_name", "_row", "_code", "_column", "_message"]
    assert rejects[1][:6] == ["not-an-email", "", "'=HYPERLINK(\"http://evil.example\")", "2", "invalid_email", "email"]
    assert rejects[2][:6] == ["'@nope", "", "Bob", "4", "invalid_email", "email"]  # neutralised for spreadsheets
    assert len(rejects) == 3

    clean = server.result(results, "contacts_2.csv")
    assert (clean["status"], clean["rows"], clean["rejected"], clean["rejects_file"]) == ("imported", 2, 0, None)
    assert clean["problems"] == []

    # Feedback files are never imported; a re-run writes nothing new.
    before = {n: server.get(f"{results}/{n}") for n in server.names(results)}
    again = run(source_on(openssh, key_file), SQLiteSink(tmp_path / "out.db"), state)
    assert [f.status for f in again.files] == ["skipped", "skipped"]
    assert {n: server.get(f"{results}/{n}") for n in server.names(results)} == before
    with contextlib.closing(sqlite3.connect(tmp_path / "out.db")) as db:
        assert db.execute("SELECT count(*) FROM contacts").fetchone() == (2,)  # both files name Ada and Grace


@pytest.mark.sshd
def test_a_file_rejected_whole_keeps_one_result_until_it_changes(
    openssh: Endpoint, key_file: Path, server: Server, tmp_path: Path
) -> None:
    openssh.put("contacts_1.csv", NO_IDENTITY)
    state = tmp_path / "state.db"
    report = run(source_on(openssh, key_file), state=state)
    [f] = report.files
    assert f.status == "rejected"
    results = f"{openssh.inbox_remote}/results"
    first_bytes = server.get(f"{results}/contacts_1.csv.result.json")
    first = json.loads(first_bytes)
    assert first["status"] == "rejected" and first["reason"] == f.reason and first["imported"] == 0
    assert first["problems"][0]["code"] == f.problems[0].code
    assert first["rejects_file"] is None and server.names(results) == ["contacts_1.csv.result.json"]

    # A rejected file is tried again on every run; its result is not written again.
    again = run(source_on(openssh, key_file), state=state)
    assert [x.status for x in again.files] == ["rejected"]
    assert server.get(f"{results}/contacts_1.csv.result.json") == first_bytes

    # Delivered again with other content, it gets a fresh result.
    openssh.put("contacts_1.csv", GOOD)
    fixed = run(source_on(openssh, key_file), state=state)
    assert [x.status for x in fixed.files] == ["imported"]
    fresh = server.result(results, "contacts_1.csv")
    assert (fresh["status"], fresh["imported"], fresh["sha256"]) == ("imported", 2, sha(GOOD))


class BrokenSink:
    """A sink whose database fails while the file's contacts are written."""

    def write(self, contacts: Sequence[Contact]) -> None:
        raise OSError("disk full on db-internal-7.corp")

    def commit(self) -> None:
        raise AssertionError("never reached")

    def rollback(self) -> None:
        pass

    def close(self) -> None:
        pass


@pytest.mark.sshd
def test_a_file_that_failed_mid_import_says_so_without_our_details(
    openssh: Endpoint, key_file: Path, server: Server, tmp_path: Path
) -> None:
    openssh.put("contacts_1.csv", GOOD)
    state = tmp_path / "state.db"
    report = run(source_on(openssh, key_file), BrokenSink(), state)
    [f] = report.files
    assert f.status == "failed" and "disk full" in (f.reason or "")
    results = f"{openssh.inbox_remote}/results"
    text = server.get(f"{results}/contacts_1.csv.result.json").decode()
    failed = json.loads(text)
    assert (failed["status"], failed["reason"], failed["imported"]) == ("failed", FAILED_REASON, 0)
    assert "db-internal" not in text and "disk full" not in text  # the operator's business, not the sender's

    # Retried later and imported: the provisional failure is replaced.
    sink = MemorySink()
    assert [x.status for x in run(source_on(openssh, key_file), sink, state).files] == ["imported"]
    assert server.result(results, "contacts_1.csv")["status"] == "imported"
    assert len(sink.contacts) == 2


@contextlib.contextmanager
def read_only(folder: Path) -> Iterator[None]:
    """Make a folder unwritable on the server's side, even for root (which ignores modes)."""
    folder.chmod(0o555)
    immutable = False
    if os.geteuid() == 0:
        immutable = subprocess.run(["chattr", "+i", str(folder)], capture_output=True, check=False).returncode == 0
    try:
        probe = folder / "probe"
        try:
            probe.write_text("x")
        except OSError:
            pass
        else:
            probe.unlink()
            pytest.skip("cannot make a folder read-only here (root without chattr)")
        yield
    finally:
        if immutable:
            subprocess.run(["chattr", "-i", str(folder)], check=False)
        folder.chmod(0o755)


@pytest.mark.sshd
def test_an_unwritable_feedback_folder_is_a_warning_not_a_failure(
    openssh: Endpoint, key_file: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    results = openssh.inbox_local / "results"
    results.mkdir()
    openssh.put("contacts_1.csv", GOOD)
    sink = MemorySink()
    with read_only(results), caplog.at_level(logging.WARNING, logger="truagents_import"):
        report = run(source_on(openssh, key_file), sink, tmp_path / "state.db")
    [f] = report.files
    assert report.ok and f.status == "imported" and f.imported == 2
    assert len(sink.contacts) == 2  # the contacts are committed
    [warning] = f.warnings
    assert warning.startswith(f"the result could not be written back to {results}")
    assert any("could not be written back" in r.getMessage() for r in caplog.records)
    assert list(results.iterdir()) == []


@pytest.mark.sshd
def test_hostile_remote_names_never_escape_the_feedback_folder(
    openssh: Endpoint, key_file: Path, server: Server, tmp_path: Path
) -> None:
    names = [
        "contacts_\x1b[31mred\x07\nline.csv",
        "contacts_..\\..\\..\\escape.csv",
        "contacts_" + "x" * 230 + ".csv",
    ]
    for n, name in enumerate(names):
        openssh.put(name, f"email\nperson{n}@example.com\n")
    before = set(tmp_path.rglob("*"))
    report = run(source_on(openssh, key_file), state=tmp_path / "state.db")
    assert sorted(Path(f.path).name for f in report.files if f.status == "imported") == sorted(names)
    results = openssh.inbox_local / "results"
    written = set(tmp_path.rglob("*")) - before - {tmp_path / "state.db"}
    written = {p for p in written if not p.name.startswith("state.db")}
    assert written and all(p.parent == results for p in written if p != results)
    listed = server.names(f"{openssh.inbox_remote}/results")
    assert len(listed) == 3 and all(n.isprintable() and "\\" not in n and len(n.encode()) < 255 for n in listed)
    documents = [server.result(f"{openssh.inbox_remote}/results", n.removesuffix(".result.json")) for n in listed]
    assert sorted(d["file"] for d in documents) == sorted(names)  # the real name, inside the JSON
    assert all(d["status"] == "imported" for d in documents)


def test_feedback_names_are_one_plain_component() -> None:
    assert feedback_name("contacts_2026-11-24.csv") == "contacts_2026-11-24.csv"
    for hostile in ("../../etc/passwd", "..\\..\\x.csv", ".hidden.csv", "a\x00b", "a\nb.csv", "\u202egnp.csv",
                    "x" * 400, "\udcff.csv", "...", "/"):
        safe = feedback_name(hostile)
        assert safe and "/" not in safe and "\\" not in safe and not safe.startswith(".")
        assert safe.isprintable() and len(safe.encode()) <= 200, hostile
    # Names that would clean up alike keep results of their own.
    assert feedback_name("a\x01b.csv") != feedback_name("a\x02b.csv")
    assert feedback_name("x" * 300 + "1") != feedback_name("x" * 300 + "2")


def test_results_in_a_local_folder_and_nothing_on_a_dry_run(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "contacts_1.csv").write_text(WITH_BAD_ROWS)
    source = DataSource(name="nb", path=str(inbox), pattern="contacts_*.csv", min_age=0, feedback=str(tmp_path / "out"))
    with Importer(source, MemorySink(), entry_points=False) as importer:
        importer.run(dry_run=True)
    assert not (tmp_path / "out").exists()
    run(source)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "contacts_1.csv.rejects.csv",
        "contacts_1.csv.result.json",
    ]
    document = json.loads((tmp_path / "out" / "contacts_1.csv.result.json").read_text())
    assert document["owner"] is None and document["rejected"] == 2
    # Result files placed beside the data are never taken for data.
    source.feedback = "."
    run(source)
    assert [f.name for f in source.list_files()] == ["contacts_1.csv"]


@pytest.mark.sshd
def test_ls_and_check_name_the_owner(openssh: Endpoint, key_file: Path, tmp_path: Path,
                                     write_config: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    config = endpoint_config(openssh, key_file, write_config)
    extra = 'min_age = 0\nowner = "crm-team@example.com"\nfeedback = "results"'
    config.write_text(config.read_text().replace("min_age = 0", extra))
    monkeypatch.chdir(tmp_path)
    status, out = run_cli("ls", "--config", str(config))
    assert status == 0 and "delivered by crm-team@example.com" in out
    status, out = run_cli("ls", "--config", str(config), "--json")
    assert json.loads(out)["owner"] == "crm-team@example.com"
    status, out = run_cli("check", "--config", str(config), "--json")
    steps = {s["name"]: s for s in json.loads(out)["steps"]}
    assert steps["files_present"]["status"] == "fail"
    assert "who delivers this source: crm-team@example.com" in steps["files_present"]["advice"]
