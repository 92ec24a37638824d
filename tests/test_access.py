"""Access setup against a real OpenSSH sshd: key pairs, host-key pinning, the upload command, upload.

Most tests drive the command line exactly as an operator would (``keygen`` -> sshd's
authorized_keys -> ``trust`` -> ``upload-command``/``upload`` -> ``import``) and run the printed
command with OpenSSH's own ``sftp`` client in ``bash -c``.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import shutil
import signal
import stat
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncssh
import pytest
from click.testing import CliRunner

from conftest import Endpoint
from sshd import SSHD, run_sshd
from truagents_import import ConnectError, HostKeyError, Integration, KeyFileError, keys
from truagents_import.cli import main
from truagents_import.errors import ConfigError, UploadNameError
from truagents_import.remote.pinning import set_host_key
from truagents_import.remote.server import SFTPServer
from truagents_import.remote.upload import check_upload_name

PASSPHRASE = "tr0ub4dor & 3 correct-horse"
PASSPHRASE_VAR = "TRUAGENTS_TEST_KEY_PASSPHRASE"

CONFIG = """\
# Access tests. This comment, and the ones below, must survive `trust`.
[integration]
host = "127.0.0.1"
port = {port}   # the test sshd
username = "{user}"
private_key = '{key}'
{extra}
# -- where the files go
[[sources]]
name = "crm-drop"
path = "{inbox}"
pattern = "contacts_*.csv"
default_region = "US"
min_age = 0

[sink]
type = "sqlite"
path = "out/contacts.db"

[state]
path = "state/state.db"
"""


# -- helpers -----------------------------------------------------------------------------------


@dataclass
class Run:
    status: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


class Cli:
    """Runs ``truagents-import`` in-process and keeps a transcript of everything it printed."""

    def __init__(self) -> None:
        self.transcript: list[str] = []

    def __call__(self, *args: str, input: str | None = None) -> Run:
        result = CliRunner().invoke(main, list(args), input=input, catch_exceptions=False)
        self.transcript += [" ".join(args), result.stdout, result.stderr]
        return Run(result.exit_code, result.stdout, result.stderr)

    def record(self, *texts: str) -> None:
        self.transcript.extend(texts)


@pytest.fixture
def cli() -> Cli:
    return Cli()


def sh(command: str, cwd: Path, cli: Cli | None = None) -> subprocess.CompletedProcess[str]:
    """Run a printed command unmodified in bash."""
    proc = subprocess.run(["bash", "-c", command], cwd=cwd, capture_output=True, text=True, timeout=120,
                          check=False)
    if cli is not None:
        cli.record(proc.stdout, proc.stderr)
    return proc


@dataclass
class Delivery:
    """A key made by `keygen`, an sshd that authorizes its line, and a configuration for both."""

    root: Path
    config: Path
    key: Path
    keygen: dict[str, Any]
    sshd: SSHD
    inbox: Path

    def integration(self, **kw: Any) -> Integration:
        options: dict[str, Any] = {"host": self.sshd.host, "port": self.sshd.port, "username": self.sshd.username,
                                   "private_key": self.key} | kw
        return Integration(**options)


@pytest.fixture
def deliver(tmp_path: Path, sshd_binary: str, cli: Cli) -> Iterator[Callable[..., Delivery]]:
    """Make the operator's setup: keygen, sshd with the printed authorized_keys line, config, trust."""
    with ExitStack() as stack:

        def make(*, passphrase: bool = False, pin: bool = True, key_dir: str = "keys", inbox: str = "inbox",
                 extra: str = "") -> Delivery:
            args = ["keygen", "--dir", str(tmp_path / key_dir), "--name", "upstream_ed25519", "--json"]
            if passphrase:
                args += ["--passphrase-env", PASSPHRASE_VAR]
                extra += f'\npassphrase_env = "{PASSPHRASE_VAR}"'
            made = cli(*args)
            assert made.status == 0, made.stderr
            info = made.json()
            server = stack.enter_context(run_sshd(tmp_path / "sshd", [info["authorized_keys_line"]]))
            folder = tmp_path / inbox
            folder.mkdir()
            config = tmp_path / "truagents-import.toml"
            config.write_text(CONFIG.format(port=server.port, user=server.username, inbox=folder,
                                            key=f"{key_dir}/upstream_ed25519", extra=extra), encoding="utf-8")
            if pin:
                trusted = cli("trust", "--config", str(config), "--yes", "--json")
                assert trusted.status == 0, trusted.stdout + trusted.stderr
            return Delivery(tmp_path, config, Path(info["private_key"]), info, server, folder)

        yield make


