"""``truagents-import serve`` against the SFTP clients people use: OpenSSH sftp and scp, rclone, lftp, paramiko.

Each test starts the real command (a process of its own) with one authorized key and one user
name, uploads a file of random bytes big enough for pipelined, concurrent, out-of-order writes,
fetches it back and compares; then tries what the server must refuse: another user name,
attribute changes on its root, a change of owner, a symbolic link that could leave the root, and
more unauthenticated connections than it allows.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sshd import sftp_batch_argv
from truagents_import import keys
from truagents_import.remote.server import MAX_UNAUTHENTICATED

USER = "uploader"
IN_CI = os.environ.get("CI") == "true"


class Serve:
    """A running ``serve`` process: where it listens, its root, the client's key and known_hosts file."""

    def __init__(self, proc: subprocess.Popen[str], info: dict[str, object], work: Path) -> None:
        self.proc = proc
        self.port = int(info["port"])  # type: ignore[call-overload]
        self.root = Path(str(info["root"]))
        self.fingerprint = str(info["host_key"])
        self.key = work / "keys" / "id_ed25519"
        self.known_hosts = work / "known_hosts"
        self.known_hosts.write_text(f"{info['known_hosts_line']}\n", encoding="ascii")

    def ssh_options(self) -> list[str]:
        return ["-F", os.devnull, "-i", str(self.key), "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
                "-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={self.known_hosts}",
                "-o", f"GlobalKnownHostsFile={os.devnull}"]


