"""``watch`` against real OpenSSH servers (SPEC 11): files imported as they arrive, a server that
goes away while another keeps serving, and SIGTERM in the middle of a file.

Nothing here is timed: every wait ends as soon as its condition holds, and fails only after a
generous deadline.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncssh
import pytest

from conftest import run_cli
from service_kit import (
    contacts_csv,
    deliver,
    imported_rows,
    install_hold_plugin,
    kill_sshd,
    sink_identities,
    wait_for,
)
from sshd import SSHD, run_sshd
from truagents_import import keys
from truagents_import.config import load_config
from truagents_import.service import Watcher
from truagents_import.service.watch import Watched

pytestmark = pytest.mark.sshd

SOURCE = """
[[sources]]
name = "{name}"
path = "{inbox}"
pattern = "*.csv"
min_age = 0
poll_every = "{every}"
{extra}
"""

ENDPOINT = """
[{table}]
host = "127.0.0.1"
port = {port}
username = "{user}"
private_key = "{key}"
host_key = "{fp}"
"""


def endpoint(table: str, server: SSHD, key: Path) -> str:
    return ENDPOINT.format(table=table, port=server.port, user=server.username, key=key, fp=server.host_key_fingerprint)


def write_config(folder: Path, *parts: str) -> Path:
    text = "".join(parts) + '\n[sink]\ntype = "sqlite"\npath = "contacts.db"\n\n[state]\npath = "state.db"\n'
    path = folder / "truagents-import.toml"
    path.write_text(text, encoding="utf-8")
    return path


class Records(logging.Handler):
    """Every record of the library, kept."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def records() -> Iterator[Records]:
    logger = logging.getLogger("truagents_import")
    handler, level = Records(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(level)


@pytest.fixture
def second_sshd(sshd_binary: str, tmp_path: Path, client_key: asyncssh.SSHKey) -> Iterator[SSHD]:
    with run_sshd(tmp_path / "sshd-b", [keys.authorized_keys_line(client_key)]) as server:
        yield server


def test_watch_imports_as_files_arrive_and_outlives_a_server_that_goes_away(
    tmp_path: Path, sshd: SSHD, second_sshd: SSHD, key_file: Path, records: Records
) -> None:
    inbox_a, inbox_b = tmp_path / "inbox-a", tmp_path / "inbox-b"
    inbox_a.mkdir()
    inbox_b.mkdir()
    config_path = write_config(
        tmp_path,
        endpoint("integration", sshd, key_file),
        endpoint("integrations.tenant-b", second_sshd, key_file),
        SOURCE.format(name="a", inbox=inbox_a, every="0.2s", extra=""),
        SOURCE.format(name="b", inbox=inbox_b, every="0.2s", extra='integration = "tenant-b"'),
    )
    config = load_config(config_path)
    sink, state = tmp_path / "contacts.db", tmp_path / "state.db"

    watcher = Watcher(config, max_backoff=1.0)
    assert [w.endpoint for w in watcher.plan] == ["integration", "tenant-b"]
    assert watcher.plan[1] == Watched(
        "b", "tenant-b", f"{second_sshd.username}@127.0.0.1:{second_sshd.port}{inbox_b}", 0.2
    )
    with watcher:
        deliver(inbox_a, "a1.csv", contacts_csv("a1", 3))
        deliver(inbox_b, "b1.csv", contacts_csv("b1", 2))
        wait_for(lambda: len(sink_identities(sink)) == 5, "a1 and b1 imported")

        # Tenant b's server goes away for good, sessions and all; tenant a's goes on serving.
        kill_sshd(second_sshd.pid)
        deliver(inbox_b, "b2.csv", contacts_csv("b2", 2))
        deliver(inbox_a, "a2.csv", contacts_csv("a2", 4))
        wait_for(
            lambda: any(getattr(r, "attempt", 0) >= 2 and getattr(r, "source", None) == "b" for r in records.records),
            "b retried twice",
        )
        wait_for(lambda: len(sink_identities(sink)) == 9, "a2 imported while b is down")
        deliver(inbox_a, "a3.csv", contacts_csv("a3", 1))
        wait_for(lambda: len(sink_identities(sink)) == 10, "a3 imported while b is down")
    summary = watcher.summary()

    assert [name for _, name, _ in imported_rows(state)] == ["a1.csv", "a2.csv", "a3.csv", "b1.csv"]
    assert summary["a"]["files"] == {"imported": 3} and summary["a"]["failing"] == 0
    assert summary["b"]["files"] == {"imported": 1} and summary["b"]["failing"] >= 2
    # The start-up line names what is watched; each retry and each file is one record with its fields.
    start = next(r for r in records.records if r.getMessage().startswith("watching 2 sources"))
    assert "a (" in start.getMessage() and f"127.0.0.1:{second_sshd.port}{inbox_b}" in start.getMessage()
    retries = [r for r in records.records if getattr(r, "attempt", None) and r.levelno == logging.WARNING]
    assert {r.source for r in retries} == {"b"}  # type: ignore[attr-defined]
    assert all(r.endpoint == "tenant-b" and r.retry_in_s <= 2.0 for r in retries)  # type: ignore[attr-defined]
    outcomes = [r for r in records.records if getattr(r, "status", None) == "imported"]
    assert sorted((r.source, r.file.rsplit("/", 1)[-1], r.rows) for r in outcomes) == [  # type: ignore[attr-defined]
        ("a", "a1.csv", 3),
        ("a", "a2.csv", 4),
        ("a", "a3.csv", 1),
        ("b", "b1.csv", 2),
    ]


def _watch_process(config: Path, plugin_dir: Path, hold_dir: Path, grace: float) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONPATH=str(plugin_dir), TRUAGENTS_TEST_HOLD_DIR=str(hold_dir))
    argv = [
        sys.executable,
        "-c",
        "from truagents_import.cli import run; run()",
        "--log-format",
        "json",
        "watch",
        "--config",
        str(config),
        "--interval",
        "0.2",
        "--grace",
        str(grace),
        "--json",
    ]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def _stop(proc: subprocess.Popen[str], *, signalled: bool = False) -> tuple[int, dict[str, Any], list[dict[str, Any]]]:
    """SIGTERM (unless sent already), then the exit status, the --json summary and the JSON log records."""
    if not signalled:
        proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    lines = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    return proc.returncode, json.loads(out), lines