def change_host_key(server: SSHD) -> str:
    """Give the running sshd a new host key (same port) and wait until it presents it."""
    new = keys.generate_key_pair("replacement-host-key")
    work = server.log.parent
    staged = work / "ssh_host_ed25519_key.new"
    fd = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(new.export_private_key("openssh"))
    os.replace(staged, work / "ssh_host_ed25519_key")
    os.kill(server.pid, signal.SIGHUP)  # our own daemon: it re-executes itself and rereads its keys
    wanted = keys.fingerprint(new)
    probe = Integration(host=server.host, port=server.port, username=server.username, private_key=Path("unused"))
    deadline = time.monotonic() + 30
    while True:
        try:
            if probe.presented_host_key() == wanted:
                return wanted
        except ConnectError:
            pass  # restarting
        if time.monotonic() > deadline:
            pytest.fail(f"sshd did not start presenting the new host key; log:\n{server.log.read_text()}")
        time.sleep(0.1)


def contacts(n: int = 3) -> str:
    return "email,phone\n" + "".join(f"person{i}@example.com,(212) 555-01{i:02d}\n" for i in range(n))


# -- keygen ------------------------------------------------------------------------------------


def test_keygen_writes_a_private_pair_and_prints_every_part(tmp_path: Path, cli: Cli) -> None:
    folder = tmp_path / "new" / "keys"
    run = cli("keygen", "--dir", str(folder), "--name", "acme", "--from", "192.0.2.0/24,2001:db8::/32", "--json")
    assert run.status == 0, run.stderr
    info = run.json()
    private, public = Path(info["private_key"]), Path(info["public_key"])
    assert (private, public) == (folder / "acme", folder / "acme.pub")
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert public.read_text() == info["public_line"] + "\n"
    assert info["public_line"].startswith("ssh-ed25519 AAAA") and info["public_line"].endswith(" truagents-import")
    assert info["authorized_keys_line"] == (
        f'restrict,from="192.0.2.0/24,2001:db8::/32",command="internal-sftp" {info["public_line"]}'
    )
    assert info["passphrase_protected"] is False
    key = keys.load_private_key(private)
    assert info["fingerprint"] == keys.fingerprint(key)
    if shutil.which("ssh-keygen"):
        listed = subprocess.run(["ssh-keygen", "-lf", str(public)], capture_output=True, text=True, check=True)
        assert listed.stdout.split()[1] == info["fingerprint"]

    human = cli("keygen", "--dir", str(folder), "--name", "second")
    assert human.status == 0
    for part in ("SHA256:", "ssh-ed25519 AAAA", 'restrict,command="internal-sftp" ssh-ed25519', "private_key = "):
        assert part in human.stdout


