"""The embedded SFTP server: transfers, key-only auth, SFTP-only, confinement, fault injection, lifecycle."""

from __future__ import annotations

import asyncio
import os
import socket
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncssh
import pytest

from truagents_import.remote.keys import authorized_keys_line, fingerprint, generate_key_pair, public_line
from truagents_import.remote.server import SFTPServer


@pytest.fixture(scope="module")
def key() -> asyncssh.SSHKey:
    return generate_key_pair("test-client")


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    root.mkdir()
    return root


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("top secret\n")
    return outside


@pytest.fixture
def server(root: Path, key: asyncssh.SSHKey) -> Iterator[SFTPServer]:
    with SFTPServer(root, [key]) as srv:
        yield srv


@asynccontextmanager
async def connect(
    server: SFTPServer, key: asyncssh.SSHKey | None, *, username: str = "tester", **kw: Any
) -> AsyncIterator[asyncssh.SSHClientConnection]:
    async with asyncssh.connect(
        server.host,
        server.port,
        username=username,
        client_keys=[key] if key is not None else None,
        agent_path=None,
        config=None,
        known_hosts=asyncssh.import_known_hosts(server.known_hosts_line()),
        connect_timeout=10,
        **kw,
    ) as conn:
        yield conn


@asynccontextmanager
async def sftp_session(
    server: SFTPServer, key: asyncssh.SSHKey, **kw: Any
) -> AsyncIterator[asyncssh.SFTPClient]:
    async with connect(server, key, **kw) as conn, conn.start_sftp_client() as sftp:
        yield sftp


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 30))


# -- basics -------------------------------------------------------------------------------------


def test_properties(server: SFTPServer, root: Path) -> None:
    assert server.host == "127.0.0.1"
    assert server.port > 0
    assert server.root == root.resolve()
    assert server.host_key_fingerprint == fingerprint(server.host_public_key)
    assert server.host_key_fingerprint.startswith("SHA256:")
    line = server.known_hosts_line()
    assert line.startswith(f"[127.0.0.1]:{server.port} ssh-ed25519 AAAA")
    assert line.split()[1:] == public_line(server.host_public_key).split()[:2]
    assert "running" in repr(server)


def test_known_hosts_line_bare_host_on_port_22(root: Path) -> None:
    srv = SFTPServer(root, port=22)
    assert srv.known_hosts_line().startswith("127.0.0.1 ssh-ed25519 ")


def test_known_hosts_line_needs_a_port(root: Path) -> None:
    with pytest.raises(RuntimeError, match="start"):
        SFTPServer(root).known_hosts_line()


def test_given_host_key_is_used(root: Path, key: asyncssh.SSHKey) -> None:
    host_key = generate_key_pair("host")
    with SFTPServer(root, [key], host_key=host_key) as srv:
        assert srv.host_key_fingerprint == fingerprint(host_key)

        async def go() -> list[str]:
            async with sftp_session(srv, key) as sftp:
                return sorted(await sftp.listdir("."))

        assert run(go()) == [".", ".."]


