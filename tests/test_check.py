"""The triage ladder (`check`): one broken set-up per test, each failing at its own step with advice."""

from __future__ import annotations

import codecs
import getpass
import gzip
import json
import os
import random
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import pytest

from conftest import Endpoint, endpoint_config, run_cli
from truagents_import.check import (
    HEAD_BYTES,
    MARKS,
    STEP_NAMES,
    CheckReport,
    check_source,
    near_misses,
    run_check,
)
from truagents_import.cli import exit_status
from truagents_import.config import Config, parse_config
from truagents_import.pipeline.importer import Importer
from truagents_import.remote import keys
from truagents_import.remote.server import SFTPServer
from truagents_import.source import DataSource

GOOD = "external id,email,phone,first name\nC-1,ada@example.com,(212) 555-0123,Ada\nC-2,grace@example.org,,Grace\n"


@pytest.fixture
def embedded(sftp_server: SFTPServer) -> Endpoint:
    """The embedded server only: for set-ups where the server's kind does not matter (faster)."""
    inbox = sftp_server.root / "inbox"
    inbox.mkdir()
    return Endpoint("embedded", sftp_server.host, sftp_server.port, getpass.getuser(),
                    sftp_server.host_key_fingerprint, "/inbox", inbox)


def make_config(endpoint: Endpoint, key_file: Path, base: Path, *, sink: dict[str, Any] | None = None,
                state: str = "state/state.db", integration: dict[str, Any] | None = None,
                **source: Any) -> Config:
    data = {
        "integration": {"host": endpoint.host, "port": endpoint.port, "username": endpoint.username,
                        "private_key": str(key_file), "host_key": endpoint.fingerprint} | (integration or {}),
        "sources": [{"name": "crm-drop", "path": endpoint.inbox_remote, "pattern": "contacts_*.csv",
                     "min_age": 0, "default_region": "US"} | source],
        "sink": sink or {"type": "sqlite", "path": "out/contacts.db"},
        "state": {"path": state},
    }
    return parse_config(data, base)


def summary(report: CheckReport) -> str:
    return "\n".join(f"{MARKS[s.status]} {s.name}: {s.detail} | {s.advice}" for s in report.steps)


def assert_fails_at(report: CheckReport, name: str, *advice: str) -> str:
    """The ladder stopped at `name`: steps before held, steps after were skipped; returns the detail."""
    assert [s.name for s in report.steps] == list(STEP_NAMES)
    failed = report.failed
    assert failed is not None, summary(report)
    assert failed.name == name, summary(report)
    assert not report.ok
    index = STEP_NAMES.index(name)
    assert all(s.status in ("pass", "warn") for s in report.steps[:index]), summary(report)
    assert all(s.status == "skip" and s.detail == f"not run: {name} failed" for s in report.steps[index + 1:])
    assert failed.advice, summary(report)
    for words in advice:
        assert words in failed.advice, summary(report)
    return failed.detail


def days_ago(path: Path, days: float) -> None:
    then = time.time() - days * 86400
    os.utime(path, (then, then))


# -- a healthy set-up -------------------------------------------------------------------------------


def test_healthy_setup_passes_every_step(endpoint: Endpoint, key_file: Path, tmp_path: Path) -> None:
    endpoint.put("contacts_2026-11-23.csv", GOOD)
    days_ago(endpoint.inbox_local / "contacts_2026-11-23.csv", 0.5)
    endpoint.put("contacts_2026-11-24.csv", GOOD)
    config = make_config(endpoint, key_file, tmp_path, expect_every="24h")
    report = run_check(config)
    assert [(s.name, s.status) for s in report.steps] == [(n, "pass") for n in STEP_NAMES], summary(report)
    assert report.ok and exit_status(report) == 0 and report.failed is None
    assert endpoint.fingerprint in report.step("host_key").detail
    assert "contacts_2026-11-24.csv" in report.step("shape").detail
    assert "0 of 2 rows of contacts_2026-11-24.csv" in report.step("sample").detail
    assert all(s.advice is None for s in report.steps)
    # Nothing was imported and the state database was not created.
    assert not (tmp_path / "state" / "state.db").exists()


