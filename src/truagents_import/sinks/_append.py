"""What the append-only file sinks (``jsonl``, ``csv``) share: one writer, fsync on commit,
truncate on rollback, and recovery after a crash.

A hidden marker beside the file (``.NAME.committed``) records how far the file is committed.
Reopening after a crash cuts off what the interrupted file had written past that point, so the
next run appends those contacts once.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from truagents_import.errors import ConfigError

try:
    import fcntl
except ImportError:  # pragma: no cover - not a POSIX system
    fcntl = None  # type: ignore[assignment]

__all__ = ["AppendLog"]


class AppendLog:
    """An append-only file with commit, rollback and crash recovery; subclasses say what a line is."""

    #: Used in messages: ``"csv sink"``, ``"jsonl sink"``.
    kind = "file sink"

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        #: Records how far the file is committed, so that a crashed run's lines are cut off on reopening.
        self.marker = self.path.with_name(f".{self.path.name}.committed")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = self.path.open("a+b")
        except OSError as exc:
            msg = f"{self.kind} {self.path} cannot be opened: {exc}; choose a path in a writable folder"
            raise ConfigError(msg) from None
        try:
            self._lock()
            self._recover()
            if self._file.seek(0, os.SEEK_END) == 0:
                self._start_empty_file()
            else:
                self._check_existing_file()
            self._committed = self._file.tell()
            self._sync()
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
        self._file.write(data)

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

    def _recover(self) -> None:
        """Cut off lines a crashed run wrote after its last commit (the marker says where that was)."""
        try:
            mark = json.loads(self.marker.read_text(encoding="utf-8"))
            size, inode = int(mark["size"]), int(mark["inode"])
        except (OSError, ValueError, KeyError, TypeError):
            return
        stat = os.fstat(self._file.fileno())
        if inode == stat.st_ino and 0 < size < stat.st_size:
            self._file.truncate(size)

    def _sync(self) -> None:
        """fsync the lines, then record (atomically, durably) how far the file is committed."""
        self._file.flush()
        os.fsync(self._file.fileno())
        mark = {"size": self._committed, "inode": os.fstat(self._file.fileno()).st_ino}
        partial = self.marker.with_name(self.marker.name + ".tmp")
        with partial.open("w", encoding="utf-8") as f:
            f.write(json.dumps(mark))
            f.flush()
            os.fsync(f.fileno())
        os.replace(partial, self.marker)
        folder = os.open(self.marker.parent, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)

    def commit(self) -> None:
        """Flush and fsync: after this the lines survive a crash."""
        self._file.flush()
        self._committed = self._file.tell()
        self._sync()

    def rollback(self) -> None:
        """Drop every line written since the last commit."""
        self._file.flush()
        self._file.truncate(self._committed)
        self._file.seek(self._committed)

    def close(self) -> None:
        """Close the file (lines not committed are dropped)."""
        if not self._file.closed:
            self.rollback()
            self._file.close()