def test_root_must_be_a_directory(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not a directory"):
        SFTPServer(tmp_path / "missing")


def test_bad_authorized_key_line_is_rejected(root: Path) -> None:
    with pytest.raises(ValueError, match="public key"):
        SFTPServer(root, ["ssh-ed25519 not-base64"])


# -- transfers ----------------------------------------------------------------------------------


def test_upload_download_round_trip(
    server: SFTPServer, root: Path, tmp_path: Path, key: asyncssh.SSHKey
) -> None:
    payload = os.urandom(300_000)
    local = tmp_path / "local.bin"
    local.write_bytes(payload)
    back = tmp_path / "back.bin"

    async def go() -> None:
        async with sftp_session(server, key) as sftp:
            await sftp.mkdir("inbox")
            await sftp.put(str(local), "inbox/contacts.bin")
            assert (await sftp.stat("inbox/contacts.bin")).size == len(payload)
            await sftp.get("/inbox/contacts.bin", str(back))
            assert await sftp.realpath("inbox/../inbox") == "/inbox"

    run(go())
    assert (root / "inbox" / "contacts.bin").read_bytes() == payload
    assert back.read_bytes() == payload


def test_posix_rename_replaces_atomically(server: SFTPServer, root: Path, key: asyncssh.SSHKey) -> None:
    (root / "contacts.csv").write_text("old\n")

    async def go() -> None:
        async with sftp_session(server, key) as sftp:
            async with sftp.open(".contacts.csv.part", "w") as f:
                await f.write("new\n")
            # asyncssh's client raises SFTPOpUnsupported unless the server offers posix-rename@openssh.com.
            await sftp.posix_rename(".contacts.csv.part", "contacts.csv")

    run(go())
    assert (root / "contacts.csv").read_text() == "new\n"
    assert not (root / ".contacts.csv.part").exists()


def test_plain_rename_does_not_overwrite(server: SFTPServer, root: Path, key: asyncssh.SSHKey) -> None:
    (root / "a").write_text("a")
    (root / "b").write_text("b")

    async def go() -> None:
        async with sftp_session(server, key) as sftp:
            with pytest.raises(asyncssh.SFTPFailure):
                await sftp.rename("a", "b")

    run(go())
    assert (root / "b").read_text() == "b"


# -- authentication and what a session may do ---------------------------------------------------


def test_unauthorized_key_is_refused(server: SFTPServer) -> None:
    async def go() -> None:
        async with connect(server, generate_key_pair("stranger")):
            pass

    with pytest.raises(asyncssh.PermissionDenied):
        run(go())


def test_password_auth_is_refused(server: SFTPServer) -> None:
    async def go() -> None:
        async with connect(server, None, password="hunter2"):
            pass

    with pytest.raises(asyncssh.PermissionDenied):
        run(go())


def test_username_is_enforced_when_set(root: Path, key: asyncssh.SSHKey) -> None:
    async def go(srv: SFTPServer, username: str) -> None:
        async with sftp_session(srv, key, username=username) as sftp:
            await sftp.listdir(".")

    with SFTPServer(root, [key], username="alice") as srv:
        run(go(srv, "alice"))
        with pytest.raises(asyncssh.PermissionDenied):
            run(go(srv, "mallory"))


def test_add_authorized_key_at_runtime_accepts_authorized_keys_lines(server: SFTPServer) -> None:
    newcomer = generate_key_pair("newcomer")

    async def go() -> None:
        async with sftp_session(server, newcomer) as sftp:
            await sftp.listdir(".")

    with pytest.raises(asyncssh.PermissionDenied):
        run(go())
    server.add_authorized_key(authorized_keys_line(newcomer, from_="127.0.0.1/32"))
    run(go())


def test_exec_shell_and_other_subsystems_are_refused(server: SFTPServer, key: asyncssh.SSHKey) -> None:
    async def go() -> None:
        async with connect(server, key) as conn:
            with pytest.raises(asyncssh.ChannelOpenError):
                await conn.run("id", check=False)
            with pytest.raises(asyncssh.ChannelOpenError):
                await conn.create_process()  # a shell
            with pytest.raises(asyncssh.ChannelOpenError):
                await conn.create_process(subsystem="netconf")
            with pytest.raises(asyncssh.ChannelOpenError):
                await conn.open_connection("127.0.0.1", server.port)  # port forwarding
            async with conn.start_sftp_client() as sftp:  # SFTP still works on the same connection
                await sftp.listdir(".")

    run(go())


# -- confinement --------------------------------------------------------------------------------


def test_dotdot_and_absolute_paths_stay_inside_root(
    server: SFTPServer, root: Path, outside: Path, key: asyncssh.SSHKey
) -> None:
    secret = outside / "secret.txt"
    attempts = [
        "../outside/secret.txt",
        "/../outside/secret.txt",
        "../../../../../../" + str(secret),
        str(secret),
        "/etc/passwd",
    ]

    async def go() -> None:
        async with sftp_session(server, key) as sftp:
            for path in attempts:
                with pytest.raises(asyncssh.SFTPError):
                    async with sftp.open(path, "rb") as f:
                        await f.read()
            assert await sftp.realpath("../../..") == "/"
            names = set(await sftp.listdir("../.."))
            assert "outside" not in names
            # A write "above" the root lands inside it.
            async with sftp.open("../escape.txt", "w") as f:
                await f.write("x")

    run(go())
    assert not (root.parent / "escape.txt").exists()
    assert (root / "escape.txt").read_text() == "x"
    assert secret.read_text() == "top secret\n"


def test_symlink_pointing_outside_is_refused(
    server: SFTPServer, root: Path, outside: Path, key: asyncssh.SSHKey
) -> None:
    (root / "linkdir").symlink_to(outside)
    (root / "linkfile").symlink_to(outside / "secret.txt")
    (root / "dangling").symlink_to(outside / "new.txt")
    (root / "real.txt").write_text("fine\n")
    (root / "goodlink").symlink_to("real.txt")

    async def go() -> None:
        async with sftp_session(server, key) as sftp:
            for path in ("linkfile", "linkdir/secret.txt"):
                with pytest.raises(asyncssh.SFTPPermissionDenied):
                    async with sftp.open(path, "rb") as f:
                        await f.read()
            for path in ("linkdir/new.txt", "dangling"):
                with pytest.raises(asyncssh.SFTPPermissionDenied):
                    async with sftp.open(path, "w") as f:
                        await f.write("escaped")
            with pytest.raises(asyncssh.SFTPPermissionDenied):
                await sftp.listdir("linkdir")
            with pytest.raises(asyncssh.SFTPPermissionDenied):
                await sftp.stat("linkfile")
            with pytest.raises(asyncssh.SFTPPermissionDenied):
                await sftp.readlink("linkfile")
            with pytest.raises(asyncssh.SFTPPermissionDenied):
                await sftp.posix_rename("linkdir", "moved")
            with pytest.raises(asyncssh.SFTPPermissionDenied):
                await sftp.posix_rename("real.txt", "linkdir/real.txt")
            with pytest.raises(asyncssh.SFTPPermissionDenied):
                await sftp.get("linkfile", os.devnull)
            # A link that stays inside the root works.
            async with sftp.open("goodlink", "r") as f:
                assert await f.read() == "fine\n"
            assert await sftp.readlink("goodlink") == "/real.txt"
            # Links the client creates cannot point outside either.
            await sftp.symlink("/../../../etc", "made")
            assert await sftp.readlink("made") == "/etc"

    run(go())
    assert not (outside / "new.txt").exists()
    assert (outside / "secret.txt").read_text() == "top secret\n"
    assert os.path.realpath(root / "made") == str(root.resolve() / "etc")


# -- fault injection ----------------------------------------------------------------------------


def test_drop_connections_kills_a_live_session(server: SFTPServer, key: asyncssh.SSHKey) -> None:
    async def go() -> int:
        async with sftp_session(server, key) as sftp:
            await sftp.listdir(".")
            dropped = await asyncio.to_thread(server.drop_connections)
            with pytest.raises((asyncssh.Error, OSError)):
                await sftp.listdir(".")
            return int(dropped)

    assert run(go()) == 1
    assert server.drop_connections() == 0

    async def again() -> None:  # the server itself keeps serving
        async with sftp_session(server, key) as sftp:
            await sftp.listdir(".")

    run(again())


def test_drop_after_bytes_cuts_a_download(
    server: SFTPServer, root: Path, tmp_path: Path, key: asyncssh.SSHKey
) -> None:
    payload = os.urandom(1_000_000)
    (root / "big.bin").write_bytes(payload)
    local = tmp_path / "big.bin"
    server.drop_after_bytes = 200_000

    async def go() -> None:
        async with sftp_session(server, key) as sftp:
            with pytest.raises((asyncssh.Error, OSError)):
                await sftp.get("big.bin", str(local))

    run(go())
    assert not local.exists() or local.stat().st_size < len(payload)

    async def small() -> bytes:  # below the threshold a read is served
        async with sftp_session(server, key) as sftp, sftp.open("big.bin", "rb") as f:
            return bytes(await f.read(100_000))

    assert run(small()) == payload[:100_000]

    server.drop_after_bytes = None

    async def whole() -> None:
        async with sftp_session(server, key) as sftp:
            await sftp.get("big.bin", str(local))

    run(whole())
    assert local.read_bytes() == payload


# -- lifecycle ----------------------------------------------------------------------------------


def _refused(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            return False
    except OSError:
        return True


def test_stop_really_stops_and_is_idempotent(root: Path, key: asyncssh.SSHKey) -> None:
    srv = SFTPServer(root, [key]).start()
    port = srv.port

    async def go() -> None:
        async with sftp_session(srv, key) as sftp:
            await sftp.listdir(".")
            await asyncio.to_thread(srv.stop)  # closes the live connection too
            with pytest.raises((asyncssh.Error, OSError)):
                await sftp.listdir(".")

    run(go())
    assert _refused(port)
    assert not srv.running
    srv.stop()
    srv.stop()
    assert srv.drop_connections() == 0


def test_context_manager_stops(root: Path, key: asyncssh.SSHKey) -> None:
    with SFTPServer(root, [key]) as srv:
        port = srv.port
        assert srv.running
        assert not _refused(port)
    assert _refused(port)


def test_serve_forever_returns_after_stop(root: Path, key: asyncssh.SSHKey) -> None:
    srv = SFTPServer(root, [key])
    thread = threading.Thread(target=srv.serve_forever)
    thread.start()
    try:
        for _ in range(200):
            if srv.running:
                break
            threading.Event().wait(0.05)
        assert srv.running

        async def go() -> None:
            async with sftp_session(srv, key) as sftp:
                await sftp.listdir(".")

        run(go())
    finally:
        srv.stop()
        thread.join(10)
    assert not thread.is_alive()
    assert not srv.running


def test_port_in_use_raises(root: Path, server: SFTPServer) -> None:
    with pytest.raises(OSError):
        SFTPServer(root, port=server.port).start()