def test_sigterm_mid_file_exits_0_and_the_next_import_finishes_the_job(
    tmp_path: Path, sshd: SSHD, key_file: Path
) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    config = write_config(
        tmp_path,
        endpoint("integration", sshd, key_file),
        SOURCE.format(name="crm", inbox=inbox, every="0.2s", extra=""),
    )
    plugins, hold = install_hold_plugin(tmp_path / "plugins"), tmp_path / "hold-dir"
    hold.mkdir()
    sink, state = tmp_path / "contacts.db", tmp_path / "state.db"
    expected: list[str] = []

    # 1. The file in progress finishes within the grace: imported, exit 0.
    proc = _watch_process(config, plugins, hold, grace=60)
    try:
        deliver(inbox, "first.csv", contacts_csv("first", 5))
        wait_for(lambda: len(sink_identities(sink)) == 5, "first.csv imported")
        (hold / "hold").touch()
        deliver(inbox, "slow1.csv", contacts_csv("slow-1", 7000))
        wait_for(lambda: any(hold.glob("holding-*")), "the watcher in the middle of slow1.csv")
        proc.send_signal(signal.SIGTERM)
        (hold / "hold").unlink()  # let the file go on: it has the whole grace to finish
        status, summary, logs = _stop(proc, signalled=True)
    finally:
        proc.kill() if proc.poll() is None else None
    assert status == 0
    assert summary["stopped_by"] == "SIGTERM" and summary["abandoned"] == []
    assert [n for _, n, _ in imported_rows(state)] == ["first.csv", "slow1.csv"]
    expected += [f"first-{i}@example.com" for i in range(5)] + [f"slow-1-{i}@example.com" for i in range(7000)]
    assert sink_identities(sink) == sorted(expected)
    assert any(r["message"].startswith("watching 1 source: crm") for r in logs)
    assert any(r.get("status") == "imported" and r.get("file", "").endswith("slow1.csv") for r in logs)

    # 2. It does not finish within the grace: abandoned uncommitted, exit 0, nothing in the sink.
    for marker in hold.glob("holding-*"):
        marker.unlink()
    (hold / "hold").touch()
    proc = _watch_process(config, plugins, hold, grace=0.5)
    try:
        deliver(inbox, "slow2.csv", contacts_csv("slow-2", 7000))
        wait_for(lambda: any(hold.glob("holding-*")), "the watcher in the middle of slow2.csv")
        status, summary, logs = _stop(proc)
    finally:
        proc.kill() if proc.poll() is None else None
        (hold / "hold").unlink()
    assert status == 0
    assert summary["abandoned"] == [{"source": "crm", "file": str(inbox / "slow2.csv")}]
    assert any(r.get("status") == "abandoned" for r in logs)
    assert [n for _, n, _ in imported_rows(state)] == ["first.csv", "slow1.csv"]
    assert sink_identities(sink) == sorted(expected)

    # 3. The next run (no hold plugin here) finishes the job: nothing lost, nothing doubled.
    code, out = run_cli("import", "--config", str(config), "--json")
    assert code == 0
    assert [(f["path"].rsplit("/", 1)[-1], f["status"]) for f in json.loads(out)["files"]] == [
        ("first.csv", "skipped"),
        ("slow1.csv", "skipped"),
        ("slow2.csv", "imported"),
    ]
    expected += [f"slow-2-{i}@example.com" for i in range(7000)]
    assert sink_identities(sink) == sorted(expected)
    assert [n for _, n, _ in imported_rows(state)] == ["first.csv", "slow1.csv", "slow2.csv"]


def test_a_source_uses_the_endpoint_it_names_everywhere(
    tmp_path: Path, sshd: SSHD, second_sshd: SSHD, key_file: Path
) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    config = write_config(
        tmp_path,
        endpoint("integration", sshd, key_file),
        endpoint("integrations.tenant-b", second_sshd, key_file),
        SOURCE.format(name="b", inbox=inbox, every="5s", extra='integration = "tenant-b"'),
    )
    kill_sshd(sshd.pid)  # [integration]'s server is gone: everything about b goes to tenant-b's
    local = tmp_path / "contacts_1.csv"
    local.write_text(contacts_csv("b", 2), encoding="utf-8")
    assert run_cli("upload", str(local), "--config", str(config))[0] == 0
    assert (inbox / "contacts_1.csv").read_text(encoding="utf-8") == contacts_csv("b", 2)
    code, out = run_cli("import", "--config", str(config), "--json")
    assert code == 0 and [f["status"] for f in json.loads(out)["files"]] == ["imported"]
    code, out = run_cli("trust", "--source", "b", "--config", str(config), "--json")
    assert code == 2 and "[integrations.tenant-b]" in json.loads(out)["error"]