def test_keygen_refusals(tmp_path: Path, cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "keys"
    assert cli("keygen", "--dir", str(folder), "--name", "k").status == 0
    again = cli("keygen", "--dir", str(folder), "--name", "k", "--json")
    assert again.status == 2 and "already exists" in again.json()["error"]

    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    shared.chmod(0o755)
    open_dir = cli("keygen", "--dir", str(shared), "--json")
    assert open_dir.status == 2 and f"chmod 700 {shared}" in open_dir.json()["error"]
    assert list(shared.iterdir()) == [] and stat.S_IMODE(shared.stat().st_mode) == 0o755

    monkeypatch.delenv(PASSPHRASE_VAR, raising=False)
    unset = cli("keygen", "--dir", str(folder), "--name", "p", "--passphrase-env", PASSPHRASE_VAR, "--json")
    assert unset.status == 2 and PASSPHRASE_VAR in unset.json()["error"]
    assert not (folder / "p").exists()

    both = cli("keygen", "--dir", str(folder), "--passphrase-env", PASSPHRASE_VAR, "--passphrase-prompt")
    assert both.status == 2
    bad_from = cli("keygen", "--dir", str(folder), "--name", "f", "--from", '10.0.0.1" ,command="sh')
    assert bad_from.status == 2 and not (folder / "f").exists()
    # There is no way to give a passphrase as an argument.
    assert "--passphrase " not in cli("keygen", "--help").stdout


def test_keygen_prompted_passphrase(tmp_path: Path, cli: Cli) -> None:
    run = cli("keygen", "--dir", str(tmp_path / "k"), "--passphrase-prompt", "--json",
              input=f"{PASSPHRASE}\n{PASSPHRASE}\n")
    assert run.status == 0, run.stderr
    info = run.json()
    assert info["passphrase_protected"] is True
    assert PASSPHRASE not in run.stdout + run.stderr
    with pytest.raises(KeyFileError, match="protected by a passphrase"):
        keys.load_private_key(Path(info["private_key"]))
    assert keys.fingerprint(keys.load_private_key(Path(info["private_key"]), PASSPHRASE)) == info["fingerprint"]


@pytest.mark.sshd
def test_authorized_keys_line_allows_sftp_and_refuses_a_shell(deliver: Callable[..., Delivery]) -> None:
    d = deliver()
    key = keys.load_private_key(d.key)
    (d.inbox / "hello.txt").write_text("hi there\n")

    async def session() -> tuple[list[str], asyncssh.SSHCompletedProcess]:
        async with asyncssh.connect(d.sshd.host, d.sshd.port, username=d.sshd.username, client_keys=[key],
                                    agent_path=None, config=None, connect_timeout=15,
                                    known_hosts=asyncssh.import_known_hosts(d.sshd.known_hosts_line)) as conn:
            async with conn.start_sftp_client() as sftp:
                names = await sftp.listdir(str(d.inbox))
            shell = await conn.run("echo hi", input="", timeout=30)
            return names, shell

    names, shell = asyncio.run(session())
    assert "hello.txt" in names
    # command="internal-sftp": whatever command the client asks for, it gets the SFTP service.
    assert shell.exit_status != 0
    assert "hi" not in str(shell.stdout).split()


@pytest.mark.sshd
def test_from_option_limits_where_the_key_connects_from(tmp_path: Path, sshd_binary: str, cli: Cli) -> None:
    info = cli("keygen", "--dir", str(tmp_path / "keys"), "--from", "192.0.2.7", "--json").json()
    with run_sshd(tmp_path / "sshd", [info["authorized_keys_line"]]) as server:
        integ = Integration(host=server.host, port=server.port, username=server.username,
                            private_key=Path(info["private_key"]), host_key=server.host_key_fingerprint)
        with pytest.raises(ConnectError, match="refused the key"), integ:
            integ.fs.ls("/", detail=False)


# -- the upload command ------------------------------------------------------------------------


@pytest.mark.sshd
def test_upload_command_runs_in_a_shell_is_atomic_and_the_file_imports(
    deliver: Callable[..., Delivery], cli: Cli, tmp_path: Path
) -> None:
    d = deliver()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()

    # A big file first, watched while it uploads: its final name only ever holds the whole file.
    big = tmp_path / "outgoing" / "bulk_2026-11-24.bin"
    big.parent.mkdir()
    payload = os.urandom(1 << 20) * 32
    big.write_bytes(payload)
    command = cli("upload-command", str(big), "--config", str(d.config), "--json").json()
    assert command["remote_path"] == f"{d.inbox}/bulk_2026-11-24.bin"
    assert command["temporary_path"] == f"{d.inbox}/.bulk_2026-11-24.bin.part"
    known_hosts = Path(command["known_hosts_file"])
    assert known_hosts == d.key.parent / "known_hosts"
    assert known_hosts.read_text() == d.sshd.known_hosts_line + "\n"
    for option in ("-P", str(d.sshd.port), "IdentitiesOnly=yes", "BatchMode=yes", "StrictHostKeyChecking=yes",
                   f"UserKnownHostsFile={known_hosts}"):
        assert option in command["sftp_argv"]
    assert command["batch"].splitlines() == [
        f'-mkdir "{d.inbox}"',
        f'put "{big}" "{d.inbox}/.bulk_2026-11-24.bin.part"',
        f'rename "{d.inbox}/.bulk_2026-11-24.bin.part" "{d.inbox}/bulk_2026-11-24.bin"',
    ]

    final, part = d.inbox / big.name, d.inbox / f".{big.name}.part"
    sizes: list[int] = []
    saw_part = threading.Event()
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            if part.exists():
                saw_part.set()
            with suppress(FileNotFoundError):
                sizes.append(final.stat().st_size)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        proc = sh(command["command"], elsewhere, cli)
    finally:
        done.set()
        watcher.join(30)
    assert proc.returncode == 0, proc.stderr + d.sshd.log.read_text()
    assert final.read_bytes() == payload and not part.exists()
    assert set(sizes) <= {len(payload)}, "the final name held an incomplete file"
    assert saw_part.is_set(), "the upload never used its temporary name"

    # Then a contacts file, delivered with the printed command, is imported.
    local = tmp_path / "outgoing" / "contacts_2026-11-24.csv"
    local.write_text(contacts(3))
    human = cli("upload-command", str(local), "--config", str(d.config))
    assert human.status == 0
    [line] = [ln for ln in human.stdout.splitlines() if not ln.startswith("#")]
    proc = sh(line, elsewhere, cli)  # the human output's one uncommented line is the command
    assert proc.returncode == 0, proc.stderr
    assert (d.inbox / local.name).read_text() == contacts(3)
    imported = cli("import", "--config", str(d.config), "--json")
    assert imported.status == 0, imported.stdout
    [f] = imported.json()["files"]
    assert (Path(f["path"]).name, f["status"], f["imported"]) == (local.name, "imported", 3)

    # Delivering again replaces the file in place (posix-rename), still without a partial state.
    local.write_text(contacts(4))
    assert sh(line, elsewhere, cli).returncode == 0
    assert (d.inbox / local.name).read_text() == contacts(4)
    assert sorted(p.name for p in d.inbox.iterdir()) == [big.name, local.name]


@pytest.mark.sshd
def test_upload_command_quotes_odd_names_and_paths(deliver: Callable[..., Delivery], cli: Cli,
                                                    tmp_path: Path) -> None:
    d = deliver(key_dir="my keys #1", inbox="in box 'q' #2")
    outgoing = tmp_path / "out $HOME `id` dir"
    outgoing.mkdir()
    name = """contacts_ it's "odd" $HOME *?[a] #1 %h ü -.csv"""
    local = outgoing / name
    local.write_text(contacts(1))
    # A name the unescaped glob would match: sftp must upload the file named, not this one.
    (outgoing / name.replace("*?[a]", "Xa")).write_text("a decoy\n")
    known_hosts = tmp_path / "known hosts %h #3" / "known_hosts"
    command = cli("upload-command", str(local), "--config", str(d.config), "--known-hosts", str(known_hosts),
                  "--json").json()
    assert command["known_hosts_file"] == str(known_hosts)
    proc = sh(command["command"], tmp_path, cli)
    assert proc.returncode == 0, proc.stderr
    assert [p.name for p in d.inbox.iterdir()] == [name]
    assert (d.inbox / name).read_text() == contacts(1)


@pytest.mark.sshd
def test_scp_alternative_runs(deliver: Callable[..., Delivery], cli: Cli, tmp_path: Path) -> None:
    d = deliver()
    local = tmp_path / "contacts_scp.csv"
    local.write_text(contacts(2))
    command = cli("upload-command", str(local), "--config", str(d.config), "--json").json()
    assert "cannot rename" in command["scp_note"]
    proc = sh(command["scp_command"], tmp_path, cli)
    assert proc.returncode == 0, proc.stderr
    assert (d.inbox / local.name).read_text() == contacts(2)


@pytest.mark.sshd
def test_upload_command_fails_once_the_host_key_changes(deliver: Callable[..., Delivery], cli: Cli,
                                                          tmp_path: Path) -> None:
    d = deliver()
    local = tmp_path / "contacts_1.csv"
    local.write_text(contacts(2))
    command = cli("upload-command", str(local), "--config", str(d.config), "--json").json()
    known_hosts = Path(command["known_hosts_file"])
    pinned_line = known_hosts.read_text()
    old = d.sshd.host_key_fingerprint
    new = change_host_key(d.sshd)

    proc = sh(command["command"], tmp_path, cli)
    assert proc.returncode != 0
    assert "Host key verification failed" in proc.stderr or "IDENTIFICATION HAS CHANGED" in proc.stderr
    assert list(d.inbox.iterdir()) == []

    # The library refuses too, with exit 3, naming what the server presented.
    for args in (["import"], ["ls"], ["upload", str(local)]):
        run = cli(*args, "--config", str(d.config), "--json")
        assert run.status == 3, (args, run.stdout)
        error = run.json()["error"]
        assert new in error and old in error and "truagents-import trust" in error
    assert list(d.inbox.iterdir()) == []
    # The command can still be printed offline from the known_hosts file, which stays as it was:
    # it is the command itself that refuses the changed key when run.
    again = cli("upload-command", str(local), "--config", str(d.config), "--json")
    assert again.status == 0 and again.json()["command"] == command["command"]
    assert known_hosts.read_text() == pinned_line

    # The operator looks, declines, then (after confirming with the server's owner) pins it.
    declined = cli("trust", "--config", str(d.config), input="n\n")
    assert declined.status == 1 and "WARNING" in declined.stdout and new in declined.stdout
    assert f'host_key = "{old}"' in d.config.read_text()
    pinned = cli("trust", "--config", str(d.config), "--json", input="y\n")
    assert pinned.status == 0
    assert pinned.json() | {"config": None} == {
        "host": "127.0.0.1", "port": d.sshd.port, "presented": new, "key_type": "ssh-ed25519", "pinned": old,
        "status": "changed", "config": None, "pinned_now": True,
    }
    command = cli("upload-command", str(local), "--config", str(d.config), "--json").json()
    assert known_hosts.read_text().count(f"[127.0.0.1]:{d.sshd.port} ") == 1
    assert sh(command["command"], tmp_path, cli).returncode == 0
    assert (d.inbox / local.name).read_text() == contacts(2)


# -- host keys ---------------------------------------------------------------------------------


@pytest.mark.sshd
def test_trust_pins_the_presented_key_keeping_the_file(deliver: Callable[..., Delivery], cli: Cli) -> None:
    d = deliver(pin=False)
    before = d.config.read_text()
    unpinned = cli("ls", "--config", str(d.config), "--json")
    assert unpinned.status == 2 and "truagents-import trust" in unpinned.json()["error"]

    shown = cli("trust", "--config", str(d.config), input="\n")  # Enter: the default is no
    assert shown.status == 1
    assert d.sshd.host_key_fingerprint in shown.stdout and "ssh-keygen -lf" in shown.stdout
    assert d.config.read_text() == before

    pinned = cli("trust", "--config", str(d.config), "--yes", "--json")
    assert pinned.status == 0
    assert pinned.json()["status"] == "new" and pinned.json()["pinned_now"] is True
    after = d.config.read_text()
    added = [ln for ln in after.splitlines() if ln not in before.splitlines()]
    assert added == [f'host_key = "{d.sshd.host_key_fingerprint}"  # pinned with `truagents-import trust`']
    assert [ln for ln in before.splitlines() if ln not in after.splitlines()] == []
    assert cli("ls", "--config", str(d.config), "--json").status == 0

    again = cli("trust", "--config", str(d.config), "--json")
    assert again.status == 0 and again.json()["status"] == "unchanged"
    assert d.config.read_text() == after


def test_set_host_key_edits_only_that_line() -> None:
    fp = "SHA256:" + "Q" * 43
    text = '[integration]\r\nhost = "h"\r\n  host_key = "SHA256:old"   # rotated 2026\r\nport = 22\r\n[sink]\r\n'
    assert set_host_key(text, fp) == text.replace("SHA256:old", fp)
    tail = '[integration]\nhost = "h"\ntags = [\n  "a",\n]\n\n# sink next\n[sink]\ntype = "memory"'
    assert set_host_key(tail, fp) == tail.replace(
        ']\n\n# sink', f']\nhost_key = "{fp}"  # pinned with `truagents-import trust`\n\n# sink')
    at_end = '[integration]\nhost = "h"'
    assert set_host_key(at_end, fp).endswith(f'host = "h"\nhost_key = "{fp}"  # pinned with `truagents-import trust`\n')
    for unsafe in ('integration.host = "h"\n', '[integration]\n"host_key" = "x"\n', "[sink]\n", "not toml ["):
        with pytest.raises(ConfigError):
            set_host_key(unsafe, fp)
    with pytest.raises(ConfigError, match="not a SHA256"):
        set_host_key(at_end, 'SHA256:x"\nevil = "1')


@pytest.mark.sshd
def test_known_hosts_file_with_port_entry_and_unknown_host(deliver: Callable[..., Delivery], cli: Cli,
                                                           tmp_path: Path) -> None:
    d = deliver(pin=False, extra='known_hosts = "known_hosts"')
    known_hosts = tmp_path / "known_hosts"
    other = keys.known_hosts_line("127.0.0.1", d.sshd.port + 1, keys.generate_key_pair())
    known_hosts.write_text(other + "\n")
    unknown = cli("import", "--config", str(d.config), "--json")
    assert unknown.status == 3
    assert d.sshd.host_key_fingerprint in unknown.json()["error"]

    known_hosts.write_text(f"# ours\n{other}\n{d.sshd.known_hosts_line}\n")
    (d.inbox / "contacts_k.csv").write_text(contacts(1))
    listed = cli("ls", "--config", str(d.config), "--json")
    assert listed.status == 0 and [f["state"] for f in listed.json()["files"]] == ["new"]
    # The upload command names the configured known_hosts file and leaves it alone.
    local = tmp_path / "contacts_m.csv"
    local.write_text(contacts(2))
    command = cli("upload-command", str(local), "--config", str(d.config), "--json").json()
    assert command["known_hosts_file"] == str(known_hosts) and command["host_key"] is None
    assert sh(command["command"], tmp_path, cli).returncode == 0
    assert (d.inbox / local.name).exists()
    assert known_hosts.read_text() == f"# ours\n{other}\n{d.sshd.known_hosts_line}\n"


# -- loading keys ------------------------------------------------------------------------------


@pytest.mark.sshd
def test_world_readable_key_is_refused_with_the_fix(deliver: Callable[..., Delivery], cli: Cli,
                                                    tmp_path: Path) -> None:
    d = deliver()
    d.key.chmod(0o644)
    local = tmp_path / "contacts_w.csv"
    local.write_text(contacts(1))
    for args in (["ls"], ["import"], ["upload", str(local)]):
        run = cli(*args, "--config", str(d.config), "--json")
        assert run.status == 2, (args, run.stdout)
        error = run.json()["error"]
        assert f"chmod 600 {d.key}" in error and "0644" in error
    with pytest.raises(KeyFileError, match="chmod 600"):
        d.integration(host_key=d.sshd.host_key_fingerprint).connect()
    assert list(d.inbox.iterdir()) == []
    d.key.chmod(0o600)
    assert cli("upload", str(local), "--config", str(d.config)).status == 0


@pytest.mark.sshd
def test_passphrase_protected_key(deliver: Callable[..., Delivery], cli: Cli, tmp_path: Path,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PASSPHRASE_VAR, PASSPHRASE)
    d = deliver(passphrase=True)
    assert d.keygen["passphrase_protected"] is True
    with pytest.raises(asyncssh.KeyImportError):
        asyncssh.import_private_key(d.key.read_bytes())
    local = tmp_path / "contacts_p.csv"
    local.write_text(contacts(2))
    assert cli("upload", str(local), "--config", str(d.config)).status == 0
    imported = cli("import", "--config", str(d.config), "--json")
    assert imported.status == 0 and imported.json()["totals"]["imported"] == 2

    monkeypatch.delenv(PASSPHRASE_VAR)
    missing = cli("ls", "--config", str(d.config), "--json")
    assert missing.status == 2
    assert PASSPHRASE_VAR in missing.json()["error"] and "not set" in missing.json()["error"]

    monkeypatch.setenv(PASSPHRASE_VAR, "not the passphrase")
    wrong = cli("ls", "--config", str(d.config), "--json")
    assert wrong.status == 2 and "wrong passphrase" in wrong.json()["error"]


def test_key_loading_errors_say_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="does not exist; run `truagents-import keygen`"):
        keys.load_private_key(tmp_path / "missing")
    pair = keys.create_key_pair(tmp_path / "k", "id")
    public = pair.public_key
    public.chmod(0o600)
    with pytest.raises(KeyFileError, match="it is a public key"):
        keys.load_private_key(public)
    junk = tmp_path / "junk"
    junk.write_text("hello\n")
    junk.chmod(0o600)
    with pytest.raises(KeyFileError, match="not a private key in a format we can read"):
        keys.load_private_key(junk)
    group = tmp_path / "group"
    group.write_bytes(pair.private_key.read_bytes())
    group.chmod(0o640)
    with pytest.raises(KeyFileError, match=r"mode 0640.*chmod 600"):
        keys.load_private_key(group)


