"""The connection rungs: ``config``, ``reachable``, ``host_key`` and ``auth``.

Each judges a fact found by the integration itself (:meth:`Integration.connect_options`) or by a
probe next to the endpoint (:mod:`truagents_import.remote.probe`) and says what to do next.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from truagents_import._safety import escape_name
from truagents_import.check.context import Rungs, Skip
from truagents_import.check.report import CheckStep
from truagents_import.errors import ConfigError, KeyFileError
from truagents_import.remote.probe import TCPProbe, probe_ssh, probe_tcp

if TYPE_CHECKING:
    from truagents_import.remote.integration import Integration

__all__ = ["auth", "config", "host_key", "reachable"]

#: The longest a TCP connection (name lookup included) is waited for, and the server's greeting.
_TCP_TIMEOUT = 5.0
_BANNER_TIMEOUT = 3.0


def config(ctx: Rungs) -> CheckStep:
    """The settings can be used: a host name and port, a readable key, a pinned host key."""
    what = ctx.describe()
    integ = ctx.integration
    if integ is None:
        return CheckStep("config", "pass", f"{what}; no [integration], so the folder is read locally")
    problems = []
    if not integ.host or any(c.isspace() for c in integ.host):
        problems.append(f"host {integ.host!r} is not a host name")
    if not 0 < integ.port < 65536:
        problems.append(f"port {integ.port} is out of range")
    if problems:
        advice = "fix `host` and `port` in [integration] (SFTP is usually port 22)"
        return CheckStep("config", "fail", "; ".join(problems), advice)
    try:
        integ.connect_options()
    except KeyFileError as exc:
        advice = (
            "fix the private key named by `private_key` in [integration] as the message says "
            "(`truagents-import keygen` makes a new pair), then run check again"
        )
        return CheckStep("config", "fail", str(exc), advice)
    except ConfigError as exc:
        advice = (
            'pin the server\'s host key in [integration]: `host_key = "SHA256:..."` (run '
            '`truagents-import trust` to see it) or `known_hosts = "FILE"`'
        )
        return CheckStep("config", "fail", str(exc), advice)
    server = f"server {integ.username}@{integ.host}:{integ.port}"
    return CheckStep("config", "pass", f"{what}; {server}" if what else server)


def reachable(ctx: Rungs) -> CheckStep:
    """The host resolves, its port answers, and what answers speaks SSH."""
    integ = ctx.remote()
    timeout = min(integ.connect_timeout, _TCP_TIMEOUT)
    wait = min(_BANNER_TIMEOUT, integ.connect_timeout)
    tcp = probe_tcp(integ.host, integ.port, timeout=timeout, banner_timeout=wait)
    if tcp.outcome != "answered":
        return _unreachable(integ, tcp, timeout)
    where = f"{integ.host}:{integ.port} ({tcp.address}) answered in {tcp.millis:.0f} ms"
    if tcp.banner is None:
        return CheckStep(
            "reachable",
            "warn",
            f"{where} but sent no SSH greeting within {wait:g} s",
            "a slow server or a proxy in the way: if the next steps time out, check `port`",
        )
    said = escape_name(tcp.banner[:60])
    if not tcp.banner.startswith("SSH-"):
        return CheckStep(
            "reachable",
            "fail",
            f"{where} but it is not an SSH server: it said {said!r}",
            "SFTP runs over SSH (usually port 22): fix `port` in [integration]",
        )
    return CheckStep("reachable", "pass", f"{where}: {said}")


def _unreachable(integ: Integration, tcp: TCPProbe, timeout: float) -> CheckStep:
    host, where = integ.host, f"{integ.host}:{integ.port}"
    judged = {
        "unresolved": (
            f"cannot resolve host {host!r}: {tcp.reason}",
            f"check `host` in [integration] for typos; from this machine try `getent hosts {host}`; "
            "an internal name may need the company DNS or VPN",
        ),
        "resolve_timeout": (
            f"looking up {host!r} took more than {timeout:g} s",
            "this machine's DNS does not answer: check its resolver (/etc/resolv.conf) or use an IP address",
        ),
        "refused": (
            f"{where} refused the connection: nothing listens on that port",
            "check `port` in [integration] (SFTP is usually 22) and that the SFTP server is running",
        ),
        "timeout": (
            f"{where} did not answer within {timeout:g} s",
            "a firewall is probably dropping the connection: ask the server's owner to allow this "
            "machine's address, and check `host` and `port`",
        ),
    }
    detail, advice = judged.get(
        tcp.outcome,
        (
            f"cannot connect to {where}: {tcp.reason}",
            "check this machine's network route to the server, and `host` and `port` in [integration]",
        ),
    )
    return CheckStep("reachable", "fail", detail, advice)


def host_key(ctx: Rungs) -> CheckStep:
    """The server presents the pinned host key (or one listed in ``known_hosts``)."""
    integ = ctx.remote()
    ctx.need("reachable", "not run: the server is not reachable")
    try:
        probe = ctx.probe = probe_ssh(integ)
    except ConfigError as exc:
        raise Skip(f"not run: {exc}") from None
    pinned = f"the pinned {integ.host_key}" if integ.host_key else f"the keys in {integ.known_hosts}"
    if probe.outcome == "host_key":
        presented = probe.presented or "(none)"
        return CheckStep(
            "host_key",
            "fail",
            f"the server presented {presented}, which is not {pinned}",
            "confirm the fingerprint with the server's owner (by phone or chat, not by e-mail "
            f'from the server); if it really changed, pin it: host_key = "{presented}" in '
            "[integration] (or run `truagents-import trust`). If nobody changed it, do not connect: "
            "the connection may be intercepted",
        )
    if probe.outcome == "network":
        return CheckStep(
            "host_key",
            "fail",
            probe.message,
            "the port answers but the SSH handshake did not finish: check `port`, and whether the "
            "server accepts this machine's address (ask its owner to look at the server's log)",
        )
    if integ.host_key is not None:
        return CheckStep("host_key", "pass", f"the server presented {probe.presented}, the pinned host_key")
    return CheckStep("host_key", "pass", f"the server presented {probe.presented}, listed in {integ.known_hosts}")


def auth(ctx: Rungs) -> CheckStep:
    """The server accepts the integration's key for its user."""
    integ = ctx.remote()
    ctx.need("host_key", "not run: the host key was not verified")
    probe = ctx.probe
    assert probe is not None
    if probe.outcome == "auth":
        return CheckStep(
            "auth",
            "fail",
            f"{integ.username}@{integ.host}:{integ.port} refused the key {integ.private_key} ({probe.client_key})",
            f"check `username` ({integ.username!r}); then have this line added to that user's "
            f"authorized_keys on the server: {integ.authorized_keys_line()}",
        )
    return CheckStep("auth", "pass", f"logged in as {integ.username} with the key {probe.client_key}")