def test_json_document_has_exactly_the_spec_shape(embedded: Endpoint, key_file: Path, tmp_path: Path) -> None:
    embedded.put("contacts_1.csv", GOOD)
    data = run_check(make_config(embedded, key_file, tmp_path)).to_dict()
    assert set(data) == {"source", "ok", "steps"}
    assert data["source"] == "crm-drop" and data["ok"] is True
    assert [s["name"] for s in data["steps"]] == list(STEP_NAMES)
    assert all(set(s) == {"name", "status", "detail", "advice"} for s in data["steps"])
    assert CheckReport.from_dict(json.loads(json.dumps(data))).to_dict() == data


def test_local_folder_source_skips_the_connection_steps(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "contacts_1.csv").write_text(GOOD)
    source = DataSource(name="local", path=str(inbox), pattern="contacts_*.csv", min_age=0, default_region="US")
    report = check_source(source)
    statuses = {s.name: s.status for s in report.steps}
    assert statuses["reachable"] == statuses["host_key"] == statuses["auth"] == "skip"
    assert statuses["state"] == statuses["sink"] == "skip"  # none configured for this check
    assert report.ok
    for name in ("config", "folder", "files_present", "freshness", "complete", "shape", "sample"):
        assert statuses[name] == "pass", summary(report)


# -- the connection ---------------------------------------------------------------------------------


def test_wrong_host(embedded: Endpoint, key_file: Path, tmp_path: Path) -> None:
    config = make_config(embedded, key_file, tmp_path, integration={"host": "no-such-host.invalid"})
    detail = assert_fails_at(run_check(config), "reachable", "`host`")
    assert "cannot resolve host 'no-such-host.invalid'" in detail


def test_closed_port(key_file: Path, tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    nowhere = Endpoint("none", "127.0.0.1", port, "u", "SHA256:" + "C" * 43, "/inbox", tmp_path)
    detail = assert_fails_at(run_check(make_config(nowhere, key_file, tmp_path)), "reachable", "`port`")
    assert "refused" in detail


def test_port_that_is_not_ssh(key_file: Path, tmp_path: Path) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]

        def answer() -> None:
            conn, _ = listener.accept()
            with conn:
                conn.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")

        server = threading.Thread(target=answer, daemon=True)
        server.start()
        web = Endpoint("web", "127.0.0.1", port, "u", "SHA256:" + "C" * 43, "/inbox", tmp_path)
        detail = assert_fails_at(run_check(make_config(web, key_file, tmp_path)), "reachable", "`port`")
        server.join(10)
    assert "not an SSH server" in detail and "HTTP/1.1 400" in detail


def test_port_that_says_nothing(key_file: Path, tmp_path: Path) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()  # the kernel accepts; nobody ever speaks
        port = listener.getsockname()[1]
        silent = Endpoint("silent", "127.0.0.1", port, "u", "SHA256:" + "C" * 43, "/inbox", tmp_path)
        report = run_check(make_config(silent, key_file, tmp_path, integration={"connect_timeout": 1.0}))
    assert report.step("reachable").status == "warn"
    assert "no SSH greeting" in report.step("reachable").detail
    detail = assert_fails_at(report, "host_key", "handshake")
    assert "SSH handshake" in detail


def test_wrong_host_key(endpoint: Endpoint, key_file: Path, tmp_path: Path) -> None:
    wrong = "SHA256:" + "B" * 43
    config = make_config(endpoint, key_file, tmp_path, integration={"host_key": wrong})
    detail = assert_fails_at(run_check(config), "host_key", f'host_key = "{endpoint.fingerprint}"')
    assert endpoint.fingerprint in detail and wrong in detail


def test_host_key_from_known_hosts_file(embedded: Endpoint, sftp_server: SFTPServer, key_file: Path,
                                       tmp_path: Path) -> None:
    embedded.put("contacts_1.csv", GOOD)
    known = tmp_path / "known_hosts"
    known.write_text(sftp_server.known_hosts_line() + "\n")
    config = make_config(embedded, key_file, tmp_path, integration={"host_key": None, "known_hosts": str(known)})
    report = run_check(config)
    assert report.ok, summary(report)
    assert report.step("host_key").detail == f"the server presented {embedded.fingerprint}, listed in {known}"

    stranger = keys.public_line(keys.generate_key_pair("elsewhere")).split()[:2]
    known.write_text(f"[{embedded.host}]:{embedded.port} {' '.join(stranger)}\n")
    detail = assert_fails_at(run_check(config), "host_key", f'host_key = "{embedded.fingerprint}"')
    assert str(known) in detail


