"""Failures an operator meets against a real OpenSSH drop box, each a clear error with the right exit status.

A chrooted SFTP-only account (``Match User`` + ``ChrootDirectory`` + ``ForceCommand internal-sftp``)
for an unprivileged user, as drop boxes are set up; a ChrootDirectory owned by that user (sshd
accepts the key, then refuses the session); a server without the SFTP subsystem; a folder the
user may not list; folders the user may not write. Every command is run as the console script,
so stderr is what a person sees: it never holds a traceback.
"""

from __future__ import annotations

import http.server
import json
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import asyncssh
import pytest

from sshd import SSHD, SFTPAccount, run_sshd, sftp_only_account
from truagents_import import ConnectError, DataSource, Importer, Integration, MemorySink, keys
from truagents_import.errors import RemotePermissionError

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="a chrooted account needs sshd running as root")

CONFIG = """
[integration]
host = "127.0.0.1"
port = {port}
username = "{user}"
private_key = "{key}"
host_key = "{fp}"

[[sources]]
name = "drop"
path = "{path}"
pattern = "contacts_*.csv"
min_age = 0

[sink]
type = "sqlite"
path = "out/contacts.db"

[state]
path = "state/state.db"
"""

GOOD_CSV = "Email,Name\nada@example.com,Ada Lovelace\n"


class Box:
    """A running sshd with a chrooted account, and a configuration for it."""

    def __init__(self, sshd: SSHD, account: SFTPAccount | None, user: str, key_file: Path, work: Path) -> None:
        self.sshd = sshd
        self.account = account
        self.user = user
        self.key_file = key_file
        self.work = work

    def config(self, path: str) -> Path:
        cfg = self.work / "truagents-import.toml"
        cfg.write_text(
            CONFIG.format(port=self.sshd.port, user=self.user, key=self.key_file, fp=self.sshd.host_key_fingerprint,
                          path=path),
            encoding="utf-8",
        )
        return cfg

    def integration(self) -> Integration:
        return Integration(host="127.0.0.1", port=self.sshd.port, username=self.user, private_key=self.key_file,
                           host_key=self.sshd.host_key_fingerprint)


def cli(cfg: Path, *args: str) -> tuple[int, str, str]:
    """Run the console script in the configuration's folder: exit status, stdout, stderr."""
    exe = Path(sys.executable).with_name("truagents-import")
    proc = subprocess.run([str(exe), *args, "--config", str(cfg)], capture_output=True, text=True, timeout=120,
                          check=False, cwd=cfg.parent)
    assert "Traceback" not in proc.stderr, proc.stderr
    assert "Task exception was never retrieved" not in proc.stderr, proc.stderr
    return proc.returncode, proc.stdout, proc.stderr


@pytest.fixture
def chrooted(sshd_binary: str, tmp_path: Path, client_key: asyncssh.SSHKey, key_file: Path) -> Iterator[Box]:
    """A drop box as operators set one up: user ``nobody`` jailed in a root-owned folder, SFTP only."""
    line = keys.authorized_keys_line(client_key)
    with sftp_only_account([line]) as account, run_sshd(tmp_path / "sshd", [line], extra_config=account.config) as sd:
        yield Box(sd, account, account.username, key_file, tmp_path)


@pytest.fixture
def session_refused(sshd_binary: str, tmp_path: Path, client_key: asyncssh.SSHKey, key_file: Path) -> Iterator[Box]:
    """The ChrootDirectory belongs to the user: sshd accepts the key, then refuses the SFTP session."""
    line = keys.authorized_keys_line(client_key)
    with sftp_only_account([line], chroot_owned_by_user=True) as account:
        account.folder("inbox")
        with run_sshd(tmp_path / "sshd", [line], extra_config=account.config) as server:
            yield Box(server, account, account.username, key_file, tmp_path)


@pytest.fixture
def no_sftp(sshd_binary: str, tmp_path: Path, client_key: asyncssh.SSHKey, key_file: Path) -> Iterator[Box]:
    """An sshd without the SFTP subsystem: the key is accepted, SFTP is not."""
    with run_sshd(tmp_path / "sshd", [keys.authorized_keys_line(client_key)], subsystem=False) as server:
        yield Box(server, None, server.username, key_file, tmp_path)