# -- upload from the library -------------------------------------------------------------------


def test_upload_reports_each_file(endpoint: Endpoint, key_file: Path, write_config: Callable[[str], Path],
                                  cli: Cli, tmp_path: Path) -> None:
    cfg = write_config(CONFIG.format(port=endpoint.port, user=endpoint.username, key=key_file,
                                     inbox=endpoint.inbox_remote, extra=f'host_key = "{endpoint.fingerprint}"'))
    out = tmp_path / "out"
    out.mkdir()
    good = out / "contacts_good.csv"
    good.write_text(contacts(2))
    hidden = out / ".contacts_hidden.csv"
    hidden.write_text(contacts(1))
    control = out / "contacts_\x1b[31mred.csv"
    control.write_text(contacts(1))
    run = cli("upload", str(good), str(out / "missing.csv"), str(hidden), str(control), "--config", str(cfg),
              "--json")
    assert run.status == 1
    report = run.json()
    assert (report["uploaded"], report["failed"]) == (1, 3)
    by_name = {Path(f["file"]).name: f for f in report["files"]}
    assert by_name["contacts_good.csv"]["status"] == "uploaded"
    assert by_name["contacts_good.csv"]["remote_path"] == f"{endpoint.inbox_remote}/contacts_good.csv"
    assert by_name["contacts_good.csv"]["size"] == len(contacts(2))
    assert "does not exist" in by_name["missing.csv"]["error"]
    assert "starts with '.'" in by_name[".contacts_hidden.csv"]["error"]
    assert "control characters" in by_name[control.name]["error"]
    assert sorted(p.name for p in endpoint.inbox_local.iterdir()) == ["contacts_good.csv"]

    human = cli("upload", str(control), "--config", str(cfg))
    assert human.status == 1 and "\x1b" not in human.stdout and "\\x1b" in human.stdout