def test_key_not_authorized(endpoint: Endpoint, tmp_path: Path) -> None:
    stranger = keys.generate_key_pair("stranger")
    pair = keys.write_key_pair(stranger, tmp_path / "stranger", "id_ed25519")
    report = run_check(make_config(endpoint, pair.private_key, tmp_path))
    detail = assert_fails_at(report, "auth", keys.authorized_keys_line(stranger), "`username`")
    assert pair.fingerprint in detail
    assert report.step("host_key").status == "pass"


def test_unreadable_key_fails_the_config_step_with_exit_2(embedded: Endpoint, key_file: Path,
                                                          tmp_path: Path) -> None:
    key_file.chmod(0o644)
    report = run_check(make_config(embedded, key_file, tmp_path))
    assert_fails_at(report, "config", "`private_key`")
    assert exit_status(report) == 2


# -- the folder and its files ---------------------------------------------------------------------


def test_missing_folder(endpoint: Endpoint, key_file: Path, tmp_path: Path) -> None:
    typo = endpoint.inbox_remote + "x"
    report = run_check(make_config(endpoint, key_file, tmp_path, path=typo))
    detail = assert_fails_at(report, "folder", "`path`", endpoint.inbox_remote)
    assert repr(typo) in detail


def test_empty_folder(endpoint: Endpoint, key_file: Path, tmp_path: Path) -> None:
    detail = assert_fails_at(run_check(make_config(endpoint, key_file, tmp_path)), "files_present",
                             "scheduled export")
    assert "is empty" in detail


def test_only_near_miss_names(embedded: Endpoint, key_file: Path, tmp_path: Path) -> None:
    embedded.put("Contacts_2026-11-24.CSV", GOOD)
    embedded.put("contacts_2026-11-24.txt", GOOD)
    embedded.put("contact_2026-11-24.csv", GOOD)
    embedded.put("invoices.pdf", b"%PDF")
    report = run_check(make_config(embedded, key_file, tmp_path))
    detail = assert_fails_at(report, "files_present", "`pattern`")
    assert "Contacts_2026-11-24.CSV: other case" in detail
    assert "contacts_2026-11-24.txt: other extension" in detail
    assert "contact_2026-11-24.csv: similar name" in detail
    assert "invoices.pdf" not in detail


def test_near_miss_date_format_and_sibling_folder(embedded: Endpoint, key_file: Path, tmp_path: Path) -> None:
    embedded.put("contacts_20261124.csv", GOOD)
    sibling = embedded.inbox_local.parent / "outbox"
    sibling.mkdir()
    (sibling / "contacts_2026-11-24.csv").write_text(GOOD)
    config = make_config(embedded, key_file, tmp_path, pattern="contacts_????-??-??.csv")
    detail = assert_fails_at(run_check(config), "files_present", "`pattern`", "`path`")
    assert "contacts_20261124.csv: another date format" in detail and "contacts_2026-11-24.csv" in detail
    assert "matching files are in /outbox (1 matching)" in detail


def test_newer_file_under_another_name_warns(embedded: Endpoint, key_file: Path, tmp_path: Path) -> None:
    days_ago(embedded.put("contacts_2026-11-23.csv", GOOD), 1)
    embedded.put("Contacts_2026-11-24.CSV", GOOD)
    report = run_check(make_config(embedded, key_file, tmp_path))
    step = report.step("files_present")
    assert step.status == "warn" and "Contacts_2026-11-24.CSV: other case" in step.detail, summary(report)
    assert "`pattern`" in (step.advice or "")
    late = run_check(make_config(embedded, key_file, tmp_path, expect_every="1h"))
    assert_fails_at(late, "freshness", "Contacts_2026-11-24.CSV", "`pattern`")


def test_near_misses_function() -> None:
    names = ["CONTACTS_1.csv", "contacts_1.csv.gz", "contacts_1.csv", ".contacts_2.csv.part", "zzz.bin"]
    found = {m.name: m.reason for m in near_misses(names, "contacts_*.csv")}
    assert set(found) == {"CONTACTS_1.csv", "contacts_1.csv.gz"}
    assert found["CONTACTS_1.csv"].startswith("other case")
    assert found["contacts_1.csv.gz"].startswith("other extension")
    dated = near_misses(["export_24.11.2026.csv"], "export_????-??-??.csv")
    assert [m.reason for m in dated] == ["another date format (the pattern wants names like export_2026-11-24.csv)"]
    regex = r"re:contacts_(?P<date>\d{4}-\d{2}-\d{2})\.csv"
    found = {m.name: m.reason.split(" (")[0] for m in near_misses(
        ["Contacts_2026-11-24.csv", "contacts_20261124.csv", "contacts_2026-11-24.csv.gz", "contacts_2026-11-24.csv",
         "contact_2026-11-24.csv", "report.pdf"], regex)}
    assert found == {"Contacts_2026-11-24.csv": "other case", "contacts_20261124.csv": "another date format",
                     "contacts_2026-11-24.csv.gz": "other extension", "contact_2026-11-24.csv": "similar name"}