# -- the server accepts the key but refuses the SFTP session ---------------------------------------


@pytest.mark.parametrize("box", ["session_refused", "no_sftp"])
@pytest.mark.parametrize("command", [["ls"], ["import"], ["preview", "contacts_1.csv"]])
def test_a_refused_sftp_session_is_exit_3_with_what_to_do(
    request: pytest.FixtureRequest, box: str, command: list[str]
) -> None:
    b: Box = request.getfixturevalue(box)
    cfg = b.config("/inbox")
    status, out, err = cli(cfg, *command)
    assert status == 3
    assert out == "" if command[0] != "import" else True
    assert f"{b.user}@127.0.0.1:{b.sshd.port} accepted the key but refused the SFTP session" in err
    assert "enable SFTP" in err and "ChrootDirectory" in err

    status, out, err = cli(cfg, *command, "--json")
    assert status == 3
    doc = json.loads(out)
    assert doc["exit_status"] == 3
    assert "accepted the key but refused the SFTP session" in doc["error"]


def test_a_refused_sftp_session_raises_connect_error_from_the_importer(session_refused: Box) -> None:
    integration = session_refused.integration()
    source = DataSource(name="drop", path="/inbox", pattern="*.csv", min_age=0, integration=integration)
    with Importer(source, MemorySink(), entry_points=False) as importer, pytest.raises(ConnectError) as caught:
        importer.run()
    assert "refused the SFTP session" in str(caught.value)


@pytest.mark.parametrize("box", ["session_refused", "no_sftp"])
def test_check_says_the_sftp_session_was_refused(request: pytest.FixtureRequest, box: str) -> None:
    b: Box = request.getfixturevalue(box)
    status, out, _ = cli(b.config("/inbox"), "check", "--json")
    doc = json.loads(out)
    assert status == 1
    steps = {s["name"]: s for s in doc["steps"]}
    assert steps["auth"]["status"] == "pass"
    assert steps["folder"]["status"] == "fail"
    assert "refused the SFTP session" in steps["folder"]["detail"]
    assert "unexpected" not in json.dumps(doc)


# -- a folder the user may not list ----------------------------------------------------------------


def test_a_folder_the_user_may_not_list_is_named(chrooted: Box) -> None:
    assert chrooted.account is not None
    locked = chrooted.account.folder("locked", owned_by_user=False, mode=0o700)
    (locked / "contacts_1.csv").write_text(GOOD_CSV)
    cfg = chrooted.config("/locked")
    for command in (["ls"], ["import"]):
        status, out, err = cli(cfg, *command)
        assert status == 1
        assert "permission denied on the server: nobody may not list the folder /locked" in err
        assert "permission problem on the server" in err
        status, out, err = cli(cfg, *command, "--json")
        assert status == 1
        assert "may not list the folder /locked" in json.loads(out)["error"]


def test_check_advises_about_permissions_for_a_folder_it_cannot_list(chrooted: Box) -> None:
    assert chrooted.account is not None
    chrooted.account.folder("locked", owned_by_user=False, mode=0o700)
    status, out, _ = cli(chrooted.config("/locked"), "check", "--json")
    assert status == 1
    folder = next(s for s in json.loads(out)["steps"] if s["name"] == "folder")
    assert folder["status"] == "fail"
    assert "/locked" in folder["detail"]
    assert "nobody" in folder["advice"] and "list" in folder["advice"]
    assert "again" not in folder["advice"]


def test_the_library_raises_a_permission_error_naming_the_folder(chrooted: Box) -> None:
    assert chrooted.account is not None
    chrooted.account.folder("locked", owned_by_user=False, mode=0o700)
    source = DataSource(name="drop", path="/locked", min_age=0, integration=chrooted.integration())
    with pytest.raises(RemotePermissionError) as caught:
        source.list_files()
    source.integration.close()  # type: ignore[union-attr]
    assert caught.value.path == "/locked" and caught.value.operation == "list"
    assert isinstance(caught.value, PermissionError)


