"""DataSource: one recurring feed (folder + pattern + options) and its files."""

from __future__ import annotations

import codecs
import hashlib
import posixpath
import re
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import attrs

from truagents_import._safety import escape_name
from truagents_import._text import TEMPORARY_SUFFIXES, is_temporary, listed_time, name_matches, parse_duration
from truagents_import.errors import ConfigError
from truagents_import.pipeline.preview import Preview, preview_file
from truagents_import.pipeline.read import read_contacts
from truagents_import.plugins import Plugins
from truagents_import.remote.integration import Integration

if TYPE_CHECKING:
    from truagents_import.check.report import CheckReport
    from truagents_import.fields.contact import Contact
    from truagents_import.state import State

__all__ = ["TEMPORARY_SUFFIXES", "DataSource", "FileState", "RemoteFile", "is_temporary", "parse_duration"]

#: The state of a remote file as ``ls`` shows it.
FileState = Literal["new", "imported", "changed", "incomplete", "ignored"]

_AFTER_IMPORT = re.compile(r"^(leave|delete|move:.+)$")
#: Bytes per read when downloading. Each read is split into pipelined SFTP requests of 255 KiB;
#: 2 MiB was as fast as 8 MiB from OpenSSH on 127.0.0.1 (a 121 MB file in ~0.45 s either way) and
#: holds ~20 MB less in memory while the file downloads.
_READ_CHUNK = 2 << 20


@attrs.frozen
class RemoteFile:
    """One file on the server as listed: path, size, modification time and state."""

    path: str
    size: int
    mtime: datetime
    state: FileState = "new"
    #: Why the file has its state, when that needs saying (``incomplete``, ``ignored``).
    note: str | None = None

    @property
    def name(self) -> str:
        """The file's name without its folder."""
        return posixpath.basename(self.path)

    def __str__(self) -> str:
        return escape_name(self.path)


def _validate_after_import(_: object, attribute: attrs.Attribute[str], value: str) -> None:
    if not _AFTER_IMPORT.match(value):
        msg = f"after_import must be 'leave', 'delete' or 'move:<folder>', got {value!r}"
        raise ValueError(msg)


def _validate_on_invalid(_: object, attribute: attrs.Attribute[str], value: str) -> None:
    if value not in ("reject", "drop_field"):
        msg = f"on_invalid must be 'reject' or 'drop_field', got {value!r}"
        raise ValueError(msg)


def _validate_on_drift(_: object, attribute: attrs.Attribute[str], value: str) -> None:
    if value not in ("warn", "reject"):
        msg = f"on_drift must be 'warn' or 'reject', got {value!r}"
        raise ValueError(msg)


def _validate_merge(_: object, attribute: attrs.Attribute[str | None], value: str | None) -> None:
    if value is not None and value not in ("merge", "replace"):
        msg = f"merge must be 'merge' or 'replace' (or left out: the sink's own policy), got {value!r}"
        raise ValueError(msg)


def _validate_expect_every(_: object, attribute: attrs.Attribute[str | None], value: str | None) -> None:
    if value is not None:
        parse_duration(value)


def _validate_encoding(_: object, attribute: attrs.Attribute[str | None], value: str | None) -> None:
    if value is not None:
        try:
            codecs.lookup(value)
        except LookupError:
            msg = f"encoding must be a Python codec name such as 'utf-8' or 'cp1252', got {value!r}"
            raise ValueError(msg) from None


def _validate_delimiter(_: object, attribute: attrs.Attribute[str | None], value: str | None) -> None:
    if value is not None and (len(value) != 1 or value in '"\r\n'):
        msg = f"delimiter must be one character such as ',', ';', '\\t' or '|', got {value!r}"
        raise ValueError(msg)


def _validate_pattern(_: object, attribute: attrs.Attribute[str], value: str) -> None:
    if value.startswith("re:"):
        try:
            re.compile(value[3:])
        except re.error as exc:
            msg = f"pattern must be a glob or a valid regex after 're:': {exc}"
            raise ValueError(msg) from None


