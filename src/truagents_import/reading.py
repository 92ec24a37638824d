"""Bytes -> rows: decompression, encoding and delimiter detection, limits.

Reading works on a local spool file (the importer downloads each remote file once, hashing
it on the way), so a file is never held in memory and never parsed over the network.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import io
import re
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, BinaryIO

import attrs

from truagents_import.errors import FileRejected

__all__ = ["DELIMITERS", "Drift", "FileRejected", "Shape", "header_drift", "open_binary", "open_rows", "sniff"]

#: Delimiters that are detected, in order of preference on a tie.
DELIMITERS = (",", ";", "\t", "|")
_SAMPLE = 64 * 1024
_GZIP_MAGIC = b"\x1f\x8b"
_NON_ASCII = re.compile(rb"[\x80-\xff]")


@attrs.frozen
class Shape:
    """What was detected about a file: compression, encoding, delimiter, header and preamble (its shape)."""

    compression: str | None
    encoding: str
    delimiter: str
    header: list[str]
    #: Lines before the header (SPEC 9: a ``Notes:`` block); rows still count from 1 after it.
    preamble_lines: int = 0


class _LimitedReader(io.RawIOBase):
    """Counts decompressed bytes and refuses to go past a limit (a guard against gzip bombs)."""

    def __init__(self, inner: IO[bytes] | gzip.GzipFile, limit: int) -> None:
        self._inner = inner
        self._left = limit
        self._limit = limit

    def readable(self) -> bool:
        return True

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        data = self._inner.read(len(b))
        self._left -= len(data)
        if self._left < 0:
            msg = f"decompressed size exceeds max_decompressed_size ({self._limit} bytes)"
            raise FileRejected("too_large", msg)
        n = len(data)
        b[:n] = data
        return n


@contextmanager
def open_binary(path: Path, max_decompressed_size: int) -> Iterator[tuple[BinaryIO, str | None]]:
    """The file's bytes, decompressed when it is gzip (never past ``max_decompressed_size``: then
    :class:`FileRejected`), and its compression (``"gzip"`` or ``None``)."""
    with path.open("rb") as raw:
        magic = raw.read(2)
        raw.seek(0)
        if magic == _GZIP_MAGIC:
            with gzip.GzipFile(fileobj=raw, mode="rb") as gz:
                limited = io.BufferedReader(_LimitedReader(gz, max_decompressed_size), buffer_size=1 << 20)
                yield limited, "gzip"
        else:
            yield raw, None


def _detect_encoding(sample: bytes) -> str:
    if sample.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if sample.startswith((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)):
        raise FileRejected("unsupported_encoding", "the file is UTF-32 (by its BOM); save it as UTF-8 or UTF-16")
    if sample.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    if sample.startswith(b"PK\x03\x04"):
        raise FileRejected("not_csv", "this is a ZIP archive (an Excel .xlsx workbook?), not a CSV text file")
    if b"\x00" in sample:
        raise FileRejected("not_csv", "binary data (NUL bytes) found: not a CSV text file, or UTF-16 without a BOM")
    try:
        codecs.getincrementaldecoder("utf-8")().decode(sample, final=False)
    except UnicodeDecodeError:
        pass
    else:
        return "utf-8"
    try:
        sample.decode("cp1252")
    except UnicodeDecodeError as exc:
        msg = f"cannot be decoded as UTF-8, UTF-16 or Windows-1252 (byte 0x{sample[exc.start]:02x} at {exc.start})"
        raise FileRejected("undecodable", msg) from None
    return "cp1252"


def _detect_delimiter(text: str) -> str:
    lines = text.splitlines()[:20]
    if not lines:
        return ","
    best, best_score = ",", 1
    for delimiter in DELIMITERS:
        records = list(csv.reader(lines, delimiter=delimiter))
        if not records:
            continue
        width = len(records[0])
        if width < 2:
            # A preamble line first (SPEC 9): judge by the width most lines after it share.
            widths = Counter(len(r) for r in records[1:] if len(r) >= 2)
            if not widths:
                continue
            width = widths.most_common(1)[0][0]
        consistent = sum(1 for r in records[1:] if len(r) == width)
        score = width * (1 + consistent)
        if score > best_score:
            best, best_score = delimiter, score
    return best


def sniff(
    path: Path,
    *,
    encoding: str | None = None,
    delimiter: str | None = None,
    max_decompressed_size: int = 1 << 34,
) -> tuple[str | None, str, str]:
    """Detect compression, encoding and delimiter from the start of a file."""
    with open_binary(path, max_decompressed_size) as (f, compression):
        try:
            sample = f.read(_SAMPLE)
            probe = sample
            if encoding is None and sample.isascii():
                # The start is plain ASCII: find the first non-ASCII bytes, which tell
                # UTF-8 from Windows-1252 for the whole file.
                while (chunk := f.read(1 << 20)) and chunk.isascii():
                    pass
                first = _NON_ASCII.search(chunk)
                if first is not None:
                    probe = sample + chunk[first.start() : first.start() + _SAMPLE]
        except (OSError, EOFError) as exc:
            raise FileRejected("undecodable", f"cannot be decompressed: {exc}") from None
    if not sample.strip():
        raise FileRejected("empty", "the file is empty")
    enc = encoding or _detect_encoding(probe)
    if delimiter is None:
        text = codecs.getincrementaldecoder(enc)(errors="replace").decode(sample, final=False)
        delimiter = _detect_delimiter(text)
    return compression, enc, delimiter


class _Lines:
    """Physical lines for csv, each at most ``cap`` characters: memory stays bounded.

    A longer line is cut off (its rest is discarded) and flagged, so the row it belongs to is
    rejected. Quote parity since the start of the current record is tracked so that, after csv
    gives up on an oversized quoted field, the rest of that record can be skipped.
    """

    def __init__(self, text: io.TextIOWrapper, cap: int) -> None:
        self._readline = text.readline
        self._cap = cap
        self.oversized = False
        self.odd_quotes = False
        self.skip_record = False
        self.lines_in_record = 0
        self.eof = False

    def new_record(self) -> None:
        self.oversized = False
        self.odd_quotes = False
        self.lines_in_record = 0

    def __iter__(self) -> Iterator[str]:
        readline, cap = self._readline, self._cap
        while True:
            line = readline(cap)
            if not line:
                self.eof = True
                return
            self.lines_in_record += 1
            if len(line) == cap and not line.endswith(("\n", "\r")) and not self.skip_record:
                # A line too long to hold: drop it, and the rest of its record (by quote
                # parity), then end the record for csv so that the row is rejected as one.
                inside_quotes = self.odd_quotes
                odd = inside_quotes ^ bool(line.count('"') & 1)
                while rest := readline(cap):
                    if rest.count('"') & 1:
                        odd = not odd
                    if rest.endswith(("\n", "\r")) and not odd:
                        break
                self.oversized = True
                self.odd_quotes = False
                line = '"\n' if inside_quotes else "\n"
            elif '"' in line and line.count('"') & 1:
                self.odd_quotes = not self.odd_quotes
            if self.skip_record:
                # csv gave up inside a quoted field: drop lines until that field's quote closes.
                if not self.odd_quotes:
                    self.skip_record = False
                continue
            yield line


@contextmanager
def open_rows(
    path: Path,
    *,
    encoding: str | None = None,
    delimiter: str | None = None,
    max_field_size: int = 1 << 20,
    max_decompressed_size: int = 1 << 34,
    is_header: Callable[[list[str]], bool] | None = None,
) -> Iterator[tuple[Shape, Iterator[list[str] | None]]]:
    """Open a CSV file and yield its layout and an iterator of its data rows (blank lines skipped).

    A row holding a field larger than ``max_field_size`` characters (or a line longer than
    that) comes out as ``None``: the caller rejects that row and reading goes on, in memory
    bounded by ``max_field_size``.

    ``is_header`` finds a header after preamble lines (SPEC 9): when the first line is not one,
    the first of the first :data:`PREAMBLE_LINES` lines it accepts is the header, and the lines
    before it are the preamble (``Shape.preamble_lines``); when none is, the first line is.

    Raises :class:`FileRejected` for an empty, undecodable or header-less file, and while
    iterating when decoding fails part-way.
    """
    compression, enc, delim = sniff(
        path, encoding=encoding, delimiter=delimiter, max_decompressed_size=max_decompressed_size
    )
    previous_limit = csv.field_size_limit(max_field_size)
    try:
        with open_binary(path, max_decompressed_size) as (raw, _):
            text = io.TextIOWrapper(raw, encoding=enc, newline="")
            lines = _Lines(text, max_field_size)
            reader = csv.reader(lines, delimiter=delim)
            header = _first_record(reader, lines, enc, max_field_size)
            preamble: int = 0
            replay: list[list[str] | FileRejected | None] = []
            if is_header is not None and not is_header(header):
                header, preamble, replay = _after_preamble(reader, lines, enc, header, is_header)
            shape = Shape(compression=compression, encoding=enc, delimiter=delim, header=header)
            yield attrs.evolve(shape, preamble_lines=preamble), _rows(reader, lines, enc, replay)
    finally:
        csv.field_size_limit(previous_limit)


#: How many lines may come before the header (SPEC 9: LinkedIn's ``Notes:`` block).
PREAMBLE_LINES = 20


def _clean_header(record: list[str]) -> list[str]:
    header = [h.strip() for h in record]
    if header and header[0].startswith("\ufeff"):
        header[0] = header[0].lstrip("\ufeff")
    return header


def _first_record(reader: Any, lines: _Lines, enc: str, max_field_size: int) -> list[str]:
    """The first non-blank record, as a header; :class:`FileRejected` when there is none."""
    try:
        header = next(reader)
        while not header:
            header = next(reader)
    except StopIteration:
        raise FileRejected("empty", "the file is empty") from None
    except UnicodeDecodeError as exc:
        raise FileRejected("undecodable", f"cannot be decoded as {enc}: {exc.reason}") from None
    except csv.Error as exc:
        raise FileRejected("no_header", f"the header row cannot be read: {exc}") from None
    if lines.oversized:
        raise FileRejected("no_header", f"the header row is longer than max_field_size ({max_field_size})")
    lines.new_record()
    header = _clean_header(header)
    if not any(header):
        raise FileRejected("no_header", "the first line is blank: a header row is required")
    return header


def _after_preamble(
    reader: Any, lines: _Lines, enc: str, first: list[str], is_header: Callable[[list[str]], bool]
) -> tuple[list[str], int, list[list[str] | FileRejected | None]]:
    """The header among the first lines, the number of lines before it, and the records read past
    the first that turn out to be data (when no line is a header, the first line stays the header)."""
    read: list[list[str] | FileRejected | None] = []
    while reader.line_num < PREAMBLE_LINES:
        before = reader.line_num
        try:
            record = _next_record(reader, lines, enc)
        except FileRejected as exc:
            read.append(exc)  # raised when the rows get there, as if no header had been looked for
            break
        if record is _END:
            break
        if record is None:
            read.append(None)
            break
        assert isinstance(record, list)
        if not record:
            continue
        if is_header(_clean_header(record)):
            return _clean_header(record), before, []
        read.append(record)
    return first, 0, read


#: What :func:`_next_record` returns at the end of the file.
_END = object()


def _next_record(reader: Any, lines: _Lines, enc: str) -> list[str] | object | None:
    """The next record (``[]`` for a blank line); ``None`` for one too large to read (reading goes
    on after it); :data:`_END` at the end; :class:`FileRejected` for malformed or undecodable text."""
    try:
        row = next(reader)
    except StopIteration:
        return _END
    except csv.Error as exc:
        if "field larger than field limit" not in str(exc):
            raise FileRejected("malformed_csv", f"malformed CSV near line {reader.line_num}: {exc}") from None
        inside_quotes = lines.odd_quotes
        lines.new_record()
        lines.skip_record = lines.odd_quotes = inside_quotes
        return None
    except UnicodeDecodeError as exc:
        msg = f"cannot be decoded as {enc} after line {reader.line_num}: {exc.reason}"
        raise FileRejected("undecodable", msg) from None
    except (OSError, EOFError) as exc:
        raise FileRejected("undecodable", f"cannot be decompressed: {exc}") from None
    if lines.oversized:
        lines.new_record()
        return None
    if lines.eof and lines.odd_quotes and row and row[-1].endswith(("\n", "\r")):
        start = reader.line_num - lines.lines_in_record + 1
        msg = (
            f"a quoted field opened on line {start} never closes: fix the quotes in that row "
            "(everything after it would otherwise be read as one value)"
        )
        raise FileRejected("malformed_csv", msg)
    lines.new_record()
    return list(row)


def _rows(
    reader: Any, lines: _Lines, enc: str, replay: list[list[str] | FileRejected | None]
) -> Iterator[list[str] | None]:
    for record in replay:  # records read while looking for the header after all
        if isinstance(record, FileRejected):
            raise record
        yield record
    while (row := _next_record(reader, lines, enc)) is not _END:
        if row != []:
            yield row  # type: ignore[misc]


@attrs.frozen
class Drift:
    """How a header differs from the last imported file's header."""

    appeared: tuple[str, ...]
    disappeared: tuple[str, ...]
    moved: tuple[str, ...]

    def describe(self) -> str:
        """One sentence for people: which columns appeared, disappeared or moved."""
        parts = [
            f"{what}: {_listed(columns)}"
            for what, columns in (("appeared", self.appeared), ("disappeared", self.disappeared), ("moved", self.moved))
            if columns
        ]
        return "columns changed since the last imported file (" + "; ".join(parts) + ")"


#: How many column names a drift warning lists for each change (the report's ``drift`` has them all).
DRIFT_LISTED = 12


def _listed(columns: tuple[str, ...]) -> str:
    shown = ", ".join(columns[:DRIFT_LISTED])
    return shown if len(columns) <= DRIFT_LISTED else f"{shown} and {len(columns) - DRIFT_LISTED} more"


def header_drift(previous: list[str] | None, current: list[str]) -> Drift | None:
    """Compare a header with the previous one; None when there is nothing to compare or no change."""
    if previous is None or previous == current:
        return None
    before, now = set(previous), set(current)
    common_before = [c for c in previous if c in now]
    common_now = [c for c in current if c in before]
    moved = tuple(c for c, old in zip(common_now, common_before, strict=True) if c != old)
    return Drift(
        appeared=tuple(c for c in current if c not in before),
        disappeared=tuple(c for c in previous if c not in now),
        moved=moved,
    )