def test_stale_newest_file(endpoint: Endpoint, key_file: Path, tmp_path: Path) -> None:
    days_ago(endpoint.put("contacts_2026-11-21.csv", GOOD), 3)
    report = run_check(make_config(endpoint, key_file, tmp_path, expect_every="1h"))
    detail = assert_fails_at(report, "freshness", "scheduled export")
    assert "contacts_2026-11-21.csv" in detail and "3 d" in detail and "every 1h" in detail


@pytest.mark.parametrize(
    ("files", "options", "detail_words", "advice_words"),
    [
        pytest.param({".contacts_1.csv.part": 0.0}, {}, "still being uploaded", "wait for the upload",
                     id="temporary-name"),
        pytest.param({"contacts_1.csv.part": 0.5}, {}, "kept its temporary name", "send the file again",
                     id="stuck-upload"),
        pytest.param({"contacts_1.csv": 0.0}, {"min_age": 3600}, "min_age", "wait until", id="too-young"),
        pytest.param({"contacts_1.csv": 0.0}, {"ready_marker": "{name}.done"}, "contacts_1.csv.done",
                     "`ready_marker`", id="no-ready-marker"),
    ],
)
def test_file_still_uploading(embedded: Endpoint, key_file: Path, tmp_path: Path, files: dict[str, float],
                              options: dict[str, Any], detail_words: str, advice_words: str) -> None:
    for name, age in files.items():
        days_ago(embedded.put(name, GOOD), age)
    detail = assert_fails_at(run_check(make_config(embedded, key_file, tmp_path, **options)), "complete",
                             advice_words)
    assert detail_words in detail


def test_stuck_upload_beside_a_complete_newer_file_is_a_warning(embedded: Endpoint, key_file: Path,
                                                               tmp_path: Path) -> None:
    days_ago(embedded.put(".contacts_1.csv.part", GOOD), 1)
    embedded.put("contacts_2.csv", GOOD)
    report = run_check(make_config(embedded, key_file, tmp_path))
    assert report.ok, summary(report)
    step = report.step("complete")
    assert step.status == "warn" and ".contacts_1.csv.part" in step.detail and step.advice


# -- the newest file --------------------------------------------------------------------------------


def test_undecodable_file(embedded: Endpoint, key_file: Path, tmp_path: Path) -> None:
    embedded.put("contacts_1.csv", b"email,name\n\x81\x8d@example.com,x\n")
    detail = assert_fails_at(run_check(make_config(embedded, key_file, tmp_path)), "shape", "UTF-8")
    assert "contacts_1.csv" in detail and "cannot be decoded" in detail


def test_no_identity_column(endpoint: Endpoint, key_file: Path, tmp_path: Path) -> None:
    endpoint.put("contacts_1.csv", "colour,size,Reach me at\nred,1,ada@example.com\nblue,2,grace@example.org\n")
    detail = assert_fails_at(run_check(make_config(endpoint, key_file, tmp_path)), "shape",
                             "[sources.mapping]", '"Reach me at" = "email"')
    assert "no column maps to external_id, email or phone" in detail and "colour" in detail


def test_mostly_invalid_rows(embedded: Endpoint, key_file: Path, tmp_path: Path) -> None:
    rows = [f"not-an-email-{i}" for i in range(8)] + ["ok1@example.com", "ok2@example.com"]
    embedded.put("contacts_1.csv", "email\n" + "\n".join(rows) + "\n")
    detail = assert_fails_at(run_check(make_config(embedded, key_file, tmp_path)), "sample", "--rejects")
    assert "8 of 10 rows" in detail and "invalid_email 8" in detail