# -- uploads the server does not allow --------------------------------------------------------------


@pytest.mark.parametrize(("folder", "remote"), [("", "/"), ("ro", "/ro"), ("ro-new", "/ro/new")])
def test_upload_into_a_folder_the_user_may_not_write_names_the_remote_path(
    chrooted: Box, folder: str, remote: str
) -> None:
    assert chrooted.account is not None
    chrooted.account.folder("ro", owned_by_user=False, mode=0o755)
    if folder == "ro":
        chrooted.account.folder("ro", owned_by_user=True, mode=0o555)  # the user's, but read-only
    local = chrooted.work / "contacts_1.csv"
    local.write_text(GOOD_CSV)
    cfg = chrooted.config(remote)
    status, out, err = cli(cfg, "upload", str(local))
    assert status == 1
    assert "No such file" not in out + err
    assert "permission denied on the server" in out and "permission problem on the server" in out
    assert f"{remote.rstrip('/')}/" in out or f"create the folder {remote}" in out
    status, out, _ = cli(cfg, "upload", str(local), "--json")
    doc = json.loads(out)
    assert status == 1 and doc["failed"] == 1
    assert "permission problem on the server" in doc["files"][0]["error"]
    assert not any(p.name.startswith(".contacts") for p in chrooted.account.chroot.rglob("*"))


def test_upload_into_the_users_folder_works_in_the_chroot(chrooted: Box) -> None:
    assert chrooted.account is not None
    inbox = chrooted.account.folder("inbox")
    local = chrooted.work / "contacts_1.csv"
    local.write_text(GOOD_CSV)
    status, out, _ = cli(chrooted.config("/inbox"), "upload", str(local), "--json")
    assert status == 0, out
    assert json.loads(out)["files"][0]["remote_path"] == "/inbox/contacts_1.csv"
    assert (inbox / "contacts_1.csv").read_text() == GOOD_CSV
    status, out, _ = cli(chrooted.config("/inbox"), "import", "--json")
    assert status == 0
    assert json.loads(out)["totals"]["imported"] == 1


# -- a port where no SSH server answers -------------------------------------------------------------


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def http_port() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def test_an_http_port_fails_at_reachable_not_host_key(http_port: int, tmp_path: Path, key_file: Path) -> None:
    cfg = tmp_path / "truagents-import.toml"
    cfg.write_text(CONFIG.format(port=http_port, user="me", key=key_file, fp="SHA256:" + "A" * 43, path="/inbox"))
    status, out, _ = cli(cfg, "check", "--json")
    assert status == 1
    steps = {s["name"]: s for s in json.loads(out)["steps"]}
    assert steps["reachable"]["status"] == "fail"
    assert "not an SSH server" in steps["reachable"]["detail"]
    assert steps["host_key"]["status"] == "skip"
    status, out, err = cli(cfg, "ls")
    assert status == 3
    assert f"127.0.0.1:{http_port}" in err


# -- a connection cut mid-download -------------------------------------------------------------------

CUT_SCRIPT = """
import gc, sys
from pathlib import Path
from truagents_import import DataSource, Importer, Integration, MemorySink, keys
from truagents_import.remote.server import SFTPServer

work = Path(sys.argv[1])
(work / "root" / "inbox").mkdir(parents=True)
rows = "".join(f"a{i}@example.com,Name {i}\\n" for i in range(100_000))
(work / "root" / "inbox" / "contacts_1.csv").write_text("Email,Name\\n" + rows)
key = keys.generate_key_pair("cut")
pair = keys.write_key_pair(key, work / "keys", "id")
with SFTPServer(work / "root", [keys.public_line(key)], username="me") as server:
    server.drop_after_bytes = 500_000
    integration = Integration(host=server.host, port=server.port, username="me", private_key=pair.private_key,
                              host_key=server.host_key_fingerprint)
    source = DataSource(name="cut", path="/inbox", min_age=0, integration=integration)
    with Importer(source, MemorySink(), entry_points=False) as importer:
        report = importer.run()
print(report.files[0].status)
gc.collect()
"""


