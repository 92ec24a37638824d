"""What the append-only file sinks (``jsonl``, ``csv``) share: one writer, fsync on commit,
truncate on rollback, recovery after a crash, and a ledger of the files committed.

A hidden ledger beside the file (``.NAME.committed``) gets one JSON line per commit, appended and
fsynced after the commit's own lines are: how long the file is once committed, its inode, and
which file the commit belongs to (the source, the sha256 of the file's content and its path).
Reopening after a crash cuts off what an interrupted file had written past the last commit; and
the importer asks the ledger (:class:`~truagents_import.sinks.FileLedger`) whether a file it is
about to write is there already, committed by a run killed before the state database recorded
it. Together: a re-run after a kill anywhere leaves each contact in the file once.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any, NoReturn

from truagents_import._local import disk_full, is_disk_full
from truagents_import.errors import ConfigError

try:
    import fcntl
except ImportError:  # pragma: no cover - not a POSIX system
    fcntl = None  # type: ignore[assignment]

__all__ = ["AppendLog"]


class AppendLog:
    """An append-only file with commit, rollback, crash recovery and a ledger of the files committed;
    subclasses say what a line is."""

    #: Used in messages: ``"csv sink"``, ``"jsonl sink"``.
    kind = "file sink"

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        #: The ledger: one JSON line per commit (how far the file is committed, and which file it was).
        self.marker = self.path.with_name(f".{self.path.name}.committed")
        #: ``(source, sha256)`` of every file committed to this file, as the ledger says.
        self._files: set[tuple[str, str]] = set()
        #: The file the next commit belongs to (:meth:`begin_file`), as the ledger line's fields.
        self._next: dict[str, str] | None = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # Unbuffered: a write that fails (a full disk) leaves no bytes behind to reach the file later.
            self._file = self.path.open("a+b", buffering=0)
        except OSError as exc:
            msg = f"{self.kind} {self.path} cannot be opened: {exc}; choose a path in a writable folder"
            raise ConfigError(msg) from None
        try:
            self._lock()
            self._inode = os.fstat(self._file.fileno()).st_ino
            entries, clean = self._read_ledger()
            self._recover(entries)
            if self._file.seek(0, os.SEEK_END) == 0:
                self._start_empty_file()
            else:
                self._check_existing_file()
            self._committed = self._file.tell()
            os.fsync(self._file.fileno())
            self._open_ledger(entries, clean=clean)
        except OSError as exc:
            self._file.close()
            msg = f"{self.kind} {self.path} cannot be written: {exc}; check the folder's permissions and free space"
            raise ConfigError(msg) from None
        except BaseException:
            self._file.close()
            raise

    def _start_empty_file(self) -> None:
        """Write what a new file begins with (a header row, for example)."""

    def _check_existing_file(self) -> None:
        """Refuse a file this sink cannot append to (another header, for example)."""

    def _append(self, data: bytes) -> None:
        """Write ``data`` at the end of the file (durable on :meth:`commit`)."""
        try:
            view = memoryview(data)
            while view:
                view = view[self._file.write(view) or 0 :]
        except OSError as exc:
            self._fail(exc)

    def _fail(self, exc: OSError) -> NoReturn:
        """Drop what was written since the last commit, then raise (a full disk as the library's error)."""
        with contextlib.suppress(OSError):
            self.rollback()
        if is_disk_full(exc):
            raise disk_full(self.kind, self.path, exc) from None
        raise exc

    def _lock(self) -> None:
        """One writer per file: lines of two importers would interleave, and recovery would cut the other's."""
        if fcntl is None:  # pragma: no cover - not a POSIX system
            return
        try:
            fcntl.flock(self._file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            msg = (
                f"{self.kind} {self.path} is being written by another importer; give each worker its own path, "
                "or use the postgres sink for many workers"
            )
            raise ConfigError(msg) from None

    # -- the ledger ---------------------------------------------------------------------------

    def _read_ledger(self) -> tuple[list[dict[str, Any]], bool]:
        """The ledger's entries about the file as it is now (its inode), and whether the ledger is clean:
        not missing, not torn by a crash while a line was written, not about a file since replaced.

        A ledger of an earlier version (one JSON object, no newline) reads as one entry, not clean.
        """
        try:
            data = self.marker.read_bytes()
        except FileNotFoundError:
            return [], False
        entries: list[dict[str, Any]] = []
        clean = data.endswith(b"\n")
        for line in data.splitlines():
            try:
                entry = json.loads(line)
                inode = int(entry["inode"])
                int(entry["size"])
            except (ValueError, KeyError, TypeError):
                clean = False  # a line torn by a crash
                continue
            if inode == self._inode:
                entries.append(entry)
            else:
                clean = False  # about a file that has since been replaced
        return entries, clean

    def _recover(self, entries: list[dict[str, Any]]) -> None:
        """Cut off lines a crashed run wrote after its last commit (the last ledger entry says where that was)."""
        if not entries:
            return  # no ledger for this file: all of it counts as committed
        size = int(entries[-1]["size"])
        if size < os.fstat(self._file.fileno()).st_size:
            self._file.truncate(size)
        self._files = {(e["source"], e["sha256"]) for e in entries if "sha256" in e and "source" in e}

    def _open_ledger(self, entries: list[dict[str, Any]], *, clean: bool) -> None:
        """Make the ledger end with this file's committed length (rewritten whole, atomically, when not clean)."""
        mark = {"size": self._committed, "inode": self._inode}
        if not clean:
            lines = entries + ([] if entries and entries[-1]["size"] == self._committed else [mark])
            partial = self.marker.with_name(self.marker.name + ".tmp")
            with partial.open("wb") as f:
                f.write(b"".join(_line(e) for e in lines))
                f.flush()
                os.fsync(f.fileno())
            os.replace(partial, self.marker)
            _sync_folder(self.marker.parent)
        self._ledger = self.marker.open("ab", buffering=0)
        self._ledger_size = self._ledger.seek(0, os.SEEK_END)
        if clean and entries[-1]["size"] != self._committed:
            self._add_entry(mark)

    def _add_entry(self, entry: dict[str, Any]) -> None:
        """Append one line to the ledger and fsync it; on failure, cut the ledger back to what it was."""
        data = _line(entry)
        try:
            written = 0
            while written < len(data):
                written += self._ledger.write(data[written:]) or 0
            os.fsync(self._ledger.fileno())
        except OSError:
            with contextlib.suppress(OSError):
                self._ledger.truncate(self._ledger_size)
            raise
        self._ledger_size += len(data)

    def holds(self, source: str, sha256: str) -> bool:
        """Whether a commit of ``source``'s content ``sha256`` is in this file (its ledger says so)."""
        return (source, sha256) in self._files

    def begin_file(self, source: str, sha256: str, path: str) -> None:
        """Name the file the next :meth:`commit` belongs to (recorded in the ledger with it)."""
        self._next = {"source": source, "sha256": sha256, "file": path}

    # -- transactions ---------------------------------------------------------------------------

    def commit(self) -> None:
        """fsync the lines, then record in the ledger how far the file is committed and for which file:
        after this the lines survive a crash, and a re-run does not write that file again."""
        try:
            os.fsync(self._file.fileno())
            committed = self._file.tell()
            self._add_entry({"size": committed, "inode": self._inode} | (self._next or {}))
        except OSError as exc:
            self._fail(exc)
        self._committed = committed
        if self._next is not None:
            self._files.add((self._next["source"], self._next["sha256"]))
        self._next = None

    def rollback(self) -> None:
        """Drop every line written since the last commit."""
        self._next = None
        self._file.truncate(self._committed)
        self._file.seek(self._committed)

    def close(self) -> None:
        """Close the file (lines not committed are dropped)."""
        if not self._file.closed:
            try:
                self.rollback()
            finally:
                self._file.close()
                ledger = getattr(self, "_ledger", None)
                if ledger is not None:
                    ledger.close()


def _line(entry: dict[str, Any]) -> bytes:
    return json.dumps(entry, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"


def _sync_folder(folder: Path) -> None:
    """fsync a folder, so that a file just renamed into it survives a crash."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