def test_some_invalid_rows_warn(embedded: Endpoint, key_file: Path, tmp_path: Path) -> None:
    rows = ["bad-phone-row,12"] * 2 + [f"ok{i}@example.com,(212) 555-01{i:02d}" for i in range(8)]
    embedded.put("contacts_1.csv", "email,phone\n" + "\n".join(rows) + "\n")
    report = run_check(make_config(embedded, key_file, tmp_path))
    step = report.step("sample")
    assert report.ok and step.status == "warn", summary(report)
    assert "2 of 10 rows" in step.detail and step.advice


def test_sample_reads_only_the_first_rows_of_a_big_file(embedded: Endpoint, key_file: Path,
                                                         tmp_path: Path) -> None:
    body = "".join(f"user{i}@example.com,{'x' * 200}\n" for i in range(20000))  # about 4.5 MB
    embedded.put("contacts_1.csv", "email,notes\n" + body)
    report = run_check(make_config(embedded, key_file, tmp_path))
    assert report.ok, summary(report)
    assert "0 of the first 1000 rows" in report.step("sample").detail


def test_header_drift_since_the_last_import(embedded: Endpoint, key_file: Path, tmp_path: Path) -> None:
    config = make_config(embedded, key_file, tmp_path)
    days_ago(embedded.put("contacts_1.csv", "email,phone,plan\na@example.com,,gold\n"), 0.1)
    with Importer.from_config(config) as importer:
        assert importer.run().ok
    embedded.put("contacts_2.csv", "email,tier\nb@example.com,gold\n")
    report = run_check(make_config(embedded, key_file, tmp_path))
    step = report.step("shape")
    assert report.ok and step.status == "warn", summary(report)
    assert "appeared: tier; disappeared: phone, plan" in step.detail
    assert "2 new" not in report.step("files_present").detail and "1 imported" in report.step("files_present").detail
    assert "1 file attempt(s) recorded" in report.step("state").detail


def test_header_drift_fails_when_the_source_rejects_drift(embedded: Endpoint, key_file: Path,
                                                          tmp_path: Path) -> None:
    if "on_drift" not in attrs.fields_dict(DataSource):
        pytest.skip("this DataSource has no on_drift setting")
    days_ago(embedded.put("contacts_1.csv", "email,phone\na@example.com,\n"), 0.1)
    with Importer.from_config(make_config(embedded, key_file, tmp_path)) as importer:
        assert importer.run().ok
    embedded.put("contacts_2.csv", "email,mobile\nb@example.com,\n")
    detail = assert_fails_at(run_check(make_config(embedded, key_file, tmp_path, on_drift="reject")), "shape",
                             "[sources.mapping]")
    assert "on_drift = 'reject'" in detail


def test_big_gzip_file_is_sampled_from_its_head(embedded: Endpoint, key_file: Path, tmp_path: Path) -> None:
    rng = random.Random(9)
    body = "".join(f"user{i}@example.com,{rng.randbytes(60).hex()}\n" for i in range(40000))
    data = gzip.compress(("email,token\n" + body).encode(), compresslevel=1)
    assert len(data) > HEAD_BYTES  # the download is cut in the middle of the gzip stream
    embedded.put("contacts_1.csv", data)
    report = run_check(make_config(embedded, key_file, tmp_path))
    assert report.ok, summary(report)
    assert "gzip" in report.step("shape").detail
    assert "0 of the first 1000 rows" in report.step("sample").detail


def test_cut_at_line_keeps_whole_utf16_lines() -> None:
    from truagents_import.check.head import cut_at_line

    text = "email\na@example.com\nb@example.com\n"
    for encoded in (codecs.BOM_UTF16_LE + text.encode("utf-16-le"), codecs.BOM_UTF16_BE + text.encode("utf-16-be"),
                    text.encode()):
        for end in range(len(encoded) // 2, len(encoded)):
            kept = cut_at_line(encoded[:end])
            assert encoded.startswith(kept)
            decoded = kept.decode("utf-16" if encoded[:2] in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE) else "utf-8")
            assert decoded.endswith("\n")


# -- state and sink ---------------------------------------------------------------------------------


def test_unreachable_sink(embedded: Endpoint, key_file: Path, tmp_path: Path) -> None:
    embedded.put("contacts_1.csv", GOOD)
    (tmp_path / "blocker").write_text("a regular file, not a folder")
    config = make_config(embedded, key_file, tmp_path, sink={"type": "sqlite", "path": "blocker/contacts.db"})
    detail = assert_fails_at(run_check(config), "sink", "[sink]")
    assert "blocker" in detail