@attrs.define
class DataSource:
    """One recurring feed on an integration (SPEC 2, configured by ``[[sources]]``).

    Without an integration, ``fs`` names any fsspec filesystem (a local folder by default),
    which is how notebooks and tests point a source at files on disk.
    """

    name: str
    path: str
    #: A glob (``contacts_*.csv``) or a regex after ``re:``; a named group ``date`` orders the files.
    pattern: str = attrs.field(default="*.csv", validator=_validate_pattern)
    mapping: dict[str, str] = attrs.field(factory=dict)
    default_region: str | None = None
    default_timezone: str | None = None
    infer_timezone: bool = False
    expect_every: str | None = attrs.field(default=None, validator=_validate_expect_every)
    min_age: float = 60.0
    ready_marker: str | None = None
    after_import: str = attrs.field(default="leave", validator=_validate_after_import)
    on_invalid: str = attrs.field(default="reject", validator=_validate_on_invalid)
    #: What a header that differs from the last imported file's does: ``warn`` or ``reject``.
    on_drift: str = attrs.field(default="warn", validator=_validate_on_drift)
    #: How this source's contacts update ones already in an upserting sink (``sqlite``, ``postgres``):
    #: ``"merge"`` or ``"replace"``; ``None`` leaves it to the sink's own ``merge`` option.
    merge: str | None = attrs.field(default=None, validator=_validate_merge)
    encoding: str | None = attrs.field(default=None, validator=_validate_encoding)
    delimiter: str | None = attrs.field(default=None, validator=_validate_delimiter)
    max_field_size: int = 1 << 20
    max_decompressed_size: int = 4 << 30
    #: The export layout of this source's files (SPEC 9): ``"auto"`` recognises it from each
    #: file's header, a layout's name forces that one, ``"none"`` turns layouts off.
    layout: str = "auto"
    #: Read a phone number without ``+`` in the region of the row's country column first (SPEC 9).
    phone_region_from_country: bool = True
    integration: Integration | None = attrs.field(default=None, repr=False, eq=False)
    fs: Any = attrs.field(default=None, repr=False, eq=False)

    def filesystem(self) -> Any:
        """The fsspec filesystem the files are on: the integration's, ``fs``, or the local disk."""
        if self.integration is not None:
            return self.integration.fs
        if self.fs is None:
            from fsspec.implementations.local import LocalFileSystem

            self.fs = LocalFileSystem()
        return self.fs

    def refresh(self) -> list[RemoteFile]:
        """Reconnect (a dropped connection is never reused) and list the files again."""
        if self.integration is not None:
            self.integration.reconnect()
        return self.list_files()

    def _entries(self) -> list[dict[str, Any]]:
        fs = self.filesystem()
        try:
            entries: list[dict[str, Any]] = fs.ls(self.path, detail=True)
        except FileNotFoundError:
            msg = f"source {self.name!r}: folder {self.path!r} does not exist on the server"
            raise ConfigError(msg) from None
        return entries

    def ready_marker_for(self, name: str) -> str | None:
        """The name of the ready marker a file waits for (``ready_marker`` filled in), if the source has one."""
        if self.ready_marker is None:
            return None
        stem = name.rsplit(".", 1)[0]
        return self.ready_marker.format(name=name, stem=stem)

    def _is_marker(self, name: str, names: set[str]) -> bool:
        """Whether a file is a ready marker (of a file present, or by its marker suffix)."""
        if self.ready_marker is None:
            return False
        suffix = self.ready_marker.replace("{name}", "").replace("{stem}", "")
        if self.ready_marker.startswith(("{name}", "{stem}")) and suffix and name.endswith(suffix):
            return True
        return any(self.ready_marker_for(other) == name for other in names if other != name)

    def list_files(self, state: State | None = None, *, now: datetime | None = None) -> list[RemoteFile]:
        """The files in the folder that match the pattern, oldest first, with their state.

        Files named like uploads in progress are listed as ``ignored``; files younger than
        ``min_age`` or waiting for their ``ready_marker`` as ``incomplete``. With a state
        store, files already imported are ``imported`` and files whose size or time changed
        since are ``changed``.
        """
        now = now or datetime.now(UTC)
        entries = [e for e in self._entries() if e.get("type") == "file"]
        names = {posixpath.basename(e["name"]) for e in entries}
        files: list[RemoteFile] = []
        for e in entries:
            name = posixpath.basename(e["name"])
            path = posixpath.join(self.path, name)
            mtime = listed_time(e)
            size = int(e.get("size") or 0)
            if is_temporary(name):
                if self.matches(_strip_temporary(name)):
                    files.append(RemoteFile(path, size, mtime, "ignored", "upload in progress (temporary name)"))
                continue
            if not self.matches(name):
                continue
            if self._is_marker(name, names):
                continue
            marker = self.ready_marker_for(name)
            file_state: FileState = "new"
            note = None
            age = (now - mtime).total_seconds()
            if age < self.min_age:
                file_state, note = "incomplete", f"modified {age:.0f} s ago; min_age is {self.min_age:g} s"
            elif marker is not None and marker not in names:
                file_state, note = "incomplete", f"waiting for ready marker {marker}"
            elif state is not None:
                file_state = state.file_state(self.name, path, size, mtime)
            files.append(RemoteFile(path, size, mtime, file_state, note))
        files.sort(key=lambda f: (self._date_key(f.name), f.mtime, f.path))
        return files

    def _regex(self) -> re.Pattern[str] | None:
        if not self.pattern.startswith("re:"):
            return None
        return re.compile(self.pattern[3:])

    def matches(self, name: str) -> bool:
        """Whether a file name matches the pattern: a glob, or a regex written ``re:...``."""
        return name_matches(self.pattern, name)

    def _date_key(self, name: str) -> str:
        regex = self._regex()
        if regex is None or "date" not in regex.groupindex:
            return ""
        m = regex.fullmatch(name)
        value = m.group("date") if m else None
        if not value:
            return ""
        for fmt in ("%Y-%m-%d", "%Y%m%d", "%Y_%m_%d", "%Y-%m-%dT%H%M%S", "%Y%m%d%H%M%S", "%d-%m-%Y", "%d.%m.%Y"):
            try:
                return datetime.strptime(value, fmt).isoformat()
            except ValueError:
                continue
        return value

    def overdue(self, files: list[RemoteFile], now: datetime | None = None) -> str | None:
        """A message when ``expect_every`` is set and the newest file is older than that, else None."""
        if self.expect_every is None:
            return None
        limit = parse_duration(self.expect_every)
        now = now or datetime.now(UTC)
        arrived = [f for f in files if f.state != "ignored"]
        if not arrived:
            return f"no file has arrived; one is expected every {self.expect_every}"
        newest = max(f.mtime for f in arrived)
        age = now - newest
        if age <= limit:
            return None
        hours = age.total_seconds() / 3600
        return (
            f"the newest file arrived {hours:.1f} h ago ({newest:%Y-%m-%d %H:%M} UTC) but one is expected every "
            f"{self.expect_every}: check the upstream export job"
        )

    def download(self, file: RemoteFile | str, dest: Path, progress: Callable[[int], None] | None = None) -> str:
        """Copy a remote file to a local path, returning its sha256; large reads, never line by line.

        ``progress`` is called with the bytes copied so far after each read.
        """
        path = file.path if isinstance(file, RemoteFile) else file
        fs = self.filesystem()
        digest = hashlib.sha256()
        kwargs = {"block_size": 261120} if self.integration is not None else {}
        done = 0
        with fs.open(path, "rb", **kwargs) as src, dest.open("wb") as out:
            while chunk := src.read(_READ_CHUNK):
                digest.update(chunk)
                out.write(chunk)
                done += len(chunk)
                if progress is not None:
                    progress(done)
        return digest.hexdigest()

    def read(self, file: RemoteFile | str, plugins: Sequence[object] = ()) -> list[Contact]:
        """Map and validate one file and return its valid contacts (the later duplicate wins).

        Nothing is written anywhere: no sink, no state, and ``after_import`` is not applied.
        """
        return read_contacts(self, file, plugins=Plugins.build(plugins))

    def preview(self, file: RemoteFile | str, *, rows: int = 10, sample: int = 1000) -> Preview:
        """A quick look at one file: encoding, delimiter, header, mapping, first rows, sample validity."""
        return preview_file(self, file, plugins=Plugins.build(), rows=rows, sample=sample)

    def check(self, *, run_all: bool = False, plugins: Sequence[object] = ()) -> CheckReport:
        """Walk the triage ladder for this source (without a sink or state: those steps skip).

        See :func:`truagents_import.check.run_check` for a whole configuration.
        """
        from truagents_import.check.ladder import check_source

        return check_source(self, run_all=run_all, plugins=plugins)

    def remove(self, path: str) -> None:
        """Delete a remote file (``after_import = "delete"``)."""
        self.filesystem().rm_file(path)

    def move(self, path: str, folder: str) -> str:
        """Move a remote file into a folder with an atomic rename (``after_import = "move:<dir>"``)."""
        fs = self.filesystem()
        target_dir = folder if folder.startswith("/") else posixpath.join(self.path, folder)
        fs.makedirs(target_dir, exist_ok=True)
        target = posixpath.join(target_dir, posixpath.basename(path))
        if self.integration is not None:
            from truagents_import.remote.integration import posix_rename

            posix_rename(fs, path, target)
        else:
            fs.mv(path, target)
        return target


def _strip_temporary(name: str) -> str:
    name = name.lstrip(".")
    lower = name.lower()
    for suffix in TEMPORARY_SUFFIXES:
        if lower.endswith(suffix):
            return name[: -len(suffix)]
    return name