def test_a_connection_cut_mid_download_prints_no_asyncio_traceback(tmp_path: Path) -> None:
    for attempt in range(3):  # the cut lands at a different read each time
        work = tmp_path / str(attempt)
        work.mkdir()
        done = subprocess.run([sys.executable, "-c", CUT_SCRIPT, str(work)], capture_output=True, text=True,
                              timeout=120, check=False)
        assert done.returncode == 0, done.stderr
        assert done.stdout.split() == ["failed"]
        assert "Task exception was never retrieved" not in done.stderr
        assert "Traceback" not in done.stderr


def test_other_unretrieved_task_exceptions_are_still_reported() -> None:
    import asyncio

    from truagents_import.remote.sftp import quiet_lost_reads

    seen: list[dict[str, object]] = []
    loop = asyncio.new_event_loop()
    try:
        loop.set_exception_handler(lambda _loop, context: seen.append(context))
        quiet_lost_reads(loop)
        quiet_lost_reads(loop)  # once is enough: not wrapped twice

        async def other() -> None:
            raise asyncssh.ConnectionLost("gone")

        task = loop.create_task(other())
        loop.run_until_complete(asyncio.wait([task]))
        loop.call_exception_handler({"message": "Task exception was never retrieved",
                                     "exception": task.exception(), "future": task})
    finally:
        loop.close()
    assert len(seen) == 1
    assert isinstance(seen[0]["exception"], asyncssh.ConnectionLost)


# -- trust after the server's key changed -----------------------------------------------------------