def test_unknown_sink_type(embedded: Endpoint, key_file: Path, tmp_path: Path) -> None:
    embedded.put("contacts_1.csv", GOOD)
    config = make_config(embedded, key_file, tmp_path, sink={"type": "nosuchsink"})
    detail = assert_fails_at(run_check(config), "sink", "[sink]")
    assert "'nosuchsink' is unknown" in detail


def test_merge_option_on_a_sink_that_does_not_upsert(embedded: Endpoint, key_file: Path, tmp_path: Path) -> None:
    embedded.put("contacts_1.csv", GOOD)
    config = make_config(embedded, key_file, tmp_path, sink={"type": "jsonl", "path": "out/c.jsonl"}, merge="replace")
    detail = assert_fails_at(run_check(config), "sink", "remove merge from the source")
    assert "merge = 'replace'" in detail and "'jsonl' sink does not upsert" in detail
    config = make_config(embedded, key_file, tmp_path, merge="replace")  # the sqlite sink upserts
    assert run_check(config).ok


def test_state_database_that_cannot_be_created(embedded: Endpoint, key_file: Path, tmp_path: Path) -> None:
    embedded.put("contacts_1.csv", GOOD)
    (tmp_path / "blocker").write_text("x")
    config = make_config(embedded, key_file, tmp_path, state="blocker/state.db")
    detail = assert_fails_at(run_check(config), "state", "[state]")
    assert "is a file, not a folder" in detail


def test_sink_secrets_are_not_shown(embedded: Endpoint, key_file: Path, tmp_path: Path) -> None:
    from truagents_import import hookimpl
    from truagents_import._text import mask_url

    assert mask_url("postgresql://app:s3cret@db:5432/crm") == "postgresql://app:***@db:5432/crm"

    def leaky(url: str, api_token: str) -> None:
        raise ConnectionError(f"cannot reach {url} with token {api_token}")

    class Leaky:
        @hookimpl
        def register_sinks(self, register: Callable[..., None]) -> None:
            register("leaky", leaky)

    embedded.put("contacts_1.csv", GOOD)
    config = make_config(embedded, key_file, tmp_path,
                         sink={"type": "leaky", "url": "https://u:pw-123@api.example/x", "api_token": "tok-456"})
    report = run_check(config, plugins=[Leaky()])
    detail = assert_fails_at(report, "sink", "[sink]")
    assert "ConnectionError" in detail and "pw-123" not in detail and "tok-456" not in detail


# -- --all and the command line ---------------------------------------------------------------------


def test_run_all_goes_on_after_a_failure(embedded: Endpoint, key_file: Path, tmp_path: Path) -> None:
    config = make_config(embedded, key_file, tmp_path, integration={"host": "no-such-host.invalid"})
    report = run_check(config, run_all=True)
    statuses = {s.name: s.status for s in report.steps}
    assert statuses["reachable"] == "fail"
    assert report.step("host_key").detail == "not run: the server is not reachable"
    assert {statuses[n] for n in ("host_key", "auth", "folder", "files_present", "shape", "sample")} == {"skip"}
    assert statuses["state"] == statuses["sink"] == "pass"


def test_unknown_source_fails_the_config_step(embedded: Endpoint, key_file: Path, tmp_path: Path) -> None:
    report = run_check(make_config(embedded, key_file, tmp_path), "nope")
    assert_fails_at(report, "config", "--source")
    assert exit_status(report) == 2 and report.source == "nope"


_cli_config = endpoint_config
cli = run_cli


def test_cli_healthy_and_failing(embedded: Endpoint, key_file: Path, write_config: Callable[[str], Path]) -> None:
    cfg = _cli_config(embedded, key_file, write_config)
    embedded.put("contacts_1.csv", GOOD)
    status, out = cli("check", "--config", str(cfg))
    assert status == 0, out
    lines = out.splitlines()
    assert lines[0] == "check of source crm-drop"
    assert [ln.split()[:2] for ln in lines[1:13]] == [["✓", n] for n in STEP_NAMES]
    assert lines[-1].startswith("ok: no step failed")

    status, out = cli("check", "--config", str(cfg), "--json")
    assert status == 0 and json.loads(out)["ok"] is True

    wrong = "SHA256:" + "B" * 43
    cfg = _cli_config(embedded, key_file, write_config, fp=wrong)
    status, out = cli("check", "--config", str(cfg))
    assert status == 1
    assert "  ✗ host_key" in out and "  - auth           not run: host_key failed" in out
    assert "next: confirm the fingerprint" in out and f'host_key = "{embedded.fingerprint}"' in out
    assert out.splitlines()[-1].startswith("failed at host_key")

    status, out = cli("check", "--config", str(cfg), "--json", "--all")
    data = json.loads(out)
    assert status == 1 and data["ok"] is False
    assert [s["status"] for s in data["steps"]][:4] == ["pass", "pass", "fail", "skip"]


