"""The OpenSSH sshd test helper: asyncssh and the OpenSSH sftp client both work against it."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from pathlib import Path

import asyncssh
import pytest

from sshd import SSHD, find_sshd, run_sshd, sftp_batch_argv
from truagents_import.remote.keys import authorized_keys_line, generate_key_pair, public_line, write_key_pair

pytestmark = pytest.mark.sshd


def _require(what: str, found: str | None) -> str:
    """The found binary, or skip (fail when CI=true, where a missing binary is a broken CI image)."""
    if found is None:
        reason = f"{what} is not installed"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason}, and CI=true requires it")
        pytest.skip(reason)
    return found


def test_asyncssh_lists_and_uploads(tmp_path: Path) -> None:
    _require("OpenSSH sshd", find_sshd())
    key = generate_key_pair("sshd-test")
    workdir = tmp_path / "sshd"
    drop = tmp_path / "drop"
    drop.mkdir()
    (drop / "existing.csv").write_text("email\n")

    with run_sshd(workdir, [public_line(key)]) as sshd:
        assert isinstance(sshd, SSHD)
        assert sshd.host == "127.0.0.1"
        assert sshd.known_hosts_line.startswith(f"[127.0.0.1]:{sshd.port} ssh-ed25519 ")
        assert sshd.host_key_fingerprint.startswith("SHA256:")
        assert sshd.log.exists()
        assert (workdir / "ssh_host_ed25519_key").stat().st_mode & 0o777 == 0o600

        async def go() -> list[str]:
            async with (
                asyncssh.connect(
                    sshd.host,
                    sshd.port,
                    username=sshd.username,
                    client_keys=[key],
                    agent_path=None,
                    config=None,
                    known_hosts=asyncssh.import_known_hosts(sshd.known_hosts_line),
                    connect_timeout=10,
                ) as conn,
                conn.start_sftp_client() as sftp,
            ):
                async with sftp.open(str(drop / ".new.csv.part"), "w") as f:
                    await f.write("email\na@example.com\n")
                await sftp.posix_rename(str(drop / ".new.csv.part"), str(drop / "new.csv"))
                return sorted(await sftp.listdir(str(drop)))

        names = asyncio.run(asyncio.wait_for(go(), 30))

    assert names == [".", "..", "existing.csv", "new.csv"]
    assert (drop / "new.csv").read_text() == "email\na@example.com\n"


def test_wrong_host_key_is_not_verifiable(tmp_path: Path) -> None:
    _require("OpenSSH sshd", find_sshd())
    key = generate_key_pair("sshd-test")
    with run_sshd(tmp_path / "sshd", [public_line(key)]) as sshd:
        other = public_line(generate_key_pair("impostor")).split()[:2]

        async def go() -> None:
            async with asyncssh.connect(
                sshd.host,
                sshd.port,
                username=sshd.username,
                client_keys=[key],
                agent_path=None,
                config=None,
                known_hosts=asyncssh.import_known_hosts(f"[127.0.0.1]:{sshd.port} {' '.join(other)}"),
                connect_timeout=10,
            ):
                pass

        with pytest.raises(asyncssh.HostKeyNotVerifiable):
            asyncio.run(asyncio.wait_for(go(), 30))


def test_openssh_sftp_client_uploads_with_a_batch(tmp_path: Path) -> None:
    _require("OpenSSH sshd", find_sshd())
    sftp_bin = _require("OpenSSH sftp client", shutil.which("sftp"))
    key = generate_key_pair("sshd-test")
    pair = write_key_pair(key, tmp_path / "keys", "id_ed25519")
    drop = tmp_path / "drop"
    drop.mkdir()
    local = tmp_path / "contacts.csv"
    local.write_text("email\nb@example.com\n")

    # The product's authorized_keys line: SFTP only (restrict, command="internal-sftp").
    with run_sshd(tmp_path / "sshd", [authorized_keys_line(key)]) as sshd:
        known_hosts = tmp_path / "known_hosts"
        known_hosts.write_text(sshd.known_hosts_line + "\n")
        batch = (
            f"-mkdir {drop}/inbox\n"
            f"put {local} {drop}/inbox/.contacts.csv.part\n"
            f"rename {drop}/inbox/.contacts.csv.part {drop}/inbox/contacts.csv\n"
        )
        argv = sftp_batch_argv("-", sshd.port, f"{sshd.username}@{sshd.host}", pair.private_key, known_hosts,
                               sftp=sftp_bin)
        result = subprocess.run(
            argv,
            input=batch,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, f"{result.stdout}\n{result.stderr}\n{sshd.log.read_text()}"

    assert (drop / "inbox" / "contacts.csv").read_text() == "email\nb@example.com\n"
    assert not (drop / "inbox" / ".contacts.csv.part").exists()


def test_sshd_is_stopped_on_exit(tmp_path: Path) -> None:
    _require("OpenSSH sshd", find_sshd())
    with run_sshd(tmp_path / "sshd", [public_line(generate_key_pair())]) as sshd:
        pid = sshd.pid
        os.kill(pid, 0)  # alive
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
