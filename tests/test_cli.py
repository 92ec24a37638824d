"""The command line against configuration files and real servers: output, JSON and exit statuses."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import Endpoint, endpoint_config, run_cli
from truagents_import import (
    CheckReport,
    CheckStep,
    ConfigError,
    ConnectError,
    FileRejected,
    HostKeyError,
    ImportReport,
    KeyFileError,
    PluginError,
    TruagentsImportError,
    UploadNameError,
)
from truagents_import.cli import exit_status
from truagents_import.report import FileResult

_config = endpoint_config
run = run_cli


def test_import_json_report_and_ls(endpoint: Endpoint, key_file: Path, write_config: Callable[[str], Path]) -> None:
    cfg = _config(endpoint, key_file, write_config)
    endpoint.put("contacts_a.csv", "email,phone\na@example.com,(212) 555-0123\nnope,\n")
    status, out = run("ls", "--config", str(cfg), "--json")
    assert status == 0
    listing = json.loads(out)
    assert [(Path(f["path"]).name, f["state"]) for f in listing["files"]] == [("contacts_a.csv", "new")]

    status, out = run("import", "--config", str(cfg), "--json", "--rejects", str(cfg.parent / "rejects"))
    assert status == 0
    report = json.loads(out)
    assert report["source"] == "crm-drop" and report["dry_run"] is False
    [f] = report["files"]
    assert {k: f[k] for k in ("status", "rows", "imported", "rejected", "duplicates")} == {
        "status": "imported", "rows": 2, "imported": 1, "rejected": 1, "duplicates": 0,
    }
    assert f["problems"][0]["code"] == "invalid_email" and f["problems"][0]["row"] == 2
    assert report["totals"] == {"files": 1, "rows": 2, "imported": 1, "rejected": 1, "duplicates": 0}
    rejects = Path(f["rejects_file"])
    assert rejects.parent == cfg.parent / "rejects"
    assert rejects.read_text().splitlines() == ["email,phone,_row,_code,_column,_message",
                                                 "nope,,2,invalid_email,email,not a valid email address: "
                                                 "An email address must have an @-sign."]
    db = sqlite3.connect(cfg.parent / "out" / "contacts.db")
    assert db.execute("select identity, email, phone, source, source_row from contacts").fetchall() == [
        ("a@example.com", "a@example.com", "+12125550123", "crm-drop", 1)
    ]
    status, out = run("ls", "--config", str(cfg), "--json")
    assert [f["state"] for f in json.loads(out)["files"]] == ["imported"]
    status, out = run("import", "--config", str(cfg))
    assert status == 0 and "skipped" in out


def test_rejected_file_exits_1(endpoint: Endpoint, key_file: Path, write_config: Callable[[str], Path]) -> None:
    cfg = _config(endpoint, key_file, write_config)
    endpoint.put("contacts_b.csv", "colour,size\nred,1\n")
    status, out = run("import", "--config", str(cfg), "--json")
    assert status == 1
    [f] = json.loads(out)["files"]
    assert f["status"] == "rejected"
    assert f["problems"][0]["code"] == "no_identity_column"
    assert (f["rows"], f["rejected"]) == (1, 1)
    assert "colour, size" in f["reason"]


def test_dry_run_writes_nothing(endpoint: Endpoint, key_file: Path, write_config: Callable[[str], Path]) -> None:
    cfg = _config(endpoint, key_file, write_config)
    endpoint.put("contacts_c.csv", "email\nc@example.com\n")
    status, out = run("import", "--config", str(cfg), "--json", "--dry-run")
    assert status == 0
    report = json.loads(out)
    assert report["dry_run"] is True and report["totals"]["imported"] == 1
    assert report["files"][0]["mapping"] == {"email": "email"}
    db = sqlite3.connect(cfg.parent / "out" / "contacts.db")
    assert db.execute("select count(*) from contacts").fetchone() == (0,)
    status, out = run("ls", "--config", str(cfg), "--json")
    assert [f["state"] for f in json.loads(out)["files"]] == ["new"]


def test_wrong_host_key_exits_3(endpoint: Endpoint, key_file: Path, write_config: Callable[[str], Path]) -> None:
    wrong = "SHA256:" + "B" * 43
    cfg = _config(endpoint, key_file, write_config, fp=wrong)
    endpoint.put("contacts_d.csv", "email\nd@example.com\n")
    status, out = run("import", "--config", str(cfg), "--json")
    assert status == 3
    error = json.loads(out)
    assert error["exit_status"] == 3
    assert endpoint.fingerprint in error["error"] and wrong in error["error"]
    db = sqlite3.connect(cfg.parent / "out" / "contacts.db")
    assert db.execute("select count(*) from contacts").fetchone() == (0,)


def test_unknown_key_and_bad_value_exit_2(tmp_path: Path, write_config: Callable[[str], Path]) -> None:
    cfg = write_config('[[sources]]\nname = "x"\npath = "/in"\nmin_age = "soon"\ncolour = 1\n')
    status, out = run("ls", "--config", str(cfg), "--json")
    assert status == 2
    message = json.loads(out)["error"]
    assert "sources[0]" in message and "colour" in message and "min_age" in message
    status, _ = run("ls", "--config", str(tmp_path / "missing.toml"))
    assert status == 2


def test_config_without_pinned_host_key_exits_2(key_file: Path, write_config: Callable[[str], Path]) -> None:
    cfg = write_config(f'[integration]\nhost = "127.0.0.1"\nusername = "u"\nprivate_key = "{key_file}"\n'
                       '[[sources]]\nname = "x"\npath = "/in"\n')
    status, out = run("ls", "--config", str(cfg), "--json")
    assert status == 2
    assert "truagents-import trust" in json.loads(out)["error"]


def test_closed_port_exits_3(key_file: Path, write_config: Callable[[str], Path]) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = write_config(f'[integration]\nhost = "127.0.0.1"\nport = {port}\nusername = "u"\n'
                       f'private_key = "{key_file}"\nhost_key = "SHA256:{"C" * 43}"\n'
                       '[[sources]]\nname = "x"\npath = "/in"\n')
    status, out = run("import", "--config", str(cfg), "--json")
    assert status == 3
    assert "cannot connect" in json.loads(out)["error"]


EXPECTED_DEMO = [
    # identity, external_id, email, phone, first, last, timezone, tags, unsubscribed, attributes, file, row
    ("C-1001", "C-1001", "ada.lovelace@example.com", "+12125550123", "Ada", "Lovelace", "Europe/London",
     ["vip", "newsletter"], 0, {"Plan": "gold"}, "contacts_2026-11-22.csv", 1),
    ("C-1002", "C-1002", "grace.hopper@example.org", "+14158675309", "Grace", "Hopper", "America/New_York",
     ["newsletter", "events"], 1, {"Plan": "platinum"}, "contacts_2026-11-22.csv", 5),
    ("C-1004", "C-1004", "katherine@example.net", "+442079460958", "Katherine", "Johnson", "America/Chicago",
     ["beta", "vip"], 0, {"Plan": "gold"}, "contacts_2026-11-22.csv", 4),
    ("barbara@example.com", None, "barbara@example.com", "+16172531000", "Barbara", "Liskov", "America/New_York",
     [], None, {"Company": "MIT\nCSAIL"}, "contacts_2026-11-23.csv", 4),
    ("jose@example.com", None, "jose@example.com", "+33142685300", "José", "Álvarez", "America/New_York",
     ["eu", "beta"], None, {"Company": "Ácme; Ltd"}, "contacts_2026-11-23.csv", 2),
    ("margaret@example.com", None, "margaret@example.com", "+16465550199", "Margaret Heafield", "Hamilton",
     "America/New_York", ["apollo"], None, {"Company": "MIT"}, "contacts_2026-11-23.csv", 1),
]


def test_demo_command_imports_exactly_the_samples(tmp_path: Path) -> None:
    exe = Path(sys.executable).with_name("truagents-import")
    proc = subprocess.run([str(exe), "demo", "--dir", str(tmp_path / "demo"), "--json"], capture_output=True,
                          text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    db = sqlite3.connect(out["database"])
    rows = db.execute(
        "select identity, external_id, email, phone, first_name, last_name, timezone, tags, unsubscribed,"
        " attributes, source_file, source_row from contacts order by identity"
    ).fetchall()
    got = [(*r[:7], json.loads(r[7]), r[8], json.loads(r[9]), Path(r[10]).name, r[11]) for r in rows]
    assert got == EXPECTED_DEMO
    totals = out["report"]["totals"]
    assert totals == {"files": 2, "rows": 10, "imported": 6, "rejected": 3, "duplicates": 1}


def test_demo_human_output_names_the_database(tmp_path: Path) -> None:
    status, out = run("demo", "--dir", str(tmp_path / "d"))
    assert status == 0
    assert str(tmp_path / "d" / "contacts.db") in out


@pytest.mark.parametrize("command", ["import", "ls", "demo", "serve", "plugins"])
def test_every_command_has_help(command: str) -> None:
    status, out = run(command, "--help")
    assert status == 0 and "--json" in out


def test_plugins_lists_builtins() -> None:
    status, out = run("plugins", "--json")
    data = json.loads(out)
    assert status == 0
    assert {"memory", "jsonl", "sqlite"} <= set(data["sinks"])
    names = {p["name"] for p in data["plugins"]}
    assert "truagents_import.fields.mapping.BuiltinAliases" in names


def test_usage_error_under_json_is_one_json_document(tmp_path: Path) -> None:
    exe = Path(sys.executable).with_name("truagents-import")
    proc = subprocess.run([str(exe), "import", "--bogus", "--json"], capture_output=True, text=True, timeout=60,
                          check=False, cwd=tmp_path)
    assert proc.returncode == 2
    assert json.loads(proc.stdout) == {"error": "No such option '--bogus'.", "exit_status": 2}


def test_demo_refuses_a_folder_that_holds_a_demo(tmp_path: Path) -> None:
    assert run("demo", "--dir", str(tmp_path / "d"), "--json")[0] == 0
    status, out = run("demo", "--dir", str(tmp_path / "d"), "--json")
    assert status == 2
    assert "already holds a demo; pass another --dir" in json.loads(out)["error"]


def _import_on_terminal(cfg: Path, *extra: str) -> tuple[int, bytes, str]:
    """Run ``import`` with stdout on a pseudo-terminal (as a person at a shell would): status, stdout, stderr."""
    import os
    import pty

    exe = Path(sys.executable).with_name("truagents-import")
    leader, follower = pty.openpty()
    try:
        with subprocess.Popen([str(exe), "import", "--config", str(cfg), *extra], stdout=follower,
                              stderr=subprocess.PIPE, cwd=cfg.parent) as proc:
            os.close(follower)
            out = b""
            while True:
                try:
                    data = os.read(leader, 65536)
                except OSError:  # the terminal closed: the command has exited
                    break
                if not data:
                    break
                out += data
            assert proc.stderr is not None
            err = proc.stderr.read().decode()
            return proc.wait(timeout=120), out, err
    finally:
        os.close(leader)


def test_progress_bar_only_on_a_terminal_without_json(
    endpoint: Endpoint, key_file: Path, write_config: Callable[[str], Path]
) -> None:
    rows = "".join(f"u{i}@example.com,(212) 555-{i % 10000:04d}\n" for i in range(12_000))
    endpoint.put("contacts_big.csv", "email,phone\n" + rows)
    cfg = _config(endpoint, key_file, write_config)

    status, out, err = _import_on_terminal(cfg, "--dry-run")
    assert status == 0, err
    # One self-rewriting line on stderr: bytes while downloading, then rows, then the total.
    assert "contacts_big.csv: downloading" in err
    assert "\rcontacts_big.csv: 12,000 rows done" in err
    assert b"contacts_big.csv" in out and b"12000" in out.replace(b",", b"")  # the report itself

    status, out, err = _import_on_terminal(cfg, "--dry-run", "--json")
    assert status == 0, err
    assert "rows" not in err and "downloading" not in err
    assert json.loads(out.decode())["totals"]["rows"] == 12_000

    exe = Path(sys.executable).with_name("truagents-import")
    proc = subprocess.run([str(exe), "import", "--config", str(cfg), "--dry-run"], capture_output=True, text=True,
                          timeout=120, cwd=cfg.parent, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "downloading" not in proc.stderr and "rows done" not in proc.stderr  # stdout is not a terminal


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (TruagentsImportError("x"), 1),
        (PluginError("x", plugin="p"), 1),
        (FileRejected("empty", "the file is empty"), 1),
        (ConfigError("x"), 2),
        (KeyFileError("x"), 2),
        (UploadNameError("x"), 2),
        (ConnectError("x"), 3),
        (HostKeyError("x", presented=None), 3),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, Exception) else str(v),
)
def test_exit_status_of_each_error(error: TruagentsImportError, status: int) -> None:
    assert exit_status(error) == status


def test_exit_status_of_reports() -> None:
    from datetime import UTC, datetime

    report = ImportReport(source="s", dry_run=False, started_at=datetime.now(UTC))
    assert exit_status(report) == 0
    report.files.append(FileResult(path="/in/a.csv", status="rejected"))
    assert exit_status(report) == 1
    assert exit_status(CheckReport(source="s", steps=[CheckStep("config", "pass", "ok")])) == 0
    assert exit_status(CheckReport(source="s", steps=[CheckStep("server", "fail", "down")])) == 1
    assert exit_status(CheckReport(source="s", steps=[CheckStep("config", "fail", "bad")])) == 2


_POOL_PROBE = """
import sys
sys.argv = ["truagents-import", "--version"]
from truagents_import.cli import run
try:
    run()
except SystemExit:
    pass
import pyarrow
print(pyarrow.default_memory_pool().backend_name)
"""


@pytest.mark.parametrize(
    ("environment", "backend"), [({}, "system"), ({"ARROW_DEFAULT_MEMORY_POOL": "mimalloc"}, "mimalloc")]
)
def test_the_command_chooses_arrows_allocator_unless_the_operator_did(
    environment: dict[str, str], backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The command (an application) gives Arrow the system's allocator, which returns freed memory;
    an allocator named in the environment wins. Importing the library alone changes nothing."""
    monkeypatch.delenv("ARROW_DEFAULT_MEMORY_POOL", raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    out = subprocess.run([sys.executable, "-c", _POOL_PROBE], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.split()[-1] == backend
    library_only = "import truagents_import, pyarrow; print(pyarrow.default_memory_pool().backend_name)"
    out = subprocess.run([sys.executable, "-c", library_only], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == environment.get("ARROW_DEFAULT_MEMORY_POOL", "mimalloc")
