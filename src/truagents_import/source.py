"""DataSource: one recurring feed (folder + pattern + options) and its files."""

from __future__ import annotations

import codecs
import errno
import hashlib
import os
import posixpath
import re
from collections.abc import Callable, Iterator, Sequence, Set
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import attrs

from truagents_import._safety import escape_name
from truagents_import._text import TEMPORARY_SUFFIXES, is_temporary, listed_time, name_matches, parse_duration
from truagents_import.errors import ConfigError
from truagents_import.manifest import (
    MAX_MANIFEST_BYTES,
    Manifest,
    manifest_name,
    parse_manifest,
    template_suffix,
    validate_template,
)
from truagents_import.pipeline.preview import Preview, preview_file
from truagents_import.pipeline.read import read_contacts
from truagents_import.plugins import Plugins
from truagents_import.remote.integration import Integration
from truagents_import.remote.sftp import SFTP_BLOCK_SIZE

if TYPE_CHECKING:
    from truagents_import.check.report import CheckReport
    from truagents_import.fields.contact import Contact
    from truagents_import.state import State

__all__ = [
    "FEEDBACK_SUFFIXES",
    "TEMPORARY_SUFFIXES",
    "DataSource",
    "FileState",
    "RemoteFile",
    "is_temporary",
    "parse_duration",
]

#: Endings of the files a source's feedback writes (SPEC 10): never data, never listed.
FEEDBACK_SUFFIXES = (".result.json", ".rejects.csv")

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


def _validate_manifest(_: object, attribute: attrs.Attribute[str | None], value: str | None) -> None:
    if value is not None:
        validate_template(value)


def _validate_feedback(_: object, attribute: attrs.Attribute[str | None], value: str | None) -> None:
    if value is not None and (not value.strip() or not value.isprintable() or "\\" in value):
        msg = (
            f"feedback must be a folder on the server, such as 'results' (relative to path) or '/outbox', got {value!r}"
        )
        raise ValueError(msg)