def test_trust_updates_the_known_hosts_file_the_upload_command_uses(tmp_path: Path, key_file: Path,
                                                                  client_key: asyncssh.SSHKey) -> None:
    from truagents_import.remote.server import SFTPServer

    root = tmp_path / "root"
    (root / "inbox").mkdir(parents=True)
    old, new = keys.generate_key_pair("old"), keys.generate_key_pair("new")
    with SFTPServer(root, [keys.public_line(client_key)], host_key=old, username="me") as first:
        port = first.port
        cfg = tmp_path / "truagents-import.toml"
        cfg.write_text(CONFIG.format(port=port, user="me", key=key_file, fp=first.host_key_fingerprint, path="/inbox"))
        local = tmp_path / "contacts_1.csv"
        local.write_text(GOOD_CSV)
        status, out, _ = cli(cfg, "upload-command", str(local), "--json")
        assert status == 0
        known_hosts = Path(json.loads(out)["known_hosts_file"])
        argv = json.loads(out)["sftp_argv"]
        batch = json.loads(out)["batch"]
    with SFTPServer(root, [keys.public_line(client_key)], host_key=new, username="me", port=port) as second:
        stale = subprocess.run(argv, input=batch, capture_output=True, text=True, timeout=60, check=False)
        assert stale.returncode != 0  # the old key is refused, as it must be
        status, out, _ = cli(cfg, "trust", "--yes")
        assert status == 0
        assert f"updated {known_hosts}" in out
        assert second.known_hosts_line().split()[2] in known_hosts.read_text()
        done = subprocess.run(argv, input=batch, capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 0, done.stderr
    assert (root / "inbox" / "contacts_1.csv").read_text() == GOOD_CSV


# -- names escaped the same way everywhere ---------------------------------------------------------

LOCAL_CONFIG = """
[[sources]]
name = "drop"
path = "inbox"
pattern = "contacts_*.csv"
min_age = 0

[sink]
type = "sqlite"
path = "out/contacts.db"

[state]
path = "state/state.db"
"""

#: A right-to-left override, DEL, an escape character and a bidirectional isolate in one name.
HOSTILE = "contacts_\u202evsc\x7f\x1b[31m\u2066x.csv"
SHOWN = "contacts_\\u202evsc\\x7f\\x1b[31m\\u2066x.csv"


@pytest.mark.parametrize("command", [["ls"], ["import"], ["check"], ["preview", HOSTILE], ["import", "--dry-run"]])
def test_hostile_names_are_escaped_in_text_and_json(tmp_path: Path, command: list[str]) -> None:
    cfg = tmp_path / "truagents-import.toml"
    cfg.write_text(LOCAL_CONFIG)
    (tmp_path / "inbox").mkdir()
    (tmp_path / "inbox" / HOSTILE).write_text("Email,Name\nada@example.com,Ada\nnot-an-email,Bob\n")
    _, out, err = cli(cfg, *command)
    for raw in ("\u202e", "\x7f", "\x1b", "\u2066"):
        assert raw not in out + err
    assert SHOWN in out
    _, out, err = cli(cfg, *command, "--json")
    for raw in ("\u202e", "\x7f", "\x1b", "\u2066"):
        assert raw not in out + err
    # Names the document holds as values are exact (JSON escapes carry them); text in it is escaped.
    texts = list(_strings(json.loads(out)))
    assert any(HOSTILE in t for t in texts) or any(SHOWN in t for t in texts)


def _strings(value: object) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


# -- the report as people read it --------------------------------------------------------------------


def _local_drop(tmp_path: Path, pattern: str = "contacts_*.csv") -> Path:
    cfg = tmp_path / "truagents-import.toml"
    cfg.write_text(LOCAL_CONFIG.replace('pattern = "contacts_*.csv"', f"pattern = '{pattern}'"))
    (tmp_path / "inbox").mkdir()
    return cfg


def test_dry_run_text_says_would_import_counts_in_words_and_each_reason_once(tmp_path: Path) -> None:
    cfg = _local_drop(tmp_path)
    (tmp_path / "inbox" / "contacts_1.csv").write_text(
        "Email,Name\nada@example.com,Ada\nnot-an-email,Bob\nada@example.com,Ada again\n")
    (tmp_path / "inbox" / "contacts_2.csv").write_text("Name,Company\nAda Lovelace,Analytical\n")
    status, out, _ = cli(cfg, "import", "--dry-run")
    assert status == 1
    assert "  would import inbox/contacts_1.csv  rows 3, imported 1, rejected 1, duplicates 1" in out
    assert "  rejected   inbox/contacts_2.csv" in out
    assert out.count("no column maps to external_id, email or phone") == 1
    assert out.splitlines()[-1] == "total: 2 files, 4 rows, 1 imported, 2 rejected, 1 duplicate"
    status, out, _ = cli(cfg, "import", "--dry-run", "--file", "contacts_1.csv")
    assert out.splitlines()[-1] == "total: 1 file, 3 rows, 1 imported, 1 rejected, 1 duplicate"


def test_preview_of_a_rejected_header_shows_how_each_column_maps(tmp_path: Path) -> None:
    cfg = _local_drop(tmp_path)
    (tmp_path / "inbox" / "contacts_2.csv").write_text("Name,Company\nAda Lovelace,Analytical\n")
    status, out, _ = cli(cfg, "preview", "contacts_2.csv")
    assert status == 1
    assert re.search(r"^  Name +-> full_name$", out, re.MULTILINE)
    assert "'Name' is full_name" in out
    assert "-> ?" not in out
    _, out, _ = cli(cfg, "preview", "contacts_2.csv", "--json")
    assert json.loads(out)["mapping"]["Name"] == "full_name"


def test_ls_shows_times_with_their_zone_and_patterns_as_written(tmp_path: Path) -> None:
    cfg = _local_drop(tmp_path, pattern=r"re:contacts_\d+\.csv")
    (tmp_path / "inbox" / "contacts_7.csv").write_text(GOOD_CSV)
    status, out, _ = cli(cfg, "ls")
    assert status == 0
    assert re.search(r"^new +\d+  \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC  inbox/contacts_7\.csv$", out, re.MULTILINE)
    (tmp_path / "inbox" / "contacts_7.csv").rename(tmp_path / "inbox" / "Contacts_7.CSV")
    status, out, _ = cli(cfg, "ls")
    assert "no files matching 're:contacts_\\d+\\.csv' in inbox" in out
    assert "near miss: Contacts_7.CSV" in out
    assert "no file has arrived" not in out
