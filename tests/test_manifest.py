"""Delivery manifests (SPEC 10) against a real OpenSSH sshd: a file waits for its manifest, and a
manifest that disagrees with what arrived rejects the whole file before anything reaches the sink.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from conftest import Endpoint, endpoint_config, run_cli
from truagents_import import DataSource, FileRejected, Importer, SQLiteSink
from truagents_import.manifest import (
    Manifest,
    check_content,
    check_rows,
    manifest_name,
    parse_manifest,
    render_manifest,
    validate_template,
)

CONTACTS = "email,phone\n" + "".join(f"person{i}@example.com,+1212555{i:04d}\n" for i in range(20))
DIGEST = hashlib.sha256(CONTACTS.encode()).hexdigest()


def manifest(**figures: object) -> str:
    return json.dumps(figures)


def source_on(openssh: Endpoint, key_file: Path, **kw: Any) -> DataSource:
    options: dict[str, Any] = {"manifest": "{name}.manifest.json", "pattern": "contacts_*.csv", "feedback": "results"}
    return openssh.source(key_file, **(options | kw))


def import_into(source: DataSource, db: Path, state: Path | None = None) -> Any:
    with Importer(source, SQLiteSink(db), state=state, entry_points=False) as importer:
        return importer.run()


def contacts_in(db: Path) -> int:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        count: int = conn.execute("SELECT count(*) FROM contacts").fetchone()[0]
        return count


# -- reading manifests ---------------------------------------------------------------------------


def test_manifests_in_json_and_sha256sum_forms() -> None:
    assert parse_manifest(b'{"rows": 3, "bytes": "120", "sha256": "' + b"AB" * 32 + b'"}', "m", "f.csv") == Manifest(
        "m", rows=3, bytes=120, sha256="ab" * 32
    )
    gnu = f"{DIGEST}  contacts_1.csv\n".encode()
    assert parse_manifest(gnu, "m", "contacts_1.csv").sha256 == DIGEST
    binary = f"{DIGEST.upper()} *./out/contacts_1.csv\n{'0' * 64}  other.csv\n".encode()
    assert parse_manifest(binary, "m", "contacts_1.csv").sha256 == DIGEST
    bsd = f"SHA256 (contacts_1.csv) = {DIGEST}\n".encode()
    assert parse_manifest(bsd, "m", "contacts_1.csv").sha256 == DIGEST
    assert parse_manifest(f"{DIGEST}  -\n".encode(), "m", "contacts_1.csv").sha256 == DIGEST  # from stdin
    for bad, says in [
        (b'{"size": 3}', "names none of rows, bytes, sha256"),
        (b'{"rows": -1}', "expected a whole number"),
        (b'{"rows": true}', "expected a whole number"),
        (b'{"sha256": "abc"}', "64 hexadecimal digits"),
        (b"{not json", "not valid JSON"),
        (b"hello world", "neither JSON nor sha256sum"),
        (b"", "empty"),
        (f"{DIGEST}  a.csv\n{DIGEST}  b.csv\n".encode(), "none of them contacts_1.csv"),
        (b"\xff\xfe", "not UTF-8"),
    ]:
        with pytest.raises(FileRejected, match=says) as caught:
            parse_manifest(bad, "m", "contacts_1.csv")
        assert caught.value.code == "manifest_invalid"


def test_a_mismatch_names_the_figure_what_was_said_and_what_arrived() -> None:
    said = Manifest("contacts_1.csv.manifest.json", rows=20, bytes=100, sha256="0" * 64)
    with pytest.raises(FileRejected) as caught:
        check_content(said, 64, "0" * 64)
    assert caught.value.code == "manifest_mismatch"
    assert "says bytes = 100, but 64 arrived" in caught.value.message
    with pytest.raises(FileRejected, match=r"says sha256 = 0{64}, but f{64} arrived"):
        check_content(Manifest("m", sha256="0" * 64), 64, "F" * 64)
    with pytest.raises(FileRejected, match="says rows = 20, but 7 arrived"):
        check_rows(said, 7)
    check_rows(Manifest("m", bytes=3), 7)  # a figure the manifest leaves out is not checked


def test_manifest_names() -> None:
    assert manifest_name("{name}.manifest.json", "a.csv") == "a.csv.manifest.json"
    assert manifest_name("{stem}.sha256", "a.csv") == "a.sha256"
    assert render_manifest("{name}.sha256", "a.csv", 3, DIGEST) == f"{DIGEST}  a.csv\n".encode()
    assert json.loads(render_manifest("{name}.manifest.json", "a.csv", 3, DIGEST)) == {"bytes": 3, "sha256": DIGEST}
    for bad in ("manifest.json", "{name}/m.json", ".{name}.json", "{other}.json", "{name", "{0}.json"):
        with pytest.raises(ValueError, match="manifest must"):
            validate_template(bad)
    with pytest.raises(ValueError, match="manifest must"):
        DataSource(name="s", path="/in", manifest="all.json")


# -- against OpenSSH ----------------------------------------------------------------------------


@pytest.mark.sshd
def test_a_file_waits_for_its_manifest_and_check_names_it(openssh: Endpoint, key_file: Path, tmp_path: Path) -> None:
    openssh.put("contacts_1.csv", CONTACTS)
    source = source_on(openssh, key_file)
    [listed] = source.list_files()
    assert (listed.state, listed.note) == ("incomplete", "waiting for manifest contacts_1.csv.manifest.json")
    db = tmp_path / "out.db"
    report = import_into(source, db)
    assert [(f.status, f.reason) for f in report.files] == [
        ("incomplete", "waiting for manifest contacts_1.csv.manifest.json")
    ]
    assert contacts_in(db) == 0
    assert not (openssh.inbox_local / "results").exists()  # nothing was imported, rejected or failed

    steps = {s.name: s for s in source_on(openssh, key_file, owner="crm-team@example.com").check().steps}
    assert steps["files_present"].status == "pass"  # the manifest is no near miss
    assert steps["complete"].status == "fail"
    assert "contacts_1.csv, is waiting for its manifest contacts_1.csv.manifest.json" in steps["complete"].detail
    assert "who delivers this source: crm-team@example.com" in (steps["complete"].advice or "")

    openssh.put("contacts_1.csv.manifest.json", manifest(rows=20, bytes=len(CONTACTS), sha256=DIGEST))
    assert [f.name for f in source.list_files()] == ["contacts_1.csv"]  # the manifest is never data
    report = import_into(source, db)
    assert [(f.status, f.imported) for f in report.files] == [("imported", 20)]
    assert contacts_in(db) == 20
    assert source.check().ok


@pytest.mark.sshd
@pytest.mark.parametrize(
    ("figures", "figure", "said", "arrived"),
    [
        ({"bytes": len(CONTACTS) * 2}, "bytes", len(CONTACTS) * 2, len(CONTACTS)),
        ({"sha256": "0" * 64, "bytes": len(CONTACTS)}, "sha256", "0" * 64, DIGEST),
        ({"rows": 20_000, "sha256": DIGEST}, "rows", 20_000, 20),
    ],
)
def test_a_manifest_that_disagrees_rejects_the_whole_file(
    openssh: Endpoint, key_file: Path, tmp_path: Path, figures: dict[str, object], figure: str, said: object,
    arrived: object,
) -> None:
    openssh.put("contacts_1.csv", CONTACTS)
    openssh.put("contacts_1.csv.manifest.json", manifest(**figures))
    db = tmp_path / "out.db"
    report = import_into(source_on(openssh, key_file), db, tmp_path / "state.db")
    [f] = report.files
    assert (f.status, f.imported) == ("rejected", 0) and not report.ok
    assert f.problems[0].code == "manifest_mismatch"
    assert f"says {figure} = {said}, but {arrived} arrived" in (f.reason or "")
    assert f.rows == (20 if figure == "rows" else 0)  # bytes and sha256 are judged before any row is read
    assert contacts_in(db) == 0  # nothing from the file reached the sink
    result = json.loads((openssh.inbox_local / "results" / "contacts_1.csv.result.json").read_text())
    assert (result["status"], result["problems"][0]["code"]) == ("rejected", "manifest_mismatch")


@pytest.mark.sshd
def test_a_sha256sum_manifest(openssh: Endpoint, key_file: Path, tmp_path: Path) -> None:
    sha256sum = shutil.which("sha256sum")
    if sha256sum is None:
        pytest.skip("coreutils sha256sum is not installed")
    local = tmp_path / "contacts_1.csv"
    local.write_text(CONTACTS)
    line = subprocess.run([sha256sum, local.name], cwd=tmp_path, capture_output=True, text=True, check=True).stdout
    openssh.put("contacts_1.csv", CONTACTS)
    openssh.put("contacts_1.csv.sha256", line)
    source = source_on(openssh, key_file, manifest="{name}.sha256")
    db = tmp_path / "out.db"
    assert [(f.status, f.imported) for f in import_into(source, db).files] == [("imported", 20)]

    # The same file, cut short on the way: the sha256 gives it away.
    openssh.put("contacts_2.csv", CONTACTS[: len(CONTACTS) // 2].rsplit("\n", 1)[0] + "\n")
    openssh.put("contacts_2.csv.sha256", line.replace("contacts_1.csv", "contacts_2.csv"))
    [f] = [f for f in import_into(source, db).files if f.path.endswith("contacts_2.csv")]
    assert (f.status, f.problems[0].code) == ("rejected", "manifest_mismatch")
    assert contacts_in(db) == 20


@pytest.mark.sshd
def test_upload_and_upload_command_deliver_the_manifest_after_the_file(
    openssh: Endpoint, key_file: Path, tmp_path: Path, write_config: Callable[[str], Path]
) -> None:
    config = endpoint_config(openssh, key_file, write_config)
    config.write_text(config.read_text().replace("min_age = 0", 'min_age = 0\nmanifest = "{name}.manifest.json"'))
    outgoing = tmp_path / "outgoing"
    outgoing.mkdir()
    first = outgoing / "contacts_2026-11-24.csv"
    first.write_text(CONTACTS)

    status, out = run_cli("upload", str(first), "--config", str(config), "--manifest", "--json")
    assert status == 0, out
    [done] = json.loads(out)["files"]
    assert done["manifest_path"] == f"{openssh.inbox_remote}/{first.name}.manifest.json"
    written = json.loads((openssh.inbox_local / f"{first.name}.manifest.json").read_text())
    assert written == {"bytes": len(CONTACTS), "sha256": DIGEST}
    assert sorted(p.name for p in openssh.inbox_local.iterdir()) == [first.name, f"{first.name}.manifest.json"]

    # upload-command: the manifest is written beside the file now and uploaded after it.
    second = outgoing / "contacts_2026-11-25.csv"
    second.write_text(CONTACTS.replace("person", "other"))
    status, out = run_cli("upload-command", str(second), "--config", str(config), "--manifest", "--json")
    assert status == 0, out
    command = json.loads(out)
    remote = f"{openssh.inbox_remote}/{second.name}"
    assert command["manifest_file"] == f"{second}.manifest.json"
    assert command["batch"].splitlines()[1:] == [
        f'-rm "{remote}.manifest.json"',
        f'put "{second}" "{openssh.inbox_remote}/.{second.name}.part"',
        f'rename "{openssh.inbox_remote}/.{second.name}.part" "{remote}"',
        f'put "{second}.manifest.json" "{openssh.inbox_remote}/.{second.name}.manifest.json.part"',
        f'rename "{openssh.inbox_remote}/.{second.name}.manifest.json.part" "{remote}.manifest.json"',
    ]
    proc = subprocess.run(["bash", "-c", command["command"]], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert (openssh.inbox_local / f"{second.name}.manifest.json").read_bytes() == Path(
        command["manifest_file"]
    ).read_bytes()

    status, out = run_cli("import", "--config", str(config), "--json")
    assert status == 0, out
    assert [(Path(f["path"]).name, f["status"], f["imported"]) for f in json.loads(out)["files"]] == [
        (first.name, "imported", 20),
        (second.name, "imported", 20),
    ]

    # Without the file here, upload-command cannot make its manifest: a usage error.
    status, _ = run_cli("upload-command", str(outgoing / "missing.csv"), "--config", str(config), "--manifest")
    assert status == 2


@pytest.mark.sshd
def test_check_ignores_sidecars_and_the_archive_folder(openssh: Endpoint, key_file: Path) -> None:
    inbox = openssh.inbox_local
    openssh.put("contacts_1.csv", CONTACTS)
    openssh.put("contacts_1.csv.manifest.json", manifest(bytes=len(CONTACTS)))
    openssh.put("contacts_1.csv.done", "")
    (inbox / "results").mkdir()
    (inbox / "results" / "contacts_1.csv.result.json").write_text("{}")
    (inbox / "results" / "contacts_1.csv.rejects.csv").write_text("email\n")
    source = source_on(openssh, key_file, ready_marker="{name}.done", after_import="move:done")
    # Sidecars written after the data file are newer than it: none of them is a near miss.
    openssh.put("contacts_1.csv.result.json", "{}")
    data = inbox / "contacts_1.csv"
    os.utime(data, (data.stat().st_atime, data.stat().st_mtime - 600))
    steps = {s.name: s for s in source.check().steps}
    assert steps["files_present"].status == "pass", steps["files_present"].detail
    assert "1 file(s) match" in steps["files_present"].detail
    assert steps["complete"].status == "pass"

    # Imported and moved away: the archive is not "another folder the files went to".
    (inbox / "done").mkdir()
    for name in ("contacts_1.csv", "contacts_1.csv.manifest.json", "contacts_1.csv.done", "contacts_1.csv.result.json"):
        (inbox / name).rename(inbox / "done" / name)
    steps = {s.name: s for s in source.check(run_all=True).steps}
    assert steps["files_present"].status == "fail"
    assert "matching files are in" not in steps["files_present"].detail
    assert "nothing has been delivered" in (steps["files_present"].advice or "")