def _read_json_document(stream: object) -> dict[str, object]:
    text = ""
    for line in stream:  # type: ignore[attr-defined]
        text += line
        if line.startswith("}"):
            return json.loads(text)  # type: ignore[no-any-return]
    msg = f"serve printed no JSON document: {text!r}"
    raise AssertionError(msg)


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Serve]:
    pair = keys.write_key_pair(keys.generate_key_pair("client"), tmp_path / "keys", "id_ed25519")
    authorized = tmp_path / "authorized_keys"
    authorized.write_text(pair.public_line + "\n", encoding="ascii")
    exe = Path(sys.executable).with_name("truagents-import")
    argv = [str(exe), "serve", "--root", str(tmp_path / "root"), "--port", "0", "--authorized-keys",
            str(authorized), "--host-key", str(tmp_path / "host_key"), "--user", USER, "--json"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    try:
        info = _read_json_document(proc.stdout)
        assert info["username"] == USER
        yield Serve(proc, info, tmp_path)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            _, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate(timeout=30)
        assert "Traceback" not in err, err


def need(program: str) -> str:
    found = shutil.which(program)
    if found is None:
        if IN_CI:
            pytest.fail(f"CI=true but {program} is not installed (.ci/run installs it)")
        pytest.skip(f"{program} is not installed")
    return found


@pytest.fixture
def payload(tmp_path: Path) -> Path:
    """3 MiB of random bytes: many write requests, several in flight at once."""
    path = tmp_path / "contacts_2026-12-01.csv"
    path.write_bytes(os.urandom(3 * 2**20 + 12345))
    return path


def run(argv: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False, **kw)  # type: ignore[call-overload]


# -- OpenSSH sftp and scp -------------------------------------------------------------------------


def test_openssh_sftp_uploads_renames_and_downloads(serve: Serve, payload: Path, tmp_path: Path) -> None:
    need("sftp")
    back = tmp_path / "back.csv"
    batch = (f"mkdir inbox\nput {payload} inbox/.upload.part\nrename inbox/.upload.part inbox/{payload.name}\n"
             f"get inbox/{payload.name} {back}\nls -l inbox\n")
    done = run(sftp_batch_argv("-", serve.port, f"{USER}@127.0.0.1", serve.key, serve.known_hosts), input=batch)
    assert done.returncode == 0, done.stderr
    assert (serve.root / "inbox" / payload.name).read_bytes() == payload.read_bytes()
    assert back.read_bytes() == payload.read_bytes()


def test_scp_exits_0_after_a_good_upload_and_download(serve: Serve, payload: Path, tmp_path: Path) -> None:
    need("scp")
    up = run(["scp", *serve.ssh_options(), "-P", str(serve.port), str(payload), f"{USER}@127.0.0.1:/{payload.name}"])
    assert up.returncode == 0, up.stderr
    assert (serve.root / payload.name).read_bytes() == payload.read_bytes()
    down = run(["scp", *serve.ssh_options(), "-P", str(serve.port), f"{USER}@127.0.0.1:/{payload.name}",
                str(tmp_path / "back.csv")])
    assert down.returncode == 0, down.stderr
    assert (tmp_path / "back.csv").read_bytes() == payload.read_bytes()


def test_legacy_scp_and_commands_are_refused(serve: Serve, payload: Path) -> None:
    need("ssh")
    legacy = run(["scp", "-O", *serve.ssh_options(), "-P", str(serve.port), str(payload), f"{USER}@127.0.0.1:/x"])
    assert legacy.returncode != 0
    shell = run(["ssh", *serve.ssh_options(), "-p", str(serve.port), f"{USER}@127.0.0.1", "id"])
    assert shell.returncode != 0
    assert not (serve.root / "x").exists()


def test_the_root_keeps_its_attributes_and_links_cannot_leave_it(serve: Serve) -> None:
    need("sftp")
    mode = (serve.root.stat().st_mode, serve.root.stat().st_mtime_ns)
    argv = sftp_batch_argv("-", serve.port, f"{USER}@127.0.0.1", serve.key, serve.known_hosts)
    for line in ("chmod 777 /", "chmod 777 .", "chown 0 /", "chgrp 0 /", "ln -s ../.. /up", "ln -s sub/../.. /x"):
        done = run(argv, input=f"{line}\n")
        assert done.returncode != 0, line
        assert "Permission denied" in done.stderr or "denied" in done.stderr.lower(), (line, done.stderr)
    assert (serve.root.stat().st_mode, serve.root.stat().st_mtime_ns) == mode
    assert not any(p.is_symlink() for p in serve.root.rglob("*"))


def test_a_link_moved_by_rename_cannot_point_outside(serve: Serve) -> None:
    """A relative link that is fine where it is made could point outside once moved: none is made."""
    need("sftp")
    (serve.root / "a" / "b").mkdir(parents=True)
    argv = sftp_batch_argv("-", serve.port, f"{USER}@127.0.0.1", serve.key, serve.known_hosts)
    made = run(argv, input="ln -s ../.. /a/b/link\n")
    assert made.returncode != 0
    assert not (serve.root / "a" / "b" / "link").is_symlink()
    # A link with a plain target can be made and moved: it stays inside wherever it goes.
    ok = run(argv, input="ln -s b /a/plain\nrename /a/plain /plain\n")
    assert ok.returncode == 0, ok.stderr
    assert os.readlink(serve.root / "plain") == "b"


# -- rclone, lftp ------------------------------------------------------------------------------------


def test_rclone_uploads_and_downloads(serve: Serve, payload: Path, tmp_path: Path) -> None:
    need("rclone")
    remote = ["--sftp-host=127.0.0.1", f"--sftp-port={serve.port}", f"--sftp-user={USER}",
              f"--sftp-key-file={serve.key}", f"--sftp-known-hosts-file={serve.known_hosts}",
              "--sftp-disable-hashcheck", "--config", os.devnull]
    up = run(["rclone", "copyto", str(payload), f":sftp:/inbox/{payload.name}", *remote])
    assert up.returncode == 0, up.stderr
    assert (serve.root / "inbox" / payload.name).read_bytes() == payload.read_bytes()
    listed = run(["rclone", "lsjson", ":sftp:/inbox", *remote])
    assert listed.returncode == 0, listed.stderr
    assert [(e["Name"], e["Size"]) for e in json.loads(listed.stdout)] == [(payload.name, payload.stat().st_size)]
    down = run(["rclone", "copyto", f":sftp:/inbox/{payload.name}", str(tmp_path / "back.csv"), *remote])
    assert down.returncode == 0, down.stderr
    assert (tmp_path / "back.csv").read_bytes() == payload.read_bytes()


def test_rclone_with_another_user_name_is_refused(serve: Serve, payload: Path) -> None:
    need("rclone")
    refused = run(["rclone", "copyto", str(payload), ":sftp:/x.csv", "--sftp-host=127.0.0.1",
                   f"--sftp-port={serve.port}", "--sftp-user=someone-else", f"--sftp-key-file={serve.key}",
                   f"--sftp-known-hosts-file={serve.known_hosts}", "--config", os.devnull, "--retries", "1",
                   "--low-level-retries", "1"])
    assert refused.returncode != 0
    assert not (serve.root / "x.csv").exists()


def test_lftp_uploads_and_downloads_with_the_key(serve: Serve, payload: Path, tmp_path: Path) -> None:
    """lftp's sftp:// runs ssh underneath: the key and the pinned host key go in its connect-program."""
    need("lftp")
    ssh = " ".join(["ssh", "-a", "-x", *serve.ssh_options()])
    script = (f"set sftp:connect-program '{ssh}'; set net:max-retries 1; "
              f"open -u {USER}, sftp://127.0.0.1:{serve.port}; "
              f"mkdir -p /inbox; put {payload} -o /inbox/{payload.name}; "
              f"get /inbox/{payload.name} -o {tmp_path}/back.csv")
    done = run(["lftp", "-c", script], stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr
    assert (serve.root / "inbox" / payload.name).read_bytes() == payload.read_bytes()
    assert (tmp_path / "back.csv").read_bytes() == payload.read_bytes()
    refused = run(["lftp", "-c", f"set sftp:connect-program '{ssh}'; set net:max-retries 1; "
                   f"open -u {USER}, sftp://127.0.0.1:{serve.port}; chmod 777 /"], stdin=subprocess.DEVNULL)
    assert refused.returncode != 0
    assert "cannot be changed" in refused.stderr


# -- paramiko ----------------------------------------------------------------------------------------


def _paramiko_client(serve: Serve, username: str = USER) -> object:
    paramiko = pytest.importorskip("paramiko")
    client = paramiko.SSHClient()
    client.load_host_keys(str(serve.known_hosts))
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    client.connect("127.0.0.1", port=serve.port, username=username, key_filename=str(serve.key),
                   look_for_keys=False, allow_agent=False, timeout=30)
    return client


def test_paramiko_uploads_and_downloads(serve: Serve, payload: Path, tmp_path: Path) -> None:
    client = _paramiko_client(serve)
    with contextlib.closing(client) as c:  # type: ignore[type-var]
        sftp = c.open_sftp()  # type: ignore[attr-defined]
        sftp.mkdir("/inbox")
        sftp.put(str(payload), f"/inbox/.{payload.name}.part", confirm=True)
        sftp.posix_rename(f"/inbox/.{payload.name}.part", f"/inbox/{payload.name}")
        sftp.get(f"/inbox/{payload.name}", str(tmp_path / "back.csv"))
        assert sftp.listdir("/inbox") == [payload.name]
        sftp.chmod(f"/inbox/{payload.name}", 0o600)  # a file's own mode may change
        with pytest.raises(PermissionError):
            sftp.chmod("/", 0o777)
        with pytest.raises(PermissionError):
            sftp.utime("/", (0, 0))
        with pytest.raises(PermissionError):
            sftp.chown(f"/inbox/{payload.name}", 0, 0)
        with pytest.raises(PermissionError):
            sftp.symlink("../../..", "/inbox/up")
        sftp.close()
    assert (serve.root / "inbox" / payload.name).read_bytes() == payload.read_bytes()
    assert (tmp_path / "back.csv").read_bytes() == payload.read_bytes()
    assert (serve.root / "inbox" / payload.name).stat().st_mode & 0o777 == 0o600


def test_paramiko_with_another_user_name_is_refused(serve: Serve) -> None:
    paramiko = pytest.importorskip("paramiko")
    with pytest.raises(paramiko.AuthenticationException):
        _paramiko_client(serve, username="root")


# -- unauthenticated connections ---------------------------------------------------------------------


def _closed_by_server(sock: socket.socket, wait: float = 5.0) -> bool:
    """Read what the server sends until it closes the connection (True) or goes quiet (False)."""
    sock.settimeout(wait)
    try:
        while sock.recv(4096):
            pass
    except TimeoutError:
        return False
    return True


def test_unauthenticated_connections_are_capped(serve: Serve) -> None:
    waiting = []
    try:
        for _ in range(MAX_UNAUTHENTICATED):
            sock = socket.create_connection(("127.0.0.1", serve.port), timeout=10)
            sock.sendall(b"SSH-2.0-stalling\r\n")
            waiting.append(sock)
        extra = socket.create_connection(("127.0.0.1", serve.port), timeout=10)
        with extra:
            assert _closed_by_server(extra)
        assert not _closed_by_server(waiting[0], wait=0.5)  # the ones already in are still waiting
    finally:
        for sock in waiting:
            sock.close()
    # Once they are gone, a client logs in again.
    for _ in range(50):
        try:
            client = _paramiko_client(serve)
            break
        except Exception:  # the server may not have seen the closes yet
            time.sleep(0.1)
    else:
        pytest.fail("no login after the stalled connections closed")
    client.close()  # type: ignore[attr-defined]
