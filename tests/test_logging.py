"""Log records (SPEC 11): the fields each one carries, escaped names, no secret anywhere, and the
command line's ``--log-level`` / ``--log-format`` handler on stderr.

The secret test runs ``watch`` against a real OpenSSH sshd with a passphrase-protected key whose
passphrase comes from the environment, and looks at every record of every logger (asyncssh's too).
"""

from __future__ import annotations

import hashlib
import json
import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from service_kit import contacts_csv, deliver, wait_for
from sshd import run_sshd
from truagents_import import hookimpl, keys
from truagents_import._log import FILE_FIELDS
from truagents_import.cli import main
from truagents_import.config import load_config
from truagents_import.service import JSONFormatter, TextFormatter, Watcher
from truagents_import.state import Claim, StateStore

PASSPHRASE = "correct horse battery staple 7Q!"
WRONG = "not the passphrase Zx9#"


class Everything(logging.Handler):
    """Every record of every logger, at every level."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def having(self, **fields: Any) -> list[logging.LogRecord]:
        return [r for r in self.records if all(getattr(r, k, None) == v for k, v in fields.items())]


@pytest.fixture
def everything() -> Iterator[Everything]:
    root, ours = logging.getLogger(), logging.getLogger("truagents_import")
    handler, levels = Everything(), (root.level, ours.level)
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    ours.setLevel(logging.DEBUG)
    yield handler
    root.removeHandler(handler)
    root.setLevel(levels[0])
    ours.setLevel(levels[1])


class Boom:
    """A plugin that fails on files whose first e-mail starts with ``boom``."""

    @hookimpl
    def validate_contacts(self, contacts: list[Any], source: Any) -> None:
        if contacts and (contacts[0].email or "").startswith("boom"):
            raise RuntimeError("the boom plugin went boom")


@pytest.mark.sshd
def test_records_carry_their_fields_escape_names_and_hold_no_secret(
    tmp_path: Path, sshd_binary: str, monkeypatch: pytest.MonkeyPatch, everything: Everything
) -> None:
    key = keys.generate_key_pair("logging-test")
    private = keys.write_key_pair(key, tmp_path / "keys", "id_ed25519", passphrase=PASSPHRASE).private_key
    monkeypatch.setenv("TRUAGENTS_TEST_PASSPHRASE", PASSPHRASE)
    monkeypatch.setenv("TRUAGENTS_TEST_WRONG", WRONG)
    secrets = [PASSPHRASE, WRONG, *_key_material(key, private)]
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    state_path = tmp_path / "state.db"

    with run_sshd(tmp_path / "sshd", [keys.authorized_keys_line(key)]) as server:
        endpoint = (
            f'host = "127.0.0.1"\nport = {server.port}\nusername = "{server.username}"\n'
            f'private_key = "{private}"\nhost_key = "{server.host_key_fingerprint}"\n'
        )
        config = tmp_path / "truagents-import.toml"
        config.write_text(
            f'[integration]\n{endpoint}passphrase_env = "TRUAGENTS_TEST_PASSPHRASE"\n\n'
            f'[integrations.locked]\n{endpoint}passphrase_env = "TRUAGENTS_TEST_WRONG"\n\n'
            f'[[sources]]\nname = "crm"\npath = "{inbox}"\npattern = "*.csv"\nmin_age = 0\n\n'
            f'[[sources]]\nname = "locked"\nintegration = "locked"\npath = "{inbox}"\nmin_age = 0\n\n'
            f'[sink]\ntype = "sqlite"\npath = "contacts.db"\n\n[state]\npath = "{state_path}"\n',
            encoding="utf-8",
        )
        held = contacts_csv("held", 2)
        held_sha = hashlib.sha256(held.encode()).hexdigest()
        other = StateStore(state_path)  # another importer, busy with held.csv's content right now
        claim = other.claim("crm", held_sha, str(inbox / "held.csv"))
        deliver(inbox, "good.csv", contacts_csv("good", 3))
        deliver(inbox, "bad.csv", "foo,bar\n1,2\n")
        deliver(inbox, "boom.csv", contacts_csv("boom", 2))
        deliver(inbox, "evil\x1b[31m.csv", contacts_csv("evil", 1))
        deliver(inbox, "held.csv", held)

        watcher = Watcher(load_config(config), interval=0.2, max_backoff=1.0, plugins=[Boom()])
        with watcher:
            wait_for(lambda: everything.having(status="claim_conflict"), "the claim conflict")
            assert isinstance(claim, Claim)
            other.release(claim)
            other.close()
            for name in ("good.csv", "held.csv", "evil\\x1b[31m.csv"):
                wait_for(lambda n=name: everything.having(status="imported", file=str(inbox / n)), f"{name} imported")
            wait_for(lambda: everything.having(status="rejected"), "bad.csv rejected")
            wait_for(lambda: everything.having(status="plugin_failed"), "the plugin failure")
            wait_for(lambda: everything.having(source="locked", error="KeyFileError"), "locked retried")

    # One record per file outcome, with every field; levels say how it went.
    good = everything.having(status="imported", file=str(inbox / "good.csv"))[0]
    assert {f: getattr(good, f) for f in FILE_FIELDS if f != "duration_s"} == {
        "source": "crm",
        "file": str(inbox / "good.csv"),
        "status": "imported",
        "rows": 3,
        "imported": 3,
        "rejected": 0,
        "duplicates": 0,
        "sha256": hashlib.sha256(contacts_csv("good", 3).encode()).hexdigest(),
    }
    assert isinstance(good.duration_s, float) and good.levelno == logging.INFO  # type: ignore[attr-defined]
    bad = everything.having(status="rejected")[0]
    assert (bad.levelno, bad.rows, bad.rejected) == (logging.WARNING, 1, 1)  # type: ignore[attr-defined]
    failed = everything.having(status="failed", file=str(inbox / "boom.csv"))[0]
    assert failed.levelno == logging.ERROR and all(hasattr(failed, f) for f in FILE_FIELDS)
    plugin = everything.having(status="plugin_failed")[0]
    assert (plugin.plugin, plugin.hook) == ("test_logging.Boom", "validate_contacts")  # type: ignore[attr-defined]
    conflict = everything.having(status="claim_conflict")[0]
    assert (conflict.source, conflict.sha256) == ("crm", held_sha)  # type: ignore[attr-defined]
    retry = everything.having(source="locked", error="KeyFileError")[0]
    assert retry.levelno == logging.WARNING and retry.attempt >= 1  # type: ignore[attr-defined]

    # A remote name is escaped in the fields and the message: no terminal escape reaches our records
    # (asyncssh's own DEBUG records show remote names raw: docs/service.md says so).
    shown = [JSONFormatter().format(r) + TextFormatter().format(r) for r in everything.records]
    ours = [text for r, text in zip(everything.records, shown, strict=True) if r.name.startswith("truagents_import")]
    assert not any("\x1b" in text for text in ours)
    assert any("evil\\x1b[31m.csv" in r.getMessage() for r in everything.records)

    # No passphrase, no byte of the key, in any record of any logger, however it is formatted.
    assert len(everything.records) > 20
    for text in shown:
        for secret in secrets:
            assert secret not in text


def _key_material(key: Any, private: Path) -> list[str]:
    """Pieces of the private key as they could leak: the file's lines and the raw key's base64."""
    lines = [line for line in private.read_text().splitlines() if line and not line.startswith("-----")]
    raw = bytes(key.export_private_key("openssh")).decode()  # unencrypted
    plain = [line for line in raw.splitlines() if line and not line.startswith("-----")]
    # The first line of either is the same format header for every key: the rest is key material.
    return [*lines[1:], *plain[1:], "".join(plain)[70:130]]


def _local_config(tmp_path: Path) -> Path:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    deliver(inbox, "contacts_1.csv", contacts_csv("one", 2))
    deliver(inbox, "contacts_2.csv", "email\nnot-an-email\n")
    config = tmp_path / "truagents-import.toml"
    config.write_text(
        f'[[sources]]\nname = "local"\npath = "{inbox}"\nmin_age = 0\n\n[sink]\ntype = "memory"\n\n'
        f'[state]\npath = "state.db"\n',
        encoding="utf-8",
    )
    return config


def test_log_format_json_keeps_stdout_one_document(tmp_path: Path) -> None:
    config = _local_config(tmp_path)
    result = CliRunner().invoke(main, ["--log-format", "json", "import", "--config", str(config), "--json"])
    assert result.exit_code == 0  # contacts_2.csv is imported, its only row rejected
    report = json.loads(result.stdout)  # one document, nothing else on stdout
    assert [f["status"] for f in report["files"]] == ["imported", "imported"]
    lines = [json.loads(line) for line in result.stderr.splitlines()]
    outcomes = {line["file"].rsplit("/", 1)[-1]: line for line in lines if line.get("status") == "imported"}
    assert set(outcomes) == {"contacts_1.csv", "contacts_2.csv"}
    first = outcomes["contacts_1.csv"]
    assert (first["level"], first["logger"], first["source"], first["rows"]) == (
        "INFO",
        "truagents_import.pipeline.importer",
        "local",
        2,
    )
    assert set(FILE_FIELDS) <= set(first) and first["time"].endswith("+00:00")
    remaining = logging.getLogger("truagents_import").handlers
    assert all(type(h) is logging.NullHandler for h in remaining)  # the command's handler went with it


def test_log_level_on_the_command_and_nothing_by_default(tmp_path: Path) -> None:
    config = _local_config(tmp_path)
    quiet = CliRunner().invoke(main, ["import", "--config", str(config)])
    assert quiet.stderr == ""
    again = CliRunner().invoke(main, ["import", "--config", str(config), "--log-level", "debug"])
    assert again.exit_code == 0
    lines = again.stderr.splitlines()
    assert lines and all(" DEBUG " in line for line in lines)  # already imported: listed, not worked on
    assert any("local: skipped" in line and "contacts_1.csv" in line for line in lines)


def test_json_formatter_keeps_extra_fields_and_the_traceback() -> None:
    try:
        raise ValueError("bad value")
    except ValueError:
        record = logging.LogRecord("truagents_import.x", logging.ERROR, __file__, 1, "%s failed", ("crm",), None)
        record.exc_info = sys.exc_info()
    record.source, record.rows = "crm", 3
    doc = json.loads(JSONFormatter().format(record))
    assert (doc["message"], doc["level"], doc["source"], doc["rows"]) == ("crm failed", "ERROR", "crm", 3)
    assert "ValueError: bad value" in doc["exception"]


def test_the_library_adds_only_a_null_handler() -> None:
    """Without an application's logging set up, the library's records go nowhere (not to stderr)."""
    import subprocess
    import sys

    code = (
        "import logging, truagents_import\n"
        "logging.getLogger('truagents_import.pipeline.importer').warning('not shown')\n"
        "print([type(h).__name__ for h in logging.getLogger('truagents_import').handlers])\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert run.stdout.strip() == "['NullHandler']" and run.stderr == ""


def test_a_dropped_download_is_retried_with_a_record(
    sftp_server: Any, key_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """SPEC 11: one record per retry; the file's name escaped, no secret."""
    import getpass

    from truagents_import import DataSource, Importer, Integration, MemorySink

    inbox = sftp_server.root / "inbox"
    inbox.mkdir()
    (inbox / "big\u202e.csv").write_text(
        "email,note\n" + "".join(f"u{i}@example.com,{'x' * 100}\n" for i in range(20_000)), encoding="utf-8"
    )
    integration = Integration(host=sftp_server.host, port=sftp_server.port, username=getpass.getuser(),
                              private_key=key_file, host_key=sftp_server.host_key_fingerprint)  # fmt: skip
    source = DataSource(name="drops", path="/inbox", min_age=0, integration=integration)
    sftp_server.drop_after_bytes = 500_000  # every connection drops: the retry fails too
    with caplog.at_level(logging.WARNING, logger="truagents_import"), Importer(source, MemorySink()) as importer:
        [result] = importer.run().files
    assert result.status == "failed"
    [retry] = [r for r in caplog.records if getattr(r, "retry", None) == 1]
    assert retry.name == "truagents_import.pipeline.fetch" and retry.source == "drops"  # type: ignore[attr-defined]
    assert retry.file == "/inbox/big\\u202e.csv" and "\u202e" not in retry.getMessage()  # type: ignore[attr-defined]
