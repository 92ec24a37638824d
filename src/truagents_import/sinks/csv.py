"""The ``csv`` sink: one row per contact, appended to a CSV file that spreadsheets open safely."""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import attrs

from truagents_import.contact import Contact
from truagents_import.errors import ConfigError
from truagents_import.hookspecs import SinkFactory, hookimpl

try:
    import fcntl
except ImportError:  # pragma: no cover - not a POSIX system
    fcntl = None  # type: ignore[assignment]

__all__ = ["CSV_HEADER", "CSVSink", "neutralise_cell"]

#: The columns of the file, in order: the fields of :class:`Contact`, as :meth:`Contact.to_dict` names them.
CSV_HEADER: tuple[str, ...] = tuple(field.name for field in attrs.fields(Contact))

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def neutralise_cell(value: str) -> str:
    """A cell a spreadsheet would run as a formula (``= + - @``, tab, CR first) gets a leading apostrophe."""
    return "'" + value if value.startswith(_FORMULA_START) else value


def _cells(c: Contact) -> list[str]:
    unsubscribed = "" if c.unsubscribed is None else ("true" if c.unsubscribed else "false")
    values = [
        c.external_id or "",
        c.email or "",
        c.phone or "",
        c.first_name or "",
        c.last_name or "",
        c.timezone or "",
        ";".join(c.tags),
        unsubscribed,
        json.dumps(dict(c.attributes), ensure_ascii=False),
        c.source or "",
        c.source_file or "",
        "" if c.source_row is None else str(c.source_row),
    ]
    return [neutralise_cell(v) for v in values]


def _encode(rows: Sequence[Sequence[str]]) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerows(rows)
    return buffer.getvalue().encode("utf-8")


class CSVSink:
    """Appends contacts to a UTF-8 CSV file with a header row; ``commit`` fsyncs, ``rollback``
    truncates back to the last commit.

    Tags are joined with ``;``, attributes are a JSON object, ``unsubscribed`` is ``true``,
    ``false`` or empty. Every cell that starts with ``=``, ``+``, ``-``, ``@``, a tab or a
    carriage return gets a leading apostrophe (so ``+14155550100`` is written
    ``'+14155550100``), as in the rejects files. Like ``jsonl`` it is a log: a contact imported
    twice appears twice.

    A hidden marker beside the file (``.NAME.committed``) records how far it is committed:
    reopening after a crash cuts off the rows of the file that was being written, so the next
    run appends them once. One importer writes a file at a time (an exclusive ``flock``).
    """

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        #: Records how far the file is committed, so that a crashed run's rows are cut off on reopening.
        self.marker = self.path.with_name(f".{self.path.name}.committed")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = self.path.open("a+b")
        except OSError as exc:
            msg = f"csv sink {self.path} cannot be opened: {exc}; choose a path in a writable folder"
            raise ConfigError(msg) from None
        try:
            self._lock()
            self._recover()
            if self._file.seek(0, os.SEEK_END) == 0:
                self._file.write(_encode([CSV_HEADER]))
            else:
                self._check_header()
            self._committed = self._file.tell()
            self._sync()
        except OSError as exc:
            self._file.close()
            msg = f"csv sink {self.path} cannot be written: {exc}; check the folder's permissions and free space"
            raise ConfigError(msg) from None
        except BaseException:
            self._file.close()
            raise

    def _lock(self) -> None:
        """One writer per file: rows of two importers would interleave, and recovery would cut the other's."""
        if fcntl is None:  # pragma: no cover - not a POSIX system
            return
        try:
            fcntl.flock(self._file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            msg = (
                f"csv sink {self.path} is being written by another importer; give each worker its own path, "
                "or use the postgres sink for many workers"
            )
            raise ConfigError(msg) from None

    def _recover(self) -> None:
        """Cut off rows a crashed run wrote after its last commit (the marker says where that was)."""
        try:
            mark = json.loads(self.marker.read_text(encoding="utf-8"))
            size, inode = int(mark["size"]), int(mark["inode"])
        except (OSError, ValueError, KeyError, TypeError):
            return
        stat = os.fstat(self._file.fileno())
        if inode == stat.st_ino and 0 < size < stat.st_size:
            self._file.truncate(size)

    def _sync(self) -> None:
        """fsync the rows, then record (atomically, durably) how far the file is committed."""
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

    def _check_header(self) -> None:
        self._file.seek(0)
        first = self._file.readline().decode("utf-8", errors="replace")
        self._file.seek(0, os.SEEK_END)
        found = next(csv.reader([first]), [])
        if tuple(found) != CSV_HEADER:
            msg = (
                f"csv sink {self.path} already holds a file with another header ({', '.join(found[:6])}...); "
                "point path at a new file or move the old one away"
            )
            raise ConfigError(msg)

    def __repr__(self) -> str:
        return f"CSVSink({str(self.path)!r})"

    def write(self, contacts: Sequence[Contact]) -> None:
        """Append a batch (durable on commit)."""
        self._file.write(_encode([_cells(c) for c in contacts]))

    def commit(self) -> None:
        """Flush and fsync: after this the rows survive a crash."""
        self._file.flush()
        self._committed = self._file.tell()
        self._sync()

    def rollback(self) -> None:
        """Drop every row written since the last commit."""
        self._file.flush()
        self._file.truncate(self._committed)
        self._file.seek(self._committed)

    def close(self) -> None:
        """Close the file (rows not committed are dropped)."""
        if not self._file.closed:
            self.rollback()
            self._file.close()


@hookimpl
def register_sinks(register: Callable[[str, SinkFactory], None]) -> None:
    """Offer the ``csv`` sink (option: ``path``)."""
    register("csv", CSVSink)