def test_upload_names_are_checked() -> None:
    assert check_upload_name("contacts 2026.csv") == "contacts 2026.csv"
    for bad in ("", ".", "..", "a/b", "a\\b", ".x.csv", "x\n.csv", "x\x00.csv", "x\u2028.csv"):
        with pytest.raises(UploadNameError):
            check_upload_name(bad)


def test_upload_command_needs_a_pinned_host_key(tmp_path: Path) -> None:
    integ = Integration(host="127.0.0.1", username="u", private_key=tmp_path / "k")
    with pytest.raises(ConfigError, match="truagents-import trust"):
        integ.upload_command(tmp_path / "contacts.csv", "/inbox")


def test_upload_command_without_the_network_when_known_hosts_already_pins(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:  # a closed port: nothing answers there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    host_key = keys.generate_key_pair()
    known_hosts = tmp_path / "known_hosts"
    line = keys.known_hosts_line("127.0.0.1", port, host_key)
    known_hosts.write_text(f"other.example.com ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA\n{line}\n")
    integ = Integration(host="127.0.0.1", port=port, username="acme", private_key=tmp_path / "k",
                        host_key=keys.fingerprint(host_key))
    command = integ.upload_command(tmp_path / "-contacts.csv", "in", known_hosts_file=known_hosts)
    assert command.batch.splitlines() == [
        '-mkdir "in"', f'put "{tmp_path}/-contacts.csv" "in/.-contacts.csv.part"',
        'rename "in/.-contacts.csv.part" "in/-contacts.csv"',
    ]
    assert command.sftp_argv[-1] == "acme@127.0.0.1"
    assert command.scp_argv[-1] == "acme@127.0.0.1:in/-contacts.csv"
    assert "printf '%s\\n' " in command.command and f"| sftp -b - -P {port} " in command.command
    # A different pin is checked against the server: unreachable here, so it fails to connect.
    integ.host_key = "SHA256:" + "A" * 43
    with pytest.raises(ConnectError):
        integ.upload_command(tmp_path / "contacts.csv", "in", known_hosts_file=known_hosts)


# -- secrets -----------------------------------------------------------------------------------


def _secret_forms(key_file: Path) -> list[str]:
    """The passphrase and every form of the private key that could leak: file text, lines, raw bytes."""
    key = keys.load_private_key(key_file, PASSPHRASE)
    forms = [PASSPHRASE]
    for data in (key_file.read_bytes(), bytes(key.export_private_key("openssh")),
                 bytes(key.export_private_key("pkcs8-pem"))):
        text = data.decode("ascii")
        forms.append(text)
        forms += [ln for ln in text.splitlines() if len(ln) >= 16 and "PRIVATE KEY" not in ln]
    raw = bytes(key.export_private_key("pkcs8-der"))[-32:]  # the ed25519 seed
    forms += [raw.hex(), base64.b64encode(raw).decode(), base64.b64encode(raw).decode().rstrip("=")]
    return forms


@pytest.mark.sshd
def test_no_passphrase_or_key_material_in_any_output(deliver: Callable[..., Delivery], cli: Cli,
                                                     tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    asyncssh.set_debug_level(2)
    monkeypatch.setenv(PASSPHRASE_VAR, PASSPHRASE)
    try:
        d = deliver(passphrase=True)  # keygen --passphrase-env, trust --yes
        cfg = str(d.config)
        local = tmp_path / "contacts_s.csv"
        local.write_text(contacts(2))
        runs = [
            cli("keygen", "--dir", str(tmp_path / "keys"), "--name", "prompted", "--passphrase-prompt",
                input=f"{PASSPHRASE}\n{PASSPHRASE}\n"),
            cli("keygen", "--dir", str(tmp_path / "keys"), "--name", "env", "--passphrase-env", PASSPHRASE_VAR),
            cli("trust", "--config", cfg),
            cli("upload-command", str(local), "--config", cfg),
            cli("upload-command", str(local), "--config", cfg, "--json"),
            cli("upload", str(local), "--config", cfg),
            cli("upload", str(local), "--config", cfg, "--json"),
            cli("ls", "--config", cfg),
            cli("import", "--config", cfg, "--json"),
            cli("import", "--config", cfg),
        ]
        if "check" in main.commands:  # type: ignore[attr-defined]
            runs.append(cli("check", "--config", cfg, "--all", "--json"))
        monkeypatch.setenv(PASSPHRASE_VAR, PASSPHRASE + "x")  # wrong
        runs += [cli("ls", "--config", cfg), cli("upload", str(local), "--config", cfg, "--json")]
        monkeypatch.delenv(PASSPHRASE_VAR)  # missing
        runs += [cli("import", "--config", cfg), cli("ls", "--config", cfg, "--json")]
        monkeypatch.setenv(PASSPHRASE_VAR, PASSPHRASE)
        d.key.chmod(0o644)  # too open
        runs += [cli("upload", str(local), "--config", cfg)]
        d.key.chmod(0o600)
        current = change_host_key(d.sshd)  # changed host key
        runs += [cli("import", "--config", cfg, "--json"), cli("trust", "--config", cfg, "--yes")]
        assert [r.status for r in runs[:10]] == [0] * 10
        assert [r.status for r in runs[-7:]] == [2, 2, 2, 2, 2, 3, 0]

        good = d.integration(passphrase_env=PASSPHRASE_VAR, host_key=current)
        wrong_pin = d.integration(passphrase_env=PASSPHRASE_VAR, host_key="SHA256:" + "A" * 43)
        cli.record(repr(good), repr(good.upload_command(local, str(d.inbox))), good.authorized_keys_line())
        for attempt in (wrong_pin.connect, wrong_pin.verified_host_key):
            with pytest.raises(HostKeyError) as caught:
                attempt()
            cli.record(repr(caught.value), str(caught.value))
        monkeypatch.delenv(PASSPHRASE_VAR)
        with pytest.raises(KeyFileError) as missing:
            good.connect()
        cli.record(repr(missing.value), str(missing.value))
    finally:
        asyncssh.set_debug_level(1)
    everything = "\n".join([*cli.transcript, caplog.text])
    assert "SHA256:" in everything and "upload" in everything  # the scan has something to scan
    for secret in _secret_forms(d.key):
        assert secret not in everything
    for secret in _secret_forms(tmp_path / "keys" / "prompted"):
        assert secret not in everything


def test_upload_files_reconnects_once_after_the_connection_drops(sftp_server: SFTPServer, key_file: Path,
                                                                 tmp_path: Path) -> None:
    integ = Integration(host=sftp_server.host, port=sftp_server.port, username="u", private_key=key_file,
                        host_key=sftp_server.host_key_fingerprint)
    first, second = tmp_path / "contacts_1.csv", tmp_path / "contacts_2.csv"
    first.write_text(contacts(1))
    second.write_text(contacts(2))
    with integ:
        assert [r.status for r in integ.upload_files([first], "/inbox")] == ["uploaded"]
        assert sftp_server.drop_connections() == 1
        results = integ.upload_files([second], "/inbox")
    assert [(r.status, r.remote_path) for r in results] == [("uploaded", "/inbox/contacts_2.csv")]
    assert sorted(p.name for p in (sftp_server.root / "inbox").iterdir()) == ["contacts_1.csv", "contacts_2.csv"]


def test_write_known_hosts_from_a_known_hosts_configuration(sftp_server: SFTPServer, key_file: Path,
                                                           tmp_path: Path) -> None:
    configured = tmp_path / "configured_known_hosts"
    configured.write_text(sftp_server.known_hosts_line() + "\n")
    integ = Integration(host=sftp_server.host, port=sftp_server.port, username="u", private_key=key_file,
                        known_hosts=configured)
    written = tmp_path / "elsewhere" / "known_hosts"
    assert integ.write_known_hosts(written) == sftp_server.known_hosts_line()
    assert written.read_text() == sftp_server.known_hosts_line() + "\n"
    configured.write_text(keys.known_hosts_line(sftp_server.host, sftp_server.port, keys.generate_key_pair()) + "\n")
    with pytest.raises(HostKeyError) as caught:
        integ.write_known_hosts(tmp_path / "other")
    assert caught.value.presented == sftp_server.host_key_fingerprint
    assert not (tmp_path / "other").exists()