def test_cli_configuration_errors_exit_2(tmp_path: Path, write_config: Callable[[str], Path],
                                         embedded: Endpoint, key_file: Path) -> None:
    status, out = cli("check", "--config", str(tmp_path / "missing.toml"), "--json")
    assert status == 2 and json.loads(out)["exit_status"] == 2
    cfg = _cli_config(embedded, key_file, write_config)
    status, out = cli("check", "--config", str(cfg), "--source", "other", "--json")
    data = json.loads(out)
    assert status == 2 and data["steps"][0]["status"] == "fail"
    assert "no source named 'other'" in data["steps"][0]["detail"]


def test_cli_help() -> None:
    status, out = cli("check", "--help")
    assert status == 0 and "--json" in out and "--all" in out and "--source" in out


def test_html_repr(embedded: Endpoint, key_file: Path, tmp_path: Path) -> None:
    report = run_check(make_config(embedded, key_file, tmp_path))
    page = report._repr_html_()
    assert page.startswith("<p><b>check crm-drop</b>: failed at files_present</p><table>")
    assert page.count("<tr>") == 1 + len(STEP_NAMES)


def test_a_broken_plugin_fails_the_shape_step_with_advice(embedded: Endpoint, key_file: Path,
                                                          tmp_path: Path) -> None:
    from truagents_import import hookimpl

    class Broken:
        @hookimpl
        def register_sinks(self, register: Callable[..., None]) -> None:
            raise RuntimeError("broken on purpose")

    embedded.put("contacts_1.csv", GOOD)
    report = run_check(make_config(embedded, key_file, tmp_path), plugins=[Broken()])
    detail = assert_fails_at(report, "shape", "a plugin failed", "TRUAGENTS_IMPORT_BLOCK_PLUGINS")
    assert "broken on purpose" in detail


def test_a_check_sends_no_import_finished_notice(embedded: Endpoint, key_file: Path, tmp_path: Path) -> None:
    from truagents_import import hookimpl

    heard: list[object] = []

    class Listener:
        @hookimpl
        def import_finished(self, report: object, source: object) -> None:
            heard.append(report)

    embedded.put("contacts_1.csv", GOOD)
    report = run_check(make_config(embedded, key_file, tmp_path), plugins=[Listener()])
    assert report.ok and report.step("sample").status == "pass"
    assert heard == []


def test_probe_tells_host_key_from_auth(embedded: Endpoint, key_file: Path, tmp_path: Path) -> None:
    from truagents_import.remote.probe import probe_ssh

    probe = probe_ssh(embedded.integration(key_file))
    assert probe.outcome == "ok" and probe.presented == embedded.fingerprint
    wrong = probe_ssh(embedded.integration(key_file, host_key="SHA256:" + "B" * 43))
    assert wrong.outcome == "host_key" and wrong.presented == embedded.fingerprint
    stranger = keys.write_key_pair(keys.generate_key_pair("s"), tmp_path / "s", "id").private_key
    refused = probe_ssh(embedded.integration(stranger))
    assert refused.outcome == "auth" and refused.presented == embedded.fingerprint


def test_integration_check_runs_the_connection_rungs(sftp_server: Any, key_file: Path) -> None:
    from truagents_import import Integration

    good = Integration(host=sftp_server.host, port=sftp_server.port, username=getpass.getuser(),
                       private_key=key_file, host_key=sftp_server.host_key_fingerprint)
    report = good.check()
    assert [(s.name, s.status) for s in report.steps] == [
        ("config", "pass"), ("reachable", "pass"), ("host_key", "pass"), ("auth", "pass"),
    ]
    wrong = Integration(host=sftp_server.host, port=sftp_server.port, username=getpass.getuser(),
                        private_key=key_file, host_key="SHA256:" + "Q" * 43)
    report = wrong.check()
    assert not report.ok and report.failed is not None and report.failed.name == "host_key"
    assert sftp_server.host_key_fingerprint in report.failed.detail