def _validate_owner(_: object, attribute: attrs.Attribute[str | None], value: str | None) -> None:
    if value is not None and (not value.strip() or not value.isprintable()):
        msg = f"owner must name a team or an address, such as 'crm-team@example.com', got {value!r}"
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
    #: The most columns a file's header may have; a wider one rejects the file (``too_many_columns``).
    max_columns: int = 5000
    #: The export layout of this source's files (SPEC 9): ``"auto"`` recognises it from each
    #: file's header, a layout's name forces that one, ``"none"`` turns layouts off.
    layout: str = "auto"
    #: Read a phone number without ``+`` in the region of the row's country column first (SPEC 9).
    phone_region_from_country: bool = True
    #: Who delivers this source's files (a team or an address): ``check``'s advice, ``ls`` and the
    #: result files name them as the one to ask when deliveries stop or break.
    owner: str | None = attrs.field(default=None, validator=_validate_owner)
    #: A folder on the server (relative to ``path`` unless absolute) where each file's result and
    #: rejected rows are written back for the people who upload (SPEC 10); None writes nothing.
    feedback: str | None = attrs.field(default=None, validator=_validate_feedback)
    #: The delivery manifest each file waits for (SPEC 10), e.g. ``"{name}.manifest.json"`` or
    #: ``"{name}.sha256"``; None: files need no manifest.
    manifest: str | None = attrs.field(default=None, validator=_validate_manifest)
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
        return manifest_name(self.ready_marker, name)

    def manifest_for(self, name: str) -> str | None:
        """The name of the manifest a file waits for (``manifest`` filled in), if the source has one."""
        return None if self.manifest is None else manifest_name(self.manifest, name)

    def feedback_folder(self) -> str | None:
        """The folder results are written back to (``feedback`` beside ``path`` unless absolute), if any."""
        if self.feedback is None:
            return None
        return posixpath.normpath(posixpath.join(self.path, self.feedback))

    def archive_folder(self) -> str | None:
        """The folder imported files are moved to (``after_import = "move:<dir>"``), if any."""
        if not self.after_import.startswith("move:"):
            return None
        return posixpath.normpath(posixpath.join(self.path, self.after_import.removeprefix("move:")))

    def is_sidecar(self, name: str, names: Set[str] = frozenset()) -> bool:
        """Whether a name is one of the files that travel beside the data, never data itself: a ready
        marker, a manifest (by its ending, or made from another name in ``names``), or, when the
        source gives feedback, a result or rejects file; also while uploading under a temporary name."""
        if is_temporary(name):
            name = _strip_temporary(name)
        if self.feedback is not None and name.endswith(FEEDBACK_SUFFIXES):
            return True
        for template in (self.ready_marker, self.manifest):
            if template is None:
                continue
            suffix = template_suffix(template)
            if suffix is not None and name.endswith(suffix):
                return True
            if any(manifest_name(template, other) == name for other in names if other != name):
                return True
        return False

    def list_files(self, state: State | None = None, *, now: datetime | None = None) -> list[RemoteFile]:
        """The files in the folder that match the pattern, oldest first, with their state.

        Files named like uploads in progress are listed as ``ignored``; files younger than
        ``min_age``, or waiting for their ``ready_marker`` or ``manifest``, as ``incomplete``.
        Ready markers, manifests and feedback files are never listed. With a state store, files
        already imported are ``imported`` and files whose size or time changed since are ``changed``.
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
                final = _strip_temporary(name)
                if self.matches(final) and not self.is_sidecar(name, names):
                    files.append(RemoteFile(path, size, mtime, "ignored", "upload in progress (temporary name)"))
                continue
            if not self.matches(name) or self.is_sidecar(name, names):
                continue
            file_state: FileState = "new"
            note = self._waiting_for(name, names, (now - mtime).total_seconds())
            if note is not None:
                file_state = "incomplete"
            elif state is not None:
                file_state = state.file_state(self.name, path, size, mtime)
            files.append(RemoteFile(path, size, mtime, file_state, note))
        files.sort(key=lambda f: (self._date_key(f.name), f.mtime, f.path))
        return files

    def _waiting_for(self, name: str, names: Set[str], age: float) -> str | None:
        """Why a file is not complete yet (too young, no ready marker, no manifest), or None."""
        marker, manifest = self.ready_marker_for(name), self.manifest_for(name)
        if age < self.min_age:
            return f"modified {age:.0f} s ago; min_age is {self.min_age:g} s"
        if marker is not None and marker not in names:
            return f"waiting for ready marker {marker}"
        if manifest is not None and manifest not in names:
            return f"waiting for manifest {manifest}"
        return None

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
            return f"no file matching the pattern has arrived; one is expected every {self.expect_every}"
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
        kwargs = {"block_size": SFTP_BLOCK_SIZE} if self.integration is not None else {}
        done = 0
        with fs.open(path, "rb", **kwargs) as src, dest.open("wb") as out:
            while chunk := src.read(_READ_CHUNK):
                digest.update(chunk)
                out.write(chunk)
                done += len(chunk)
                if progress is not None:
                    progress(done)
        return digest.hexdigest()

    def read_manifest(self, file: RemoteFile | str) -> Manifest | None:
        """The manifest of a file, read from beside it (None when the source names no manifest).

        Raises :class:`~truagents_import.errors.FileRejected` (``manifest_invalid``) when it is too
        large or neither JSON nor ``sha256sum`` output, and ``FileNotFoundError`` when it is gone.
        """
        path = file.path if isinstance(file, RemoteFile) else file
        name = posixpath.basename(path)
        wanted = self.manifest_for(name)
        if wanted is None:
            return None
        where = posixpath.join(posixpath.dirname(path) or self.path, wanted)
        with self.filesystem().open(where, "rb") as f:
            data = f.read(MAX_MANIFEST_BYTES + 1)
        return parse_manifest(data, wanted, name)

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
        """Delete a remote file (``after_import = "delete"``); a file already gone is left at that."""
        try:
            self.filesystem().rm_file(path)
        except FileNotFoundError:
            return

    def move(self, path: str, folder: str, *, sha256: str | None = None) -> str:
        """Move a remote file into a folder with an atomic rename (``after_import = "move:<dir>"``) and
        return where it went. A file there is never replaced: when the folder already holds one of
        that name (an earlier delivery), this one is named by its content, ``contacts.<sha256[:12]>.csv``
        (``sha256`` of the file), or else by the time it was moved."""
        fs = self.filesystem()
        target_dir = folder if folder.startswith("/") else posixpath.join(self.path, folder)
        fs.makedirs(target_dir, exist_ok=True)
        for name in _archive_names(posixpath.basename(path), sha256):
            target = posixpath.join(target_dir, name)
            try:
                self._rename_no_replace(path, target)
            except Exception:
                if fs.exists(path) and fs.exists(target):
                    continue  # that name is taken: try the next one
                raise
            return target
        msg = f"{target_dir} already holds files named like {posixpath.basename(path)} under every name tried"
        raise FileExistsError(msg)

    def _rename_no_replace(self, path: str, target: str) -> None:
        from fsspec.implementations.local import LocalFileSystem

        fs = self.filesystem()
        if self.integration is not None:
            from truagents_import.remote.sftp import rename_no_replace

            rename_no_replace(fs, path, target)
        elif isinstance(fs, LocalFileSystem):
            try:  # a hard link never replaces its target; the rename that follows cannot race another
                os.link(path, target)
            except OSError as exc:
                if exc.errno == errno.EEXIST:
                    raise
                if os.path.lexists(target):  # no hard links on this disk: look, then rename
                    raise FileExistsError(errno.EEXIST, "file exists", target) from None
                os.rename(path, target)
            else:
                os.unlink(path)
        else:
            if fs.exists(target):
                raise FileExistsError(errno.EEXIST, "file exists", target)
            fs.mv(path, target)


def _archive_names(name: str, sha256: str | None) -> Iterator[str]:
    """The names an archived file may take, in order: its own, then by content, then by content and time."""
    yield name
    stem, ext = posixpath.splitext(name)
    if ext.lower() == ".gz":  # contacts.csv.gz -> contacts.<tag>.csv.gz
        stem, inner = posixpath.splitext(stem)
        ext = inner + ext
    tag = (sha256 or "")[:12]
    if tag:
        yield f"{stem}.{tag}{ext}"
    now = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    for n in range(100):
        yield f"{stem}.{'.'.join(filter(None, [tag, now, str(n) if n else '']))}{ext}"


def _strip_temporary(name: str) -> str:
    name = name.lstrip(".")
    lower = name.lower()
    for suffix in TEMPORARY_SUFFIXES:
        if lower.endswith(suffix):
            return name[: -len(suffix)]
    return name
