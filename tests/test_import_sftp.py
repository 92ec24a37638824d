"""End-to-end imports from a real SFTP server: the embedded one and OpenSSH's sshd."""

from __future__ import annotations

import gzip
import os
import time
from pathlib import Path

import pytest

from conftest import Endpoint
from truagents_import import HostKeyError, Importer, MemorySink, SQLiteSink, StateStore

CSV = (
    "Customer ID,Email,Phone,First Name,Last Name,Tags,Opt Out,Plan\n"
    "1,Ann@Example.com,(212) 555-0123,Ann,Lee,a;b,yes,gold\n"
    "2,bad-email,415-867-5309,Bo,Chan,,no,silver\n"
    "3,cy@example.com,,Cy,\"Dee, Jr\",,,\n"
    "1,ann.lee@example.com,(212) 555-0123,Ann,Lee,c,no,platinum\n"
    "4,dee@example.com,12345,Dee,Ek,,,\n"
)


def test_import_from_server(endpoint: Endpoint, key_file: Path) -> None:
    endpoint.put("contacts_1.csv", CSV)
    endpoint.put("notes.txt", "not matching the pattern")
    sink = MemorySink()
    source = endpoint.source(key_file, default_region="US", default_timezone="America/New_York")
    with Importer(source, sink) as importer:
        report = importer.run()
    [f] = report.files
    assert (f.status, f.rows, f.imported, f.rejected, f.duplicates) == ("imported", 5, 2, 2, 1)
    assert f.rows == f.imported + f.rejected + f.duplicates
    assert sorted((p.row, p.code, p.column) for p in f.problems) == [
        (2, "invalid_email", "Email"),
        (5, "invalid_phone", "Phone"),
    ]
    by_id = sink.by_identity()
    ann = by_id["1"]
    assert (ann.email, ann.phone, ann.tags, ann.unsubscribed, ann.source_row) == (
        "ann.lee@example.com", "+12125550123", ("c",), False, 4,
    )
    assert ann.attributes == {"Plan": "platinum"}
    assert ann.timezone == "America/New_York"
    cy = by_id["3"]
    assert (cy.last_name, cy.phone, cy.attributes) == ("Dee, Jr", None, {"Plan": ""})
    assert f.sha256 is not None and len(f.sha256) == 64


def test_second_run_skips_and_renamed_copy_is_skipped(endpoint: Endpoint, key_file: Path, tmp_path: Path) -> None:
    endpoint.put("contacts_1.csv", CSV)
    state = StateStore(tmp_path / "state.db")
    sink = SQLiteSink(tmp_path / "contacts.db")
    source = endpoint.source(key_file, default_region="US")
    importer = Importer(source, sink, state=state)
    first = importer.run()
    assert [f.status for f in first.files] == ["imported"]
    second = importer.run()
    assert [(f.status, f.reason) for f in second.files] == [("skipped", "already imported")]
    endpoint.put("contacts_2.csv", CSV)
    third = importer.run()
    statuses = {Path(f.path).name: (f.status, f.reason) for f in third.files}
    assert statuses["contacts_2.csv"][0] == "skipped"
    assert "same content already imported as" in str(statuses["contacts_2.csv"][1])
    # A changed file is imported again.
    time.sleep(1.1)
    endpoint.put("contacts_1.csv", CSV.replace("gold", "bronze"))
    fourth = importer.run()
    changed = [f for f in fourth.files if f.path.endswith("contacts_1.csv")]
    assert [f.status for f in changed] == ["imported"]
    importer.close()


def test_gzip_and_semicolons(endpoint: Endpoint, key_file: Path) -> None:
    text = "email;name\nx@example.com;Xavier Yu\ny@example.com;Yolanda\n"
    endpoint.put("contacts.csv.gz", gzip.compress(text.encode("cp1252")))
    sink = MemorySink()
    with Importer(endpoint.source(key_file, pattern="*.csv.gz"), sink) as importer:
        report = importer.run()
    assert [(f.status, f.imported) for f in report.files] == [("imported", 2)]
    assert [(c.email, c.first_name, c.last_name) for c in sink.contacts] == [
        ("x@example.com", "Xavier", "Yu"),
        ("y@example.com", "Yolanda", None),
    ]


def test_incomplete_and_temporary_files_are_left(endpoint: Endpoint, key_file: Path) -> None:
    endpoint.put("fresh.csv", "email\na@example.com\n")
    endpoint.put(".old.csv.part", "email\nb@example.com\n")
    old = endpoint.put("old.csv", "email\nc@example.com\n")
    past = time.time() - 3600
    os.utime(old, (past, past))
    source = endpoint.source(key_file, min_age=60)
    listing = {f.name: f.state for f in source.list_files()}
    assert listing == {"old.csv": "new", "fresh.csv": "incomplete", ".old.csv.part": "ignored"}
    sink = MemorySink()
    with Importer(source, sink) as importer:
        report = importer.run()
    assert {Path(f.path).name: f.status for f in report.files} == {"old.csv": "imported", "fresh.csv": "incomplete"}
    assert [c.email for c in sink.contacts] == ["c@example.com"]


def test_wrong_host_key_refuses_and_imports_nothing(endpoint: Endpoint, key_file: Path) -> None:
    endpoint.put("contacts.csv", CSV)
    source = endpoint.source(key_file)
    assert source.integration is not None
    source.integration.host_key = "SHA256:" + "A" * 43
    sink = MemorySink()
    with pytest.raises(HostKeyError) as excinfo, Importer(source, sink) as importer:
        importer.run()
    assert excinfo.value.presented == endpoint.fingerprint
    assert endpoint.fingerprint in str(excinfo.value)
    assert sink.contacts == []


def test_known_hosts_file_with_port(endpoint: Endpoint, key_file: Path, tmp_path: Path) -> None:
    from truagents_import import Integration

    endpoint.put("contacts.csv", "email\nk@example.com\n")
    integ = endpoint.integration(key_file)
    presented = integ.presented_host_key()
    assert presented == endpoint.fingerprint
    # A known_hosts file with a [host]:port entry, as ssh-keyscan writes it.
    line = _known_hosts_line(endpoint)
    kh = tmp_path / "known_hosts"
    kh.write_text(line + "\n")
    by_file = Integration(host=endpoint.host, port=endpoint.port, username=endpoint.username,
                          private_key=key_file, known_hosts=kh)
    with by_file:
        names = by_file.fs.ls(endpoint.inbox_remote, detail=False)
    assert [n.rsplit("/", 1)[-1] for n in names] == ["contacts.csv"]
    kh.write_text(line.replace(f"[{endpoint.host}]:{endpoint.port}", f"[{endpoint.host}]:1"))
    with pytest.raises(HostKeyError), by_file:
        by_file.fs.ls(endpoint.inbox_remote, detail=False)


def _known_hosts_line(endpoint: Endpoint) -> str:
    import asyncio

    import asyncssh

    async def fetch() -> str:
        key = await asyncssh.get_server_host_key(endpoint.host, endpoint.port)
        assert key is not None
        return f"[{endpoint.host}]:{endpoint.port} " + key.export_public_key().decode().strip()

    return asyncio.run(fetch())
