"""How far a connection to an SFTP endpoint gets: name lookup, TCP, the SSH greeting, the handshake.

Facts only: each probe says what happened (as a value), never what to do about it; ``check``
judges them. A probe opens no SFTP session and closes what it opened before it returns.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from typing import TYPE_CHECKING, Any, Literal

import asyncssh
import attrs
from fsspec.asyn import get_loop, sync

from truagents_import.remote import keys

if TYPE_CHECKING:
    from truagents_import.remote.integration import Integration

__all__ = ["SSHProbe", "TCPProbe", "probe_ssh", "probe_tcp", "read_banner", "resolve"]

#: What the TCP probe says on connecting: an SSH identification line (RFC 4253, 4.2).
_CLIENT_GREETING = b"SSH-2.0-truagents_import_probe\r\n"


@attrs.frozen
class TCPProbe:
    """How far a TCP connection to a host and port got, and what the server said first.

    ``outcome`` is ``answered`` (a connection was made; ``banner`` is the server's greeting, or
    None when it said nothing in time), ``unresolved`` (the name does not resolve),
    ``resolve_timeout`` (the resolver did not answer in time), ``refused`` (nothing listens),
    ``timeout`` (no answer in time) or ``failed`` (another network error, in ``reason``).
    """

    outcome: Literal["answered", "unresolved", "resolve_timeout", "refused", "timeout", "failed"]
    #: The address that answered.
    address: str | None = None
    #: Milliseconds from the start of the lookup until the connection was made.
    millis: float = 0.0
    #: The server's ``SSH-2.0-...`` line, or its first line when it is not an SSH server.
    banner: str | None = None
    #: The system's words for a failure.
    reason: str | None = None


@attrs.frozen
class SSHProbe:
    """How far an SSH connection got: ``ok``, or the step that stopped it.

    ``outcome`` is ``ok`` (host key verified and key accepted), ``host_key`` (the server's key is
    not the pinned one), ``auth`` (host key verified, our key refused) or ``network`` (the
    handshake failed before the host key could be judged).
    """

    outcome: Literal["ok", "host_key", "auth", "network"]
    #: The ``SHA256:`` fingerprint the server presented, when it got that far.
    presented: str | None
    #: The fingerprint of the client key offered.
    client_key: str
    #: What happened, for people.
    message: str


def probe_tcp(host: str, port: int, *, timeout: float, banner_timeout: float) -> TCPProbe:
    """Resolve ``host`` and connect to ``port`` on each address in turn until one answers (within
    ``timeout`` in all), then read the server's greeting (for up to ``banner_timeout``)."""
    started = time.monotonic()
    try:
        addresses = resolve(host, port, timeout)
    except socket.gaierror as exc:
        return TCPProbe("unresolved", reason=exc.strerror)
    except TimeoutError:
        return TCPProbe("resolve_timeout")
    last: OSError | None = None
    for family, kind, proto, _, sockaddr in addresses:
        remaining = max(timeout - (time.monotonic() - started), 0.5)
        sock = socket.socket(family, kind, proto)
        try:
            sock.settimeout(remaining)
            sock.connect(sockaddr)
        except OSError as exc:
            sock.close()
            last = exc
            continue
        took = (time.monotonic() - started) * 1000
        with sock:
            # Say who we are first, as an SSH client may: an SSH server greets anyway, and a server
            # that waits for its client to speak (HTTP, say) answers, so it shows what it is.
            with contextlib.suppress(OSError):
                sock.sendall(_CLIENT_GREETING)
            banner = read_banner(sock, banner_timeout)
        return TCPProbe("answered", address=str(sockaddr[0]), millis=took, banner=banner)
    if isinstance(last, ConnectionRefusedError):
        return TCPProbe("refused")
    if isinstance(last, TimeoutError):
        return TCPProbe("timeout")
    return TCPProbe("failed", reason=(last.strerror if last is not None else None) or str(last))


def resolve(host: str, port: int, timeout: float) -> list[Any]:
    """``getaddrinfo`` with a time limit (a resolver that never answers must not hang the caller)."""
    box: dict[str, Any] = {}

    def lookup() -> None:
        try:
            box["result"] = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as exc:
            box["error"] = exc

    worker = threading.Thread(target=lookup, name="probe-resolve", daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        raise TimeoutError(f"resolving {host} took more than {timeout:g} s")
    if "error" in box:
        raise box["error"]
    result: list[Any] = box["result"]
    return result


def read_banner(sock: socket.socket, timeout: float) -> str | None:
    """The server's greeting: its ``SSH-2.0-...`` line (a server may send other lines first), or its
    first line when it is not an SSH server, or None when it says nothing within ``timeout``."""
    sock.settimeout(timeout)
    data = b""
    with contextlib.suppress(OSError):
        while len(data) < 1024:
            chunk = sock.recv(1024)
            if not chunk:
                break
            data += chunk
            complete = data.split(b"\n")[:-1]
            if any(line.startswith(b"SSH-") for line in complete):
                break
    if not data:
        return None
    lines = [line.rstrip(b"\r") for line in data.split(b"\n")]
    greeting = next((line for line in lines if line.startswith(b"SSH-")), lines[0])
    return greeting.decode("utf-8", "replace")


def probe_ssh(integration: Integration, *, timeout: float | None = None) -> SSHProbe:
    """Connect with :meth:`Integration.connect_options` and tell a host key mismatch from a refused key.

    Opens no SFTP session and closes the connection at once. Raises :class:`ConfigError`
    when the integration's settings cannot even be used (key file, host key pin).
    """
    options = integration.connect_options()
    seen: list[str] = options.pop("_seen")
    client = keys.fingerprint(options["client_keys"][0])
    if timeout is not None:
        options["connect_timeout"] = timeout
    where = f"{integration.username}@{integration.host}:{integration.port}"

    async def attempt() -> str | None:
        conn = await asyncssh.connect(integration.host, **options)
        try:
            key = conn.get_server_host_key()
            return None if key is None else keys.fingerprint(key)
        finally:
            conn.close()
            with contextlib.suppress(Exception):
                await conn.wait_closed()

    limit = float(options["connect_timeout"]) + 5.0
    try:
        presented = sync(get_loop(), attempt, timeout=limit)
    except asyncssh.HostKeyNotVerifiable:
        shown = seen[-1] if seen else None
        return SSHProbe("host_key", shown, client, f"{where}: host key {shown or '(none)'} is not trusted")
    except asyncssh.PermissionDenied:
        shown = seen[-1] if seen else None
        return SSHProbe("auth", shown, client, f"{where} refused the key {client}")
    except (TimeoutError, OSError, asyncssh.Error) as exc:
        reason = getattr(exc, "reason", None) or getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        shown = seen[-1] if seen else None
        return SSHProbe("network", shown, client, f"SSH handshake with {where} failed: {reason}")
    return SSHProbe("ok", presented or (seen[-1] if seen else None), client, f"logged in as {where}")
