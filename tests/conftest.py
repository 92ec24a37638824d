"""Fixtures: keys, the embedded SFTP server, a real OpenSSH sshd, configurations."""

from __future__ import annotations

import getpass
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import asyncssh
import pytest

from sshd import SSHD, find_sshd, run_sshd
from truagents_import import DataSource, Integration, keys
from truagents_import.remote.server import SFTPServer

IN_CI = os.environ.get("CI") == "true"


def pytest_configure(config: pytest.Config) -> None:
    # Tests never talk to a developer's agent or use their ssh config.
    os.environ.pop("SSH_AUTH_SOCK", None)


@pytest.fixture(scope="session")
def client_key() -> asyncssh.SSHKey:
    return keys.generate_key_pair("tests")


@pytest.fixture
def key_file(tmp_path: Path, client_key: asyncssh.SSHKey) -> Path:
    return keys.write_key_pair(client_key, tmp_path / "keys", "id_ed25519").private_key


@pytest.fixture
def sftp_server(tmp_path: Path, client_key: asyncssh.SSHKey) -> Iterator[SFTPServer]:
    root = tmp_path / "server"
    root.mkdir()
    with SFTPServer(root, [keys.public_line(client_key)]) as server:
        yield server


@pytest.fixture(scope="session")
def sshd_binary() -> str:
    path = find_sshd()
    if path is None:
        if IN_CI:
            pytest.fail("CI=true but OpenSSH sshd is not installed: apt-get install -y openssh-server")
        pytest.skip("OpenSSH sshd is not installed (apt-get install -y openssh-server)")
    return path


@pytest.fixture
def sshd(sshd_binary: str, tmp_path: Path, client_key: asyncssh.SSHKey) -> Iterator[SSHD]:
    work = tmp_path / "sshd"
    work.mkdir()
    with run_sshd(work, [keys.authorized_keys_line(client_key)]) as server:
        yield server


class Endpoint:
    """An SFTP server under test, whichever kind, with the folder its inbox lives in."""

    def __init__(self, kind: str, host: str, port: int, username: str, fingerprint: str, inbox_remote: str,
                 inbox_local: Path) -> None:
        self.kind = kind
        self.host = host
        self.port = port
        self.username = username
        self.fingerprint = fingerprint
        self.inbox_remote = inbox_remote
        self.inbox_local = inbox_local

    def integration(self, key_file: Path, **kw: object) -> Integration:
        options: dict[str, object] = {"host_key": self.fingerprint} | kw
        return Integration(host=self.host, port=self.port, username=self.username, private_key=key_file,
                           **options)  # type: ignore[arg-type]

    def source(self, key_file: Path, **kw: object) -> DataSource:
        options: dict[str, object] = {"pattern": "*.csv", "min_age": 0} | kw
        return DataSource(name="crm", path=self.inbox_remote, integration=self.integration(key_file),
                          **options)  # type: ignore[arg-type]

    def put(self, name: str, data: bytes | str) -> Path:
        path = self.inbox_local / name
        path.write_bytes(data.encode() if isinstance(data, str) else data)
        return path


@pytest.fixture(params=["embedded", "openssh"])
def endpoint(request: pytest.FixtureRequest, tmp_path: Path) -> Endpoint:
    """Each test using this runs against the embedded asyncssh server and a real OpenSSH sshd."""
    if request.param == "embedded":
        server: SFTPServer = request.getfixturevalue("sftp_server")
        inbox = server.root / "inbox"
        inbox.mkdir()
        return Endpoint("embedded", server.host, server.port, getpass.getuser(), server.host_key_fingerprint,
                        "/inbox", inbox)
    return request.getfixturevalue("openssh")


@pytest.fixture
def openssh(sshd: SSHD, tmp_path: Path) -> Endpoint:
    """An inbox on the real OpenSSH sshd."""
    inbox = tmp_path / "openssh-inbox"
    inbox.mkdir()
    return Endpoint("openssh", sshd.host, sshd.port, sshd.username, sshd.host_key_fingerprint, str(inbox), inbox)


@pytest.fixture
def write_config(tmp_path: Path) -> Callable[[str], Path]:
    def write(text: str) -> Path:
        path = tmp_path / "truagents-import.toml"
        path.write_text(text, encoding="utf-8")
        return path

    return write


CONFIG = """
[integration]
host = "{host}"
port = {port}
username = "{user}"
private_key = "{key}"
host_key = "{fp}"

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


def endpoint_config(endpoint: Endpoint, key_file: Path, write: Callable[[str], Path], **over: str) -> Path:
    """A truagents-import.toml for one source on ``endpoint`` (``over`` replaces template values)."""
    values = {"host": endpoint.host, "port": str(endpoint.port), "user": endpoint.username, "key": str(key_file),
              "fp": endpoint.fingerprint, "inbox": endpoint.inbox_remote} | over
    return write(CONFIG.format(**values))


def run_cli(*args: str) -> tuple[int, str]:
    """Run the command line in-process: its exit status and stdout."""
    from click.testing import CliRunner

    from truagents_import.cli import main

    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout
