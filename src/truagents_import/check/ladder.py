"""The triage ladder (SPEC 6 ``check``): why did no contacts arrive?

:func:`run_check` walks the steps an operator would, in order, and stops at the first one that
fails, saying what to do next: ``config``, ``reachable`` (DNS and TCP), ``host_key``, ``auth``,
``folder``, ``files_present`` (with near-miss names when nothing matches), ``freshness``
(against ``expect_every``), ``complete`` (uploads in progress, markers, ``min_age``), ``shape``
(of the newest complete file), ``sample`` (its first rows through the importer's own mapping and
validation), ``state`` and ``sink``. With ``run_all=True`` every step that can run does.

A check never writes contacts and never records anything in the state database. It opens the
sink (and closes it without writing): for the ``sqlite`` sink that creates the database file
when it does not exist yet, exactly as the first import would.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import difflib
import fnmatch
import html
import os
import posixpath
import re
import socket
import sqlite3
import tempfile
import time
import zlib
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

import asyncssh
import attrs

from truagents_import._converter import converter
from truagents_import.config import Config, SinkConfig, StateConfig
from truagents_import.errors import ConfigError, ConnectError, KeyFileError, PluginError
from truagents_import.fields.mapping import ColumnMapping, resolve_mapping
from truagents_import.plugins import Plugins
from truagents_import.reading import Drift, FileRejected, Layout, header_drift, open_rows
from truagents_import.remote.integration import Integration, close_filesystem
from truagents_import.remote.probe import SSHProbe, probe_ssh
from truagents_import.remote.probe import read_banner as _read_banner
from truagents_import.remote.probe import resolve as _resolve
from truagents_import.report import FileResult, ImportReport, escape_name
from truagents_import.source import DataSource, RemoteFile, is_temporary, parse_duration
from truagents_import.state import State, StateStore, open_state

__all__ = [
    "HEAD_BYTES",
    "MARKS",
    "SAMPLE_ROWS",
    "STEP_NAMES",
    "STUCK_AFTER",
    "CheckReport",
    "CheckStep",
    "NearMiss",
    "SSHProbe",
    "StepStatus",
    "check_source",
    "near_misses",
    "probe_ssh",
    "run_check",
]

#: The status of one step: ``skip`` means it did not run (an earlier step failed, or it does
#: not apply, e.g. the connection steps of a source that reads a local folder).
StepStatus = Literal["pass", "warn", "fail", "skip"]

#: The steps, in the order they run (SPEC 6).
STEP_NAMES: tuple[str, ...] = (
    "config",
    "reachable",
    "host_key",
    "auth",
    "folder",
    "files_present",
    "freshness",
    "complete",
    "shape",
    "sample",
    "state",
    "sink",
)

#: One mark per status, for tables.
MARKS: dict[str, str] = {"pass": "✓", "warn": "!", "fail": "✗", "skip": "-"}

#: How many rows of the newest file the ``sample`` step reads.
SAMPLE_ROWS = 1000
#: How much of the newest file is downloaded for ``shape`` and ``sample``.
HEAD_BYTES = 2 << 20
#: A temporary upload name older than this is reported as stuck.
STUCK_AFTER = timedelta(hours=1)
#: Above this share of rejected sample rows the ``sample`` step warns; above FAIL_SHARE it fails.
WARN_SHARE = 0.10
FAIL_SHARE = 0.50

_TCP_TIMEOUT = 5.0
_BANNER_TIMEOUT = 3.0
_HEAD_INFLATED = 4 * HEAD_BYTES
_MAX_FOLDERS = 20
_MAX_LISTED = 5


# -- the report ---------------------------------------------------------------------------------


@attrs.frozen
class CheckStep:
    """One rung of the ladder: what was found (``detail``) and, when it is not a pass, what to do."""

    name: str
    status: StepStatus
    detail: str
    advice: str | None = None

    @property
    def mark(self) -> str:
        """``✓``, ``!``, ``✗`` or ``-``."""
        return MARKS[self.status]

    def to_dict(self) -> dict[str, Any]:
        """``{"name", "status", "detail", "advice"}`` as in SPEC 6."""
        data: dict[str, Any] = converter.unstructure(self)
        return data


@attrs.define
class CheckReport:
    """The outcome of :func:`run_check`: the steps in order and whether they all held."""

    source: str | None
    steps: list[CheckStep] = attrs.field(factory=list)
    #: Seconds the check took (not part of the JSON document).
    elapsed: float = attrs.field(default=0.0, eq=False)

    @property
    def ok(self) -> bool:
        """True when no step failed (warnings allowed)."""
        return not any(s.status == "fail" for s in self.steps)

    @property
    def failed(self) -> CheckStep | None:
        """The first failing step, if any: the one to fix first."""
        return next((s for s in self.steps if s.status == "fail"), None)

    @property
    def exit_status(self) -> int:
        """The command line's exit status: 0 ok, 2 when the ``config`` step failed, else 1."""
        failed = self.failed
        if failed is None:
            return 0
        return 2 if failed.name == "config" else 1

    def step(self, name: str) -> CheckStep:
        """The step called ``name``."""
        for s in self.steps:
            if s.name == name:
                return s
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        """The JSON document of SPEC 6: ``{"source", "ok", "steps": [...]}``."""
        return {"source": self.source, "ok": self.ok, "steps": [s.to_dict() for s in self.steps]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CheckReport:
        """Read a report back from :meth:`to_dict`'s output."""
        return cls(source=data["source"], steps=[converter.structure(s, CheckStep) for s in data["steps"]])

    def _repr_html_(self) -> str:
        rows = "".join(
            "<tr>"
            + "".join(f"<td>{html.escape(v)}</td>" for v in (s.mark, s.name, s.status, s.detail, s.advice or ""))
            + "</tr>"
            for s in self.steps
        )
        head = "".join(f"<th>{h}</th>" for h in ("", "step", "status", "detail", "next"))
        verdict = "ok" if self.ok else f"failed at {self.failed.name if self.failed else '?'}"
        return (
            f"<p><b>check {html.escape(self.source or '')}</b>: {verdict}</p>"
            f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"
        )


# -- small public helpers -----------------------------------------------------------------------


@attrs.frozen
class NearMiss:
    """A name in the folder that almost matches the pattern, and how it differs."""

    name: str
    reason: str


_DATE_PATTERNS = (
    (re.compile(r"(?<!\d)(\d{4})([-_.]?)(\d{2})\2(\d{2})(?!\d)"), ("y", "m", "d")),
    (re.compile(r"(?<!\d)(\d{2})([-_.]?)(\d{2})\2(\d{4})(?!\d)"), ("d", "m", "y")),
    (re.compile(r"(?<!\d)(\d{2})([-_.]?)(\d{2})\2(\d{4})(?!\d)"), ("m", "d", "y")),
)
_DATE_FORMATS = (
    "%Y-%m-%d",
    "%Y%m%d",
    "%Y_%m_%d",
    "%Y.%m.%d",
    "%d-%m-%Y",
    "%d.%m.%Y",
    "%d%m%Y",
    "%d_%m_%Y",
    "%m-%d-%Y",
    "%m%d%Y",
)


def _matcher(pattern: str, *, ignore_case: bool = False) -> Callable[[str], bool]:
    """A file-name test for a source's pattern: a glob, or a regex written ``re:...`` (full match)."""
    if pattern.startswith("re:"):
        regex = re.compile(pattern[3:], re.IGNORECASE if ignore_case else 0)
        return lambda name: regex.fullmatch(name) is not None
    if ignore_case:
        folded = pattern.casefold()
        return lambda name: fnmatch.fnmatchcase(name.casefold(), folded)
    return lambda name: fnmatch.fnmatchcase(name, pattern)


def _other_date_format(name: str, matches: Callable[[str], bool]) -> str | None:
    for regex, order in _DATE_PATTERNS:
        for m in regex.finditer(name):
            parts = dict(zip(order, (m.group(1), m.group(3), m.group(4)), strict=True))
            try:
                day = date(int(parts["y"]), int(parts["m"]), int(parts["d"]))
            except ValueError:
                continue
            for fmt in _DATE_FORMATS:
                candidate = name[: m.start()] + day.strftime(fmt) + name[m.end() :]
                if candidate != name and matches(candidate):
                    return candidate
    return None


def _extensions(pattern: str) -> list[str]:
    """Extensions to try on a name: the glob's own (``.csv`` of ``contacts_*.csv``) and the usual ones."""
    found = []
    tail = posixpath.basename(pattern)
    if not pattern.startswith("re:") and "." in tail:
        ext = tail[tail.rindex(".") :]
        if not any(c in ext for c in "*?["):
            found.append(ext)
    return found + [e for e in (".csv", ".csv.gz", ".txt", ".tsv", ".gz") if e not in found]


def near_misses(names: Sequence[str], pattern: str) -> list[NearMiss]:
    """Names that do not match ``pattern`` (a glob, or ``re:`` and a regex) but nearly do: other
    case, other extension, another date format, or a similar spelling. Hidden and temporary
    names are left out."""
    matches = _matcher(pattern)
    matches_folded = _matcher(pattern, ignore_case=True)
    extensions = _extensions(pattern)
    literal = re.sub(r"^re:|\\[A-Za-z]|\(\?P<\w+>|\[[^\]]*\]|\{[^}]*\}|[*?+()|^$\\]|\d", "", pattern).casefold()
    found: list[NearMiss] = []
    for name in names:
        if is_temporary(name) or matches(name):
            continue
        if matches_folded(name):
            found.append(NearMiss(name, "other case (patterns are case-sensitive)"))
            continue
        dots = [i for i, c in enumerate(name) if c == "." and i > 0]
        other = next((e for i in dots for e in extensions if matches(name[:i] + e)), None)
        if other is not None:
            found.append(NearMiss(name, f"other extension (the pattern wants {other})"))
            continue
        dated = _other_date_format(name, matches)
        if dated is not None:
            found.append(NearMiss(name, f"another date format (the pattern wants names like {dated})"))
            continue
        shape = re.sub(r"\d+", "", name).casefold()
        if literal and difflib.SequenceMatcher(None, literal, shape).ratio() >= 0.75:
            found.append(NearMiss(name, "similar name"))
    return found


# -- formatting ---------------------------------------------------------------------------------


def _age(seconds: float) -> str:
    seconds = max(seconds, 0.0)
    if seconds < 120:
        return f"{seconds:.0f} s"
    minutes = seconds / 60
    if minutes < 120:
        return f"{minutes:.0f} min"
    hours = minutes / 60
    if hours < 48:
        return f"{int(hours)} h {int(minutes % 60)} min"
    return f"{int(hours // 24)} d {int(hours % 24)} h"


def _size(n: int) -> str:
    value = float(n)
    for unit in ("bytes", "KB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{n} bytes" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{n} bytes"  # pragma: no cover - the loop always returns


def _when(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _names(items: Sequence[str], limit: int = _MAX_LISTED) -> str:
    shown = ", ".join(escape_name(i) for i in items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


_SECRET_KEYS = re.compile(r"pass|secret|token|key|credential", re.IGNORECASE)


def _secrets(options: dict[str, Any]) -> Callable[[str], str]:
    """A function that masks the secret values of sink options (passwords in URLs included) in a text."""
    values = set()
    for name, value in options.items():
        if isinstance(value, str) and value:
            if _SECRET_KEYS.search(name):
                values.add(value)
            password = urlsplit(value).password
            if password:
                values.add(password)

    def hide(text: str) -> str:
        for value in sorted(values, key=len, reverse=True):
            text = text.replace(value, "***")
        return text

    return hide


def _redact(value: object) -> str:
    text = str(value)
    parts = urlsplit(text)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return urlunsplit(parts._replace(netloc=netloc))
    return text


# -- the ladder ---------------------------------------------------------------------------------


class _Skip(Exception):
    """A step cannot run because something it needs is missing; the message says what."""


class _NoNotice(Plugins):
    """The same plugins, but ``import_finished`` is not announced: a check is not a run."""

    def import_finished(self, report: ImportReport, source: DataSource) -> list[str]:
        """Do nothing (alerting plugins must not hear about a check's sample)."""
        return []


def _step(name: str, status: StepStatus, detail: str, advice: str | None = None) -> CheckStep:
    return CheckStep(name=name, status=status, detail=detail, advice=advice)


class _Ladder:
    """The state a check carries from step to step."""

    def __init__(
        self,
        source: DataSource,
        *,
        sink: SinkConfig | None,
        state_path: Path | None,
        plugins: Sequence[object],
        spool: Path,
        stack: contextlib.ExitStack,
    ) -> None:
        self.source = source
        self.integration = source.integration
        self.sink = sink
        self.state_path = state_path
        self.plugin_objects = plugins
        self.spool = spool
        self.stack = stack
        self.now = datetime.now(UTC)
        self.results: dict[str, CheckStep] = {}
        self._plugins: Plugins | None = None
        self._plugin_error: PluginError | None = None
        self._state: State | None = None
        self.state_url: str | None = None
        self._state_tried = False
        self.probe: SSHProbe | None = None
        self.listed: DataSource | None = None
        self.entries: list[dict[str, Any]] | None = None
        self.files: list[RemoteFile] | None = None
        self.layout: Layout | None = None
        self.rows: list[list[str] | None] = []
        self.newest_complete: RemoteFile | None = None
        self.whole_file = False
        self.newer_misses: list[NearMiss] = []

    # -- shared resources ---------------------------------------------------------------------

    def plugins(self) -> Plugins:
        if self._plugin_error is not None:
            raise self._plugin_error
        if self._plugins is None:
            try:
                self._plugins = Plugins.build(self.plugin_objects)
            except PluginError as exc:
                self._plugin_error = exc
                raise
        return self._plugins

    def state(self) -> State | None:
        """The state database if it exists and opens (for listing and drift); never created here."""
        if not self._state_tried and self.state_url is not None:
            self._state_tried = True
            with contextlib.suppress(Exception):
                self._state = open_state(StateConfig(url=self.state_url))
                self.stack.callback(self._state.close)
        if not self._state_tried:
            self._state_tried = True
            path = self.state_path
            if path is not None and path.is_file():
                with contextlib.suppress(ConfigError, OSError):
                    self._state = StateStore(path)
                    self.stack.callback(self._state.close)
        return self._state

    def passed(self, name: str) -> bool:
        step = self.results.get(name)
        return step is not None and step.status in ("pass", "warn")

    def need(self, name: str, why: str) -> None:
        if not self.passed(name):
            raise _Skip(why)

    def remote(self) -> Integration:
        if self.integration is None:
            raise _Skip(f"not needed: source {self.source.name!r} reads a local folder (no [integration])")
        return self.integration

    # -- steps --------------------------------------------------------------------------------

    def config(self) -> CheckStep:
        s = self.source
        what = f"source {s.name!r}: folder {s.path!r}, pattern {s.pattern!r}"
        if s.expect_every is not None:
            what += f", a file expected every {s.expect_every}"
        integ = self.integration
        if integ is None:
            return _step("config", "pass", f"{what}; no [integration], so the folder is read locally")
        problems = []
        if not integ.host or any(c.isspace() for c in integ.host):
            problems.append(f"host {integ.host!r} is not a host name")
        if not 0 < integ.port < 65536:
            problems.append(f"port {integ.port} is out of range")
        if problems:
            return _step(
                "config",
                "fail",
                "; ".join(problems),
                "fix `host` and `port` in [integration] (SFTP is usually port 22)",
            )
        try:
            integ.connect_options()
        except KeyFileError as exc:
            return _step(
                "config",
                "fail",
                str(exc),
                "fix the private key named by `private_key` in [integration] as the message says "
                "(`truagents-import keygen` makes a new pair), then run check again",
            )
        except ConfigError as exc:
            return _step(
                "config",
                "fail",
                str(exc),
                'pin the server\'s host key in [integration]: `host_key = "SHA256:..."` (run '
                '`truagents-import trust` to see it) or `known_hosts = "FILE"`',
            )
        return _step("config", "pass", f"{what}; server {integ.username}@{integ.host}:{integ.port}")

    def reachable(self) -> CheckStep:
        integ = self.remote()
        host, port = integ.host, integ.port
        timeout = min(integ.connect_timeout, _TCP_TIMEOUT)
        started = time.monotonic()
        try:
            addresses = _resolve(host, port, timeout)
        except socket.gaierror as exc:
            return _step(
                "reachable",
                "fail",
                f"cannot resolve host {host!r}: {exc.strerror}",
                f"check `host` in [integration] for typos; from this machine try `getent hosts {host}`; "
                "an internal name may need the company DNS or VPN",
            )
        except TimeoutError:
            return _step(
                "reachable",
                "fail",
                f"looking up {host!r} took more than {timeout:g} s",
                "this machine's DNS does not answer: check its resolver (/etc/resolv.conf) or use an IP address",
            )
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
            wait = min(_BANNER_TIMEOUT, integ.connect_timeout)
            with sock:
                banner = _read_banner(sock, wait)
            where = f"{host}:{port} ({sockaddr[0]}) answered in {took:.0f} ms"
            if banner is None:
                return _step(
                    "reachable",
                    "warn",
                    f"{where} but sent no SSH greeting within {wait:g} s",
                    "a slow server or a proxy in the way: if the next steps time out, check `port`",
                )
            if not banner.startswith("SSH-"):
                return _step(
                    "reachable",
                    "fail",
                    f"{where} but it is not an SSH server: it said {escape_name(banner[:60])!r}",
                    "SFTP runs over SSH (usually port 22): fix `port` in [integration]",
                )
            return _step("reachable", "pass", f"{where}: {escape_name(banner[:60])}")
        where = f"{host}:{port}"
        if isinstance(last, ConnectionRefusedError):
            return _step(
                "reachable",
                "fail",
                f"{where} refused the connection: nothing listens on that port",
                "check `port` in [integration] (SFTP is usually 22) and that the SFTP server is running",
            )
        if isinstance(last, TimeoutError):
            return _step(
                "reachable",
                "fail",
                f"{where} did not answer within {timeout:g} s",
                "a firewall is probably dropping the connection: ask the server's owner to allow this "
                "machine's address, and check `host` and `port`",
            )
        reason = (last.strerror if last is not None else None) or str(last)
        return _step(
            "reachable",
            "fail",
            f"cannot connect to {where}: {reason}",
            "check this machine's network route to the server, and `host` and `port` in [integration]",
        )

    def host_key(self) -> CheckStep:
        integ = self.remote()
        self.need("reachable", "not run: the server is not reachable")
        try:
            probe = self.probe = probe_ssh(integ)
        except ConfigError as exc:
            raise _Skip(f"not run: {exc}") from None
        pinned = f"the pinned {integ.host_key}" if integ.host_key else f"the keys in {integ.known_hosts}"
        if probe.outcome == "host_key":
            presented = probe.presented or "(none)"
            return _step(
                "host_key",
                "fail",
                f"the server presented {presented}, which is not {pinned}",
                "confirm the fingerprint with the server's owner (by phone or chat, not by e-mail "
                f'from the server); if it really changed, pin it: host_key = "{presented}" in '
                "[integration] (or run `truagents-import trust`). If nobody changed it, do not connect: "
                "the connection may be intercepted",
            )
        if probe.outcome == "network":
            return _step(
                "host_key",
                "fail",
                probe.message,
                "the port answers but the SSH handshake did not finish: check `port`, and whether the "
                "server accepts this machine's address (ask its owner to look at the server's log)",
            )
        if integ.host_key is not None:
            return _step("host_key", "pass", f"the server presented {probe.presented}, the pinned host_key")
        return _step("host_key", "pass", f"the server presented {probe.presented}, listed in {integ.known_hosts}")

    def auth(self) -> CheckStep:
        integ = self.remote()
        self.need("host_key", "not run: the host key was not verified")
        probe = self.probe
        assert probe is not None
        if probe.outcome == "auth":
            line = integ.authorized_keys_line()
            return _step(
                "auth",
                "fail",
                f"{integ.username}@{integ.host}:{integ.port} refused the key {integ.private_key} ({probe.client_key})",
                f"check `username` ({integ.username!r}); then have this line added to that user's "
                f"authorized_keys on the server: {line}",
            )
        return _step("auth", "pass", f"logged in as {integ.username} with the key {probe.client_key}")

    def folder(self) -> CheckStep:
        source = self.source
        path = source.path
        if self.integration is not None:
            self.need("auth", "not run: not logged in")
            try:
                fs = self.integration.connect()
            except ConnectError as exc:
                return _step(
                    "folder",
                    "fail",
                    f"the SFTP session could not be opened: {exc}",
                    "the key was accepted but SFTP was not: ask the server's owner to enable the SFTP "
                    "subsystem for this user",
                )
            self.stack.callback(close_filesystem, fs)
            self.listed = attrs.evolve(source, integration=None, fs=fs)
        else:
            self.listed = source
        fs = self.listed.filesystem()
        try:
            info = fs.info(path)
        except FileNotFoundError:
            return _step("folder", "fail", f"folder {path!r} does not exist", self._missing_folder_advice(fs, path))
        except PermissionError:
            return _step(
                "folder",
                "fail",
                f"folder {path!r} cannot be read by this user",
                f"ask the server's owner to let {self._user()} list and read {path!r}",
            )
        if info.get("type") != "directory":
            return _step(
                "folder",
                "fail",
                f"{path!r} is a {info.get('type') or 'file'}, not a folder",
                "set `path` in [[sources]] to the folder that holds the files; `pattern` picks the files",
            )
        try:
            entries: list[dict[str, Any]] = fs.ls(path, detail=True)
        except (PermissionError, FileNotFoundError):
            return _step(
                "folder",
                "fail",
                f"folder {path!r} exists but cannot be listed",
                f"ask the server's owner to give {self._user()} permission to list {path!r}",
            )
        self.entries = entries
        n_files = sum(1 for e in entries if e.get("type") == "file")
        n_dirs = sum(1 for e in entries if e.get("type") == "directory")
        return _step("folder", "pass", f"{path} can be listed: {n_files} files, {n_dirs} folders")

    def _user(self) -> str:
        return "this machine's user" if self.integration is None else f"user {self.integration.username!r}"

    def _missing_folder_advice(self, fs: Any, path: str) -> str:
        parent = posixpath.dirname(path.rstrip("/")) or "/"
        advice = "set `path` in [[sources]] to the folder the upstream writes to"
        with contextlib.suppress(OSError, asyncssh.Error):
            folders = [
                posixpath.basename(e["name"].rstrip("/"))
                for e in fs.ls(parent, detail=True)
                if e.get("type") == "directory"
            ]
            close = difflib.get_close_matches(posixpath.basename(path.rstrip("/")), folders, n=3, cutoff=0.6)
            if close:
                advice += f"; {parent} has {_names([posixpath.join(parent, c) for c in close])}: is it one of those?"
            elif folders:
                advice += f"; the folders in {parent} are {_names(sorted(folders))}"
            else:
                advice += f"; {parent} holds no folders"
        return advice + " (paths are as the server shows them after login)"

    def files_present(self) -> CheckStep:
        self.need("folder", "not run: the folder cannot be listed")
        assert self.listed is not None
        assert self.entries is not None
        source = self.source
        files = self.files = self.listed.list_files(self.state(), now=self.now)
        final = [f for f in files if f.state != "ignored"]
        temporary = [f for f in files if f.state == "ignored"]
        if final:
            counts = Counter(f.state for f in final)
            summary = ", ".join(f"{n} {state}" for state, n in sorted(counts.items()))
            newest = max(final, key=lambda f: f.mtime)
            detail = (
                f"{len(final)} file(s) match {source.pattern!r} ({summary}); newest {escape_name(newest.name)}, "
                f"{_size(newest.size)}, {_when(newest.mtime)}"
            )
            newer = [
                posixpath.basename(e["name"])
                for e in self.entries
                if e.get("type") == "file" and _entry_time(e) > newest.mtime
            ]
            misses = self.newer_misses = near_misses(newer, source.pattern)
            if misses:
                shown = "; ".join(f"{escape_name(m.name)}: {m.reason}" for m in misses[:_MAX_LISTED])
                return _step(
                    "files_present",
                    "warn",
                    f"{detail}; but newer files arrived under names that do not match: {shown}",
                    "the upstream may have changed how it names files: ask it to use the agreed name, or fix "
                    "`pattern` in [[sources]]",
                )
            return _step("files_present", "pass", detail)
        if temporary:
            return _step(
                "files_present",
                "warn",
                f"no finished file matches {source.pattern!r} yet; upload(s) in progress: "
                f"{_names([f.name for f in temporary])}",
                "see the `complete` step",
            )
        return self._nothing_matches()

    def _nothing_matches(self) -> CheckStep:
        assert self.listed is not None
        assert self.entries is not None
        source, fs = self.source, self.listed.filesystem()
        names = sorted(posixpath.basename(e["name"]) for e in self.entries if e.get("type") == "file")
        visible = [n for n in names if not is_temporary(n)]
        misses = near_misses(names, source.pattern)
        elsewhere = self._matches_elsewhere(fs)
        if not visible:
            detail = f"folder {source.path} is empty" if not names else f"folder {source.path} holds only hidden files"
        else:
            detail = f"no file in {source.path} matches {source.pattern!r}"
        advice: list[str] = []
        if misses:
            shown = "; ".join(f"{escape_name(m.name)}: {m.reason}" for m in misses[:_MAX_LISTED])
            detail += f"; near misses: {shown}"
            advice.append(
                f"fix `pattern` in [[sources]] or ask the upstream to name its files to match {source.pattern!r}"
            )
        elif visible:
            detail += f"; it holds {_names(visible)}"
        if elsewhere:
            where = "; ".join(f"{folder} ({n} matching)" for folder, n in elsewhere)
            detail += f"; matching files are in {where}"
            advice.append("check `path` in [[sources]]: the upstream delivers to another folder")
        if not advice:
            last = self._last_import()
            advice.append(
                "nothing has been delivered: ask the upstream whether its scheduled export ran and where "
                "it wrote (a batch job can fail before any file reaches the server)"
                + (f"; the last file imported was {last}" if last else "")
            )
            if source.after_import != "leave":
                advice.append(f"files are removed after import (after_import = {source.after_import!r})")
        return _step("files_present", "fail", detail, "; ".join(advice))

    def _matches_elsewhere(self, fs: Any) -> list[tuple[str, int]]:
        """Folders beside and below the source's folder that hold files matching the pattern."""
        assert self.entries is not None
        path = self.source.path.rstrip("/") or "/"
        folders = [e["name"].rstrip("/") for e in self.entries if e.get("type") == "directory"]
        parent = posixpath.dirname(path)
        if path not in ("/", parent):
            with contextlib.suppress(OSError, asyncssh.Error):
                folders += [
                    e["name"].rstrip("/")
                    for e in fs.ls(parent, detail=True)
                    if e.get("type") == "directory" and e["name"].rstrip("/") != path
                ]
        found = []
        matches = _matcher(self.source.pattern)
        for folder in folders[:_MAX_FOLDERS]:
            with contextlib.suppress(OSError, asyncssh.Error):
                names = [posixpath.basename(n) for n in fs.ls(folder, detail=False)]
                hits = [n for n in names if not is_temporary(n) and matches(n)]
                if hits:
                    found.append((escape_name(folder), len(hits)))
        return found

    def _last_import(self) -> str | None:
        state = self.state()
        if state is None:
            return None
        with contextlib.suppress(Exception):
            done = [h for h in state.history(self.source.name) if h.get("status") == "imported"]
            if done:
                return f"{escape_name(str(done[-1]['path']))} at {done[-1]['finished_at']}"
        return None

    def freshness(self) -> CheckStep:
        if not self.files:
            raise _Skip("not run: no file matches the pattern")
        newest = max(self.files, key=lambda f: f.mtime)
        age = (self.now - newest.mtime).total_seconds()
        what = f"the newest file, {escape_name(newest.name)}, was modified {_age(age)} ago ({_when(newest.mtime)})"
        expect = self.source.expect_every
        if age < -60:
            return _step(
                "freshness",
                "warn",
                f"the newest file, {escape_name(newest.name)}, is dated {_when(newest.mtime)}, in the future",
                "the server's clock is ahead of this machine's: ages and min_age are off until it is fixed",
            )
        if expect is None:
            return _step("freshness", "pass", f"{what}; set `expect_every` to have lateness judged")
        every = parse_duration(expect)
        if age > every.total_seconds():
            advice = (
                "the upstream has not delivered on schedule: ask its owner whether the scheduled export "
                "ran (it can fail before any file reaches the server); this step passes once a new file arrives"
            )
            if self.newer_misses:
                names = _names([m.name for m in self.newer_misses])
                advice = (
                    f"newer files did arrive, under names the pattern does not match ({names}, see "
                    "files_present): have the upstream use the agreed name, or fix `pattern` in [[sources]]"
                )
            return _step("freshness", "fail", f"{what}; a new file is expected every {expect}", advice)
        return _step("freshness", "pass", f"{what}; expected every {expect}")

    def complete(self) -> CheckStep:
        if not self.files:
            raise _Skip("not run: no file matches the pattern")
        source = self.source
        newest = max(self.files, key=lambda f: f.mtime)
        temporary = [f for f in self.files if f.state == "ignored"]
        waiting = [f for f in self.files if f.state == "incomplete"]
        stuck = [f for f in temporary if self.now - f.mtime > STUCK_AFTER]
        age = (self.now - newest.mtime).total_seconds()
        name = escape_name(newest.name)
        if newest.state == "ignored":
            if newest in stuck:
                return _step(
                    "complete",
                    "fail",
                    f"the newest delivery, {name}, has kept its temporary name for {_age(age)}: the upload "
                    "stopped before it was renamed into place",
                    "ask the upstream to send the file again (upload under a temporary name, then rename); "
                    "the stuck temporary file can then be deleted",
                )
            return _step(
                "complete",
                "fail",
                f"the newest delivery, {name}, is still being uploaded (temporary name, modified {_age(age)} ago)",
                "wait for the upload to finish (the file is renamed when it is complete) and run check again; "
                "if the name stays, the upload was interrupted: ask the upstream to send it again",
            )
        if newest.state == "incomplete":
            if age < source.min_age:
                return _step(
                    "complete",
                    "fail",
                    f"the newest file, {name}, was modified {_age(age)} ago; files younger than min_age "
                    f"({source.min_age:g} s) are left for the next run",
                    f"wait until it is {source.min_age:g} s old (the upstream may still be writing it) and run "
                    "check again; if the upstream renames files into place when complete, min_age can be lowered",
                )
            marker = (source.ready_marker or "").format(name=newest.name, stem=newest.name.rsplit(".", 1)[0])
            return _step(
                "complete",
                "fail",
                f"the newest file, {name}, is waiting for its ready marker {escape_name(marker)}",
                f"the upstream writes {escape_name(marker)} once the file is complete: ask whether its job "
                "finished; if it never writes markers, remove `ready_marker` from the source",
            )
        notes = []
        if stuck:
            notes.append(f"stuck upload(s) with temporary names: {_names([f.name for f in stuck])}")
        older_waiting = [f for f in waiting if f is not newest]
        if older_waiting:
            notes.append(f"older file(s) still incomplete: {_names([f.name for f in older_waiting])}")
        in_progress = [f for f in temporary if f not in stuck]
        if notes:
            return _step(
                "complete",
                "warn",
                f"the newest file, {name}, is complete, but " + "; ".join(notes),
                "ask the upstream to send the stuck files again; temporary files that will never finish can be deleted",
            )
        extra = f"; {len(in_progress)} upload(s) in progress" if in_progress else ""
        return _step("complete", "pass", f"the newest file, {name}, is complete{extra}")

    def shape(self) -> CheckStep:
        if not self.files:
            raise _Skip("not run: no file matches the pattern")
        complete = [f for f in self.files if f.state in ("new", "changed", "imported")]
        if not complete:
            raise _Skip("not run: no complete file to read")
        assert self.listed is not None
        newest = self.newest_complete = max(complete, key=lambda f: f.mtime)
        name = escape_name(newest.name)
        source = self.source
        rows: list[list[str] | None] = []
        inflated = False
        try:
            head, truncated, inflated = self._download_head(newest)
            with open_rows(
                head,
                encoding=source.encoding,
                delimiter=source.delimiter,
                max_field_size=source.max_field_size,
                max_decompressed_size=source.max_decompressed_size,
            ) as (layout, iterator):
                try:
                    for row in iterator:
                        rows.append(row)
                        if len(rows) > SAMPLE_ROWS:
                            break
                except FileRejected:
                    if not truncated:
                        raise
                    truncated = True
        except FileRejected as exc:
            return _step("shape", "fail", f"{name}: {exc.message}", _SHAPE_ADVICE.get(exc.code, _SHAPE_DEFAULT))
        if truncated and len(rows) <= SAMPLE_ROWS and rows:
            rows.pop()  # cut by the download: it may be partial
        self.whole_file = not truncated and len(rows) <= SAMPLE_ROWS
        self.layout, self.rows = layout, rows[:SAMPLE_ROWS]
        header = layout.header
        blank = [i + 1 for i, h in enumerate(header) if not h]
        if blank:
            return _step(
                "shape",
                "fail",
                f"{name}: header column(s) {blank} have no name",
                "ask the upstream to name every column in the header row",
            )
        dupes = sorted(h for h, n in Counter(header).items() if n > 1)
        if dupes:
            return _step(
                "shape",
                "fail",
                f"{name}: header names appear more than once: {_names(dupes)}",
                "ask the upstream to give every column its own name",
            )
        try:
            mapping = self._mapping(header, newest.path)
        except PluginError as exc:
            return _step("shape", "fail", str(exc), _PLUGIN_ADVICE)
        gzipped = layout.compression is not None or inflated
        form = f"{layout.encoding}, {'gzip, ' if gzipped else ''}delimiter {layout.delimiter!r}"
        if not mapping.has_identity:
            return _step(
                "shape",
                "fail",
                f"{name} ({form}): no column maps to external_id, email or phone; columns: {_names(header, 12)}",
                self._identity_advice(header),
            )
        identity = next(f for f in ("external_id", "email", "phone") if f in mapping.fields)
        mapped = sum(1 for t in mapping.by_column.values() if not t.startswith("attributes."))
        detail = (
            f"{name} ({form}): {len(header)} columns, identity from {header[mapping.fields[identity]]!r} "
            f"({identity}); {mapped} mapped to fields, {len(mapping.attributes)} kept as attributes"
        )
        drift = self._drift(header)
        if drift is not None:
            detail += f"; {drift.describe()}"
            advice = (
                "if the upstream changed its export on purpose, map renamed columns in [sources.mapping]; "
                "otherwise ask it why the columns changed"
            )
            if getattr(self.source, "on_drift", "warn") == "reject":
                return _step("shape", "fail", f"{detail}; on_drift = 'reject' rejects this file", advice)
            return _step("shape", "warn", detail, advice)
        if mapping.warnings:
            return _step(
                "shape",
                "warn",
                f"{detail}; {'; '.join(mapping.warnings)}",
                "map the intended column explicitly in [sources.mapping]",
            )
        return _step("shape", "pass", detail)

    def _mapping(self, header: list[str], file: str) -> ColumnMapping:
        plugins = self.plugins()
        return resolve_mapping(header, plugins.map_columns(header, self.source, file), self.source.mapping)

    def _identity_advice(self, header: list[str]) -> str:
        guesses = _guess_identity(header, [r for r in self.rows[:50] if r is not None])
        advice = "name one of the columns like 'email', 'phone' or 'external id', or map it in [sources.mapping]"
        if guesses:
            lines = ", ".join(f'"{escape_name(c)}" = "{f}"' for c, f in guesses)
            advice += f"; the values suggest: {lines}"
        return advice

    def _drift(self, header: list[str]) -> Drift | None:
        state = self.state()
        if state is None:
            return None
        try:
            last = state.last_header(self.source.name)
        except Exception:  # a broken state database is the `state` step's business
            return None
        return header_drift(last, header)

    def _download_head(self, file: RemoteFile) -> tuple[Path, bool, bool]:
        """The first HEAD_BYTES of a file, in the spool: ``(path, truncated, inflated here)``.

        A cut gzip stream cannot be read to its end, so it is inflated here (bounded) and the
        text is cut at its last complete line; a cut text file is cut at its last line end.
        """
        assert self.listed is not None
        fs = self.listed.filesystem()
        kwargs = {"block_size": 261120} if self.integration is not None else {}
        with fs.open(file.path, "rb", **kwargs) as src:
            data = src.read(HEAD_BYTES + 1)
        truncated = len(data) > HEAD_BYTES
        inflated = False
        if truncated:
            data = data[:HEAD_BYTES]
            if data.startswith(b"\x1f\x8b"):
                try:
                    data = zlib.decompressobj(wbits=31).decompress(data, _HEAD_INFLATED)
                except zlib.error as exc:
                    raise FileRejected("undecodable", f"cannot be decompressed: {exc}") from None
                inflated = True
            data = _cut_at_line(data)
        local = self.spool / "head"
        local.write_bytes(data)
        return local, truncated, inflated

    def sample(self) -> CheckStep:
        self.need("shape", "not run: the shape of the newest file is not known")
        assert self.layout is not None
        assert self.newest_complete is not None
        rows = self.rows
        name = escape_name(self.newest_complete.name)
        if not rows:
            return _step(
                "sample",
                "warn",
                f"{name} has a header but no data rows",
                "ask the upstream whether its export selected nothing (an empty result still writes a header)",
            )
        result = self._dry_run(self.layout.header, rows)
        oversize = sum(1 for r in rows if r is None)
        total = result.rows + oversize
        rejected = result.rejected + oversize
        codes = Counter(p.code for p in result.problems)
        if oversize:
            codes["field_too_large"] += oversize
        share = rejected / total if total else 0.0
        rows_read = f"{total} rows" if self.whole_file else f"the first {total} rows"
        detail = f"{rejected} of {rows_read} of {name} would be rejected ({share:.0%})"
        if result.duplicates:
            detail += f", {result.duplicates} duplicates"
        if result.status != "imported":
            return _step("sample", "fail", f"{name}: {result.reason}", _PLUGIN_ADVICE)
        if codes:
            top = ", ".join(f"{code} {n}" for code, n in codes.most_common(3))
            detail += f"; problems: {top}"
            first = next((p for p in result.problems if p.code == codes.most_common(1)[0][0]), None)
            if first is not None:
                where = f"row {first.row}" + (f", column {escape_name(first.column)!r}" if first.column else "")
                detail += f" (e.g. {where}: {first.message})"
        if share > FAIL_SHARE:
            return _step("sample", "fail", detail, self._sample_advice(codes))
        if share > WARN_SHARE:
            return _step("sample", "warn", detail, self._sample_advice(codes))
        return _step("sample", "pass", detail)

    def _dry_run(self, header: list[str], rows: list[list[str] | None]) -> FileResult:
        """Run the sample rows through the importer itself (mapping, normalisers, validators)."""
        from fsspec.implementations.local import LocalFileSystem

        from truagents_import.pipeline.importer import Importer
        from truagents_import.sinks.memory import MemorySink

        folder = self.spool / "sample"
        folder.mkdir()
        file = folder / "sample.csv"
        with file.open("w", encoding="utf-8", newline="") as out:
            writer = csv.writer(out)
            writer.writerow(header)
            writer.writerows(r for r in rows if r is not None)
        local = attrs.evolve(
            self.source,
            path=str(folder),
            pattern="sample.csv",
            integration=None,
            fs=LocalFileSystem(),
            min_age=0.0,
            ready_marker=None,
            after_import="leave",
            encoding="utf-8",
            delimiter=",",
        )
        plugins = self.plugins()
        quiet = _NoNotice(plugins.pm, plugins.sinks, plugins.distributions, plugins.kinds, plugins.blocked)
        importer = Importer(local, MemorySink(), state=StateStore(":memory:"), plugin_set=quiet)
        try:
            report = importer.run(files=[str(file)], dry_run=True, force=True)
        finally:
            importer.state.close()
        [result] = report.files
        return result

    def _sample_advice(self, codes: Counter[str]) -> str:
        top = codes.most_common(1)[0][0] if codes else ""
        region = self.source.default_region
        specific = {
            "invalid_email": "the column mapped to email holds something else, or the export garbles addresses: "
            "check the mapping in the shape step",
            "invalid_phone": "phone numbers without a country code are read with default_region "
            f"({region or 'not set'}): set `default_region` for the source, or check the phone column's mapping",
            "invalid_timezone": "time zones must be IANA names like America/New_York",
            "invalid_unsubscribed": "unsubscribed takes true/false, yes/no, y/n or 1/0",
            "ragged_row": "rows have another number of fields than the header: the delimiter or quoting of "
            "the export is wrong",
            "missing_identity": "rows have no external_id, email or phone: ask the upstream to fill one of them",
            "field_too_large": "a field is larger than max_field_size: the quoting of the export is broken",
        }.get(top, "the rows fail the validators (a plugin's, if the code is not a built-in one)")
        return (
            f"{specific}; to see every rejected row: `truagents-import import --dry-run --rejects DIR` "
            f"(--source {self.source.name})"
        )

    def state_step(self) -> CheckStep:
        if self.state_url is not None:
            store = self.state()
            if store is None:
                try:
                    open_state(StateConfig(url=self.state_url)).close()
                except Exception as exc:
                    return _step(
                        "state", "fail", f"the PostgreSQL state database cannot be opened: {exc}", _STATE_ADVICE
                    )
                return _step("state", "fail", "the PostgreSQL state database cannot be opened", _STATE_ADVICE)
            recorded = len(store.history(self.source.name))
            return _step("state", "pass", f"PostgreSQL state database reachable; {recorded} attempts recorded")
        path = self.state_path
        if path is None:
            raise _Skip("not run: no state database is configured for this check")
        if path.exists():
            store = self.state()
            try:
                if store is None:  # it did not open quietly: open it again for the reason
                    store = self._state = StateStore(path)
                    self.stack.callback(store.close)
                history = store.history(self.source.name)
            except (ConfigError, OSError, sqlite3.Error) as exc:
                reason = str(exc) if isinstance(exc, ConfigError) else f"{path} cannot be read: {exc}"
                return _step("state", "fail", reason, _STATE_ADVICE)
            for target in (path, path.parent):
                if not _writable(target):
                    return _step("state", "fail", f"{target} is not writable by this user", _STATE_ADVICE)
            done = [h for h in history if h.get("status") == "imported"]
            last = (
                f"; last import: {escape_name(str(done[-1]['path']))} at {done[-1]['finished_at']}"
                if done
                else "; nothing imported from this source yet"
            )
            return _step("state", "pass", f"{path} opens: {len(history)} file attempt(s) recorded{last}")
        ancestor = path.parent
        while not ancestor.exists() and ancestor != ancestor.parent:
            ancestor = ancestor.parent
        if not ancestor.is_dir():
            return _step(
                "state",
                "fail",
                f"{path} cannot be created: {ancestor} is a file, not a folder",
                _STATE_ADVICE,
            )
        if not _writable(ancestor):
            return _step(
                "state",
                "fail",
                f"{path} cannot be created: {ancestor} is not writable by this user",
                _STATE_ADVICE,
            )
        return _step("state", "pass", f"{path} does not exist yet; the first import creates it")

    def sink_step(self) -> CheckStep:
        sink_config = self.sink
        if sink_config is None:
            raise _Skip("not run: no sink is configured for this check")
        kind = sink_config.type
        try:
            plugins = self.plugins()
        except PluginError as exc:
            return _step("sink", "fail", str(exc), _PLUGIN_ADVICE)
        advice = (
            f"fix [sink] in the configuration: the {kind!r} sink must open from this machine (a folder that "
            "exists or can be created and is writable, or a database server that is up and accepts the "
            "credentials)"
        )
        hide = _secrets(sink_config.options)
        try:
            sink = plugins.make_sink(kind, sink_config.options)
        except ConfigError as exc:
            return _step("sink", "fail", hide(str(exc)), advice)
        except Exception as exc:
            reason = hide(f"{type(exc).__name__}: {exc}")
            return _step("sink", "fail", f"the {kind!r} sink cannot be opened: {reason}", advice)
        upserts = hasattr(sink, "merge")
        try:
            sink.close()
        except Exception as exc:
            return _step("sink", "fail", hide(f"the {kind!r} sink opened but failed to close: {exc}"), advice)
        policy = getattr(self.source, "merge", None)
        if policy is not None and not upserts:
            detail = f"the source sets merge = {policy!r}, but the {kind!r} sink does not upsert (no merge policy)"
            fix = "remove merge from the source, or use an upserting sink (sqlite, postgres); imports stop with exit 2"
            return _step("sink", "fail", detail, fix)
        where = next((_redact(sink_config.options[k]) for k in ("path", "url") if k in sink_config.options), None)
        return _step("sink", "pass", f"the {kind!r} sink opens and closes" + (f" ({where})" if where else ""))


_SHAPE_DEFAULT = "ask the upstream to send a CSV file with a header row"
_SHAPE_ADVICE = {
    "undecodable": "the file is not UTF-8, UTF-16 with a BOM or Windows-1252 text: ask the upstream to export "
    "CSV as UTF-8, or set `encoding` for the source if you know it",
    "not_csv": "the upstream sends something other than CSV text (a workbook, an archive): ask it to export CSV",
    "empty": "the upstream's export wrote an empty file: ask it whether the export job failed",
    "no_header": "the first line must be the header row: ask the upstream to include it",
    "malformed_csv": "the quoting of the export is broken: ask the upstream to fix it",
    "too_large": "the file decompresses to more than max_decompressed_size: raise it for the source if the "
    "file is genuine",
}
_PLUGIN_ADVICE = (
    "a plugin failed: fix or update it, or block it with TRUAGENTS_IMPORT_BLOCK_PLUGINS=NAME "
    "(`truagents-import plugins` lists them)"
)
_STATE_ADVICE = (
    "set [state] path to a file in a folder this user can create and write, or fix the permissions; "
    "a damaged state file can be moved aside (files are then imported again, and upserts keep that harmless)"
)

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_PHONE = re.compile(r"^\+?[\d\s().\-]{7,20}$")


def _guess_identity(header: list[str], rows: list[list[str]]) -> list[tuple[str, str]]:
    """Columns whose values look like e-mail addresses or phone numbers."""
    guesses: list[tuple[str, str]] = []
    for index, column in enumerate(header):
        values = [r[index].strip() for r in rows if index < len(r) and r[index].strip()]
        if not values:
            continue
        for field, regex in (("email", _EMAIL), ("phone", _PHONE)):
            if sum(1 for v in values if regex.match(v)) * 2 > len(values):
                guesses.append((column, field))
                break
    return guesses[:3]


def _entry_time(entry: dict[str, Any]) -> datetime:
    value = entry.get("mtime")
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, tz=UTC)
    return datetime.fromtimestamp(0, tz=UTC)


def _writable(path: Path) -> bool:
    return os.access(path, os.W_OK | (os.X_OK if path.is_dir() else 0))


def _cut_at_line(data: bytes) -> bytes:
    """Cut a truncated download at its last line end (gzip data is left as it is)."""
    if data.startswith(b"\x1f\x8b"):
        return data
    if data.startswith(codecs.BOM_UTF16_LE):
        end = data.rfind(b"\n\x00")
        while end > 0 and end % 2:
            end = data.rfind(b"\n\x00", 0, end)
        return data[: end + 2] if end > 0 else data
    if data.startswith(codecs.BOM_UTF16_BE):
        end = data.rfind(b"\x00\n")
        while end > 0 and end % 2:
            end = data.rfind(b"\x00\n", 0, end)
        return data[: end + 2] if end > 0 else data
    end = data.rfind(b"\n")
    return data[: end + 1] if end > 0 else data


# -- running ------------------------------------------------------------------------------------

_STEPS: tuple[tuple[str, Callable[[_Ladder], CheckStep]], ...] = (
    ("config", _Ladder.config),
    ("reachable", _Ladder.reachable),
    ("host_key", _Ladder.host_key),
    ("auth", _Ladder.auth),
    ("folder", _Ladder.folder),
    ("files_present", _Ladder.files_present),
    ("freshness", _Ladder.freshness),
    ("complete", _Ladder.complete),
    ("shape", _Ladder.shape),
    ("sample", _Ladder.sample),
    ("state", _Ladder.state_step),
    ("sink", _Ladder.sink_step),
)


def _unexpected(name: str, exc: BaseException) -> CheckStep:
    if isinstance(exc, OSError | asyncssh.Error):
        reason = getattr(exc, "strerror", None) or getattr(exc, "reason", None) or str(exc)
        return _step(
            name,
            "fail",
            f"{type(exc).__name__}: {reason}",
            "the server or the network failed during the check: run it again; if this repeats, check the server's log",
        )
    return _step(
        name,
        "fail",
        f"unexpected error: {type(exc).__name__}: {exc}",
        "run check with --all to see the other steps, and report this error with the output",
    )


def check_source(
    source: DataSource,
    *,
    sink: SinkConfig | None = None,
    state: Path | str | None = None,
    run_all: bool = False,
    plugins: Sequence[object] = (),
) -> CheckReport:
    """Run the ladder for one data source (``sink`` and ``state`` as in a configuration's
    ``[sink]`` and ``[state]``; without them those steps are skipped). See :func:`run_check`."""
    started = time.monotonic()
    report = CheckReport(source=source.name)
    with contextlib.ExitStack() as stack:
        spool = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="truagents-check-")))
        ladder = _Ladder(
            source,
            sink=sink,
            state_path=None if state is None or _is_url(state) else Path(state),
            plugins=plugins,
            spool=spool,
            stack=stack,
        )
        if state is not None and _is_url(state):
            ladder.state_url = str(state)
        failed: str | None = None
        for name, run in _STEPS:
            if failed is not None and not run_all:
                step = _step(name, "skip", f"not run: {failed} failed")
            else:
                try:
                    step = run(ladder)
                except _Skip as skip:
                    step = _step(name, "skip", str(skip))
                except Exception as exc:
                    step = _unexpected(name, exc)
            ladder.results[name] = step
            report.steps.append(step)
            if step.status == "fail" and failed is None:
                failed = name
                if name == "config" and run_all:
                    run_all = False  # nothing further can be trusted without a configuration
    report.elapsed = time.monotonic() - started
    return report


def _fail_config(source_name: str | None, message: str, advice: str) -> CheckReport:
    steps = [_step("config", "fail", message, advice)]
    steps += [_step(name, "skip", "not run: config failed") for name in STEP_NAMES[1:]]
    return CheckReport(source=source_name, steps=steps)


def run_check(
    config: Config,
    source_name: str | None = None,
    *,
    run_all: bool = False,
    plugins: Sequence[object] = (),
) -> CheckReport:
    """Walk the triage ladder for one source of a configuration and report each step.

    Stops at the first failing step (the later ones are ``skip``) unless ``run_all``, which runs
    every step that can run. Every step that does not pass says what to do next. Nothing is
    imported and the state database is not written; connections opened here are closed here.
    ``plugins`` are registered besides the built-ins and installed entry points, as for an importer.
    """
    try:
        source = config.source(source_name)
    except ConfigError as exc:
        return _fail_config(
            source_name,
            str(exc),
            "name one of the configured sources with --source, or add a [[sources]] table with name, path and pattern",
        )
    state = config.state.url or config.state.path
    return check_source(source, sink=config.sink, state=state, run_all=run_all, plugins=plugins)


def _is_url(value: Path | str) -> bool:
    return isinstance(value, str) and value.startswith(("postgresql://", "postgres://"))
