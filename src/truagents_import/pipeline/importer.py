"""Importer: runs a data source into a sink through the plugin hooks, remembering what it imported.

For each file: download once to a local spool file (hashing it on the way), skip it if that
content was imported before, read and map it, turn rows into contacts in batches, let the
validators judge each batch, stage the valid contacts by identity (the later row wins), and
only then hand them to the sink and commit. The state is written after the sink's commit, so a
crash at any point leaves either nothing or a file that the next run imports again (upserts
make that idempotent).

Speed: rows are built (normalised and checked, SPEC 3) in chunks; for a large file on a machine
with two CPUs or more, a worker process builds most chunks while this process reads the file,
runs the plugins' validators and stages (see ``_Worker``). Chunks are taken in row order, so the
outcome is the same either way, to the row and to the order of the problems.
"""

from __future__ import annotations

import contextlib
import csv
import gc
import marshal
import os
import pickle
import queue
import re
import select
import sqlite3
import subprocess
import sys
import tempfile
import threading
from collections import Counter, deque
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Literal

import asyncssh
import attrs

try:
    import fcntl
except ImportError:  # not on POSIX
    fcntl = None  # type: ignore[assignment]

from truagents_import._jsontext import dumps_attributes, dumps_tags
from truagents_import.config import Config
from truagents_import.errors import ConfigError, ConnectError, PluginError
from truagents_import.fields.contact import (
    Contact,
    FieldError,
    infer_timezone,
    normalise_bool,
    normalise_email,
    normalise_phone,
    normalise_region,
    normalise_tags,
    normalise_timezone,
    prepare_phone_parsing,
    split_full_name,
)
from truagents_import.fields.mapping import FULL_NAME, ColumnMapping, describe_missing_identity, resolve_mapping
from truagents_import.hookspecs import Sink
from truagents_import.pipeline.preview import Preview
from truagents_import.plugins import Plugins
from truagents_import.reading import FileRejected, Layout, header_drift, open_rows
from truagents_import.report import FileResult, ImportReport, Problem
from truagents_import.sinks.sqlite import SQLiteSink
from truagents_import.source import DataSource, RemoteFile
from truagents_import.state import Claim, State, StateStore, open_state

__all__ = ["Importer", "Progress", "ProgressCallback", "rejects_file_name"]

_CONNECTION_ERRORS = (
    asyncssh.SFTPNoConnection,
    asyncssh.SFTPConnectionLost,
    asyncssh.ConnectionLost,
    asyncssh.ChannelOpenError,
    asyncssh.DisconnectError,
    ConnectionError,
    BrokenPipeError,
    TimeoutError,
)


@attrs.frozen
class Progress:
    """Where a run is, for progress bars: the file, its bytes downloaded and rows read so far."""

    file: str
    phase: Literal["download", "rows", "done"]
    bytes_done: int = 0
    bytes_total: int = 0
    rows: int = 0


#: A progress callback: called often, it must return quickly.
ProgressCallback = Callable[[Progress], None]


def rejects_file_name(remote_path: str) -> str:
    """A safe local name for a file's rejects: the remote name can never pick the folder."""
    base = remote_path.rsplit("/", 1)[-1]
    for suffix in (".gz", ".csv", ".txt", ".tsv"):
        if base.lower().endswith(suffix):
            base = base[: -len(suffix)]
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", base).lstrip(".") or "file"
    return safe[:150] + ".rejects.csv"


#: What a row becomes: the first nine fields of its contact, in :class:`Contact`'s order
#: (external_id, email, phone, first_name, last_name, timezone, tags, unsubscribed, attributes).
_Values = tuple[
    str | None, str | None, str | None, str | None, str | None, str | None, tuple[str, ...], bool | None, dict[str, str]
]


@attrs.frozen
class _BuildSpec:
    """Everything turning one file's rows into contacts depends on: plain, hashable and picklable
    (the worker process gets it with every chunk of rows)."""

    source_name: str
    region: str | None
    default_timezone: str | None
    infer_timezone: bool
    drop_invalid: bool
    header: tuple[str, ...]
    fields: tuple[tuple[str, int], ...]
    attributes: tuple[tuple[str, int], ...]
    file: str
    #: Stage rows as the ``sqlite`` sink's columns (see :class:`_Staging`), not as marshal payloads.
    sql_rows: bool = False

    @classmethod
    def of(
        cls, source: DataSource, header: list[str], mapping: ColumnMapping, file: str, *, sql_rows: bool = False
    ) -> _BuildSpec:
        """The spec of one file of ``source``."""
        region = source.default_region
        if region:
            with contextlib.suppress(ValueError):  # an unknown region: normalise_phone says so per row
                region = normalise_region(region)
        default_timezone = source.default_timezone
        if default_timezone:
            with contextlib.suppress(FieldError):  # "europe/paris" -> "Europe/Paris", as the config does
                default_timezone = normalise_timezone(default_timezone)
        return cls(
            source_name=source.name,
            region=region,
            default_timezone=default_timezone,
            infer_timezone=bool(source.infer_timezone),
            drop_invalid=source.on_invalid == "drop_field",
            header=tuple(header),
            fields=tuple(mapping.fields.items()),
            attributes=tuple(mapping.attributes),
            file=file,
            sql_rows=sql_rows,
        )


class _RowBuilder:
    """Turns one raw row into a contact, or into the problems that reject it (SPEC 3).

    Cells are stripped; an empty cell is an absent value. A value its normaliser refuses
    rejects the row (``invalid_<field>``, one problem per bad cell), or, with
    ``on_invalid = "drop_field"``, is dropped as if the cell were empty; a row left with no
    identity because its identity values were dropped is rejected with ``missing_identity``.
    Rows with no identity at all are left to the built-in ``validate_contacts`` plugin.
    """

    def __init__(self, spec: _BuildSpec) -> None:
        self.spec = spec
        self.header = spec.header
        self.width = len(spec.header)
        self.attributes = spec.attributes
        self.file = spec.file
        self.source_name = spec.source_name
        self.drop_invalid = spec.drop_invalid
        self.region = spec.region
        self.default_timezone = spec.default_timezone
        self.infer_timezone = spec.infer_timezone
        fields = dict(spec.fields)
        if "phone" in fields:
            prepare_phone_parsing()
        # The column of each field is looked up once per file, not once per cell.
        self._external_id = fields.get("external_id")
        self._email = fields.get("email")
        self._phone = fields.get("phone")
        self._full_name = fields.get(FULL_NAME)
        self._first_name = fields.get("first_name")
        self._last_name = fields.get("last_name")
        self._timezone = fields.get("timezone")
        self._tags = fields.get("tags")
        self._unsubscribed = fields.get("unsubscribed")
        #: Invalid values dropped from rows that were kept (``on_invalid = "drop_field"``).
        self.dropped = 0

    @classmethod
    def for_file(
        cls, source: DataSource, header: list[str], mapping: ColumnMapping, file: str, *, sql_rows: bool = False
    ) -> _RowBuilder:
        """The builder for one file of ``source``."""
        return cls(_BuildSpec.of(source, header, mapping, file, sql_rows=sql_rows))

    def _problem(self, exc: FieldError, index: int, number: int, raw: str) -> Problem:
        return Problem(code=exc.code, message=exc.message, column=self.header[index], row=number, value=raw)

    def build(self, row: list[str], number: int) -> tuple[Contact | None, list[Problem]]:
        """The contact of data row ``number`` (counted from 1), or ``None`` and why not."""
        values, problems = self.values(row, number)
        if values is None:
            return None, problems
        return Contact(*values, self.source_name, self.file, number), problems

    def values(self, row: list[str], number: int) -> tuple[_Values | None, list[Problem]]:
        """:meth:`build` without the :class:`Contact`: its first nine fields, or ``None`` and why not."""
        if len(row) != self.width:
            message = f"{len(row)} fields where the header has {self.width}"
            return None, [Problem(code="ragged_row", message=message, row=number)]
        bad: list[Problem] | None = None
        i = self._external_id
        external_id = None if i is None else row[i].strip() or None
        email = None
        i = self._email
        if i is not None and (raw := row[i].strip()):
            try:
                email = normalise_email(raw)
            except FieldError as exc:
                bad = [self._problem(exc, i, number, raw)]
        phone = None
        i = self._phone
        if i is not None and (raw := row[i].strip()):
            try:
                phone = normalise_phone(raw, self.region)
            except FieldError as exc:
                problem = self._problem(exc, i, number, raw)
                bad = [problem] if bad is None else [*bad, problem]
        i = self._full_name
        if i is not None:
            first, last = split_full_name(row[i].strip())
        else:
            i = self._first_name
            first = None if i is None else row[i].strip() or None
            i = self._last_name
            last = None if i is None else row[i].strip() or None
        timezone = None
        i = self._timezone
        if i is not None and (raw := row[i].strip()):
            try:
                timezone = normalise_timezone(raw)
            except FieldError as exc:
                problem = self._problem(exc, i, number, raw)
                bad = [problem] if bad is None else [*bad, problem]
        if timezone is None:  # empty, or dropped as invalid: the source's default applies
            if self.infer_timezone and phone:
                timezone = infer_timezone(phone)
            if timezone is None:
                timezone = self.default_timezone
        unsubscribed = None
        i = self._unsubscribed
        if i is not None and (raw := row[i].strip()):
            try:
                unsubscribed = normalise_bool(raw)
            except FieldError as exc:
                problem = self._problem(exc, i, number, raw)
                bad = [problem] if bad is None else [*bad, problem]
        if bad:
            if not self.drop_invalid:
                return None, bad
            if external_id is None and email is None and phone is None:
                lost = [p for p in bad if p.code in ("invalid_email", "invalid_phone")]
                if lost:
                    what = " and ".join(f"{p.column!r} ({p.message})" for p in lost)
                    message = f"no identity left: {what} dropped as invalid (on_invalid = drop_field)"
                    first_lost = lost[0]
                    problem = Problem(
                        code="missing_identity",
                        message=message,
                        column=first_lost.column,
                        row=number,
                        value=first_lost.value,
                    )
                    return None, [problem]
            self.dropped += len(bad)
        i = self._tags
        values = (
            external_id,
            email,
            phone,
            first,
            last,
            timezone,
            () if i is None else normalise_tags(row[i]),
            unsubscribed,
            {name: row[index] for name, index in self.attributes},
        )
        return values, _NO_PROBLEMS


#: What values() returns with values (never mutated).
_NO_PROBLEMS: list[Problem] = []

#: What a contact is staged as, after its row number and identity (see :class:`_Staging`): its
#: marshal-ed values, or (``sql_rows``) the ``sqlite`` sink's columns: the first six fields, tags
#: and attributes as JSON text, unsubscribed as 1, 0 or None.
_Payload = tuple[Any, ...]

#: A chunk of rows built: per row ``None`` (a field too large: the row was never read),
#: its problems (a list) or its values (a tuple); the staging payload of each row with values,
#: in order; and how many invalid values were dropped (``on_invalid = "drop_field"``).
_Built = tuple[list[list[Problem] | _Values | None], list[_Payload], int]


def _build_chunk(builder: _RowBuilder, first: int, rows: Sequence[list[str] | None]) -> _Built:
    """Build the rows of a chunk whose first row is data row ``first``; the same in either process."""
    values = builder.values
    sql_rows = builder.spec.sql_rows
    dumps, tags_text, attributes_text = marshal.dumps, dumps_tags, dumps_attributes
    out: list[list[Problem] | _Values | None] = []
    payloads: list[_Payload] = []
    dropped = builder.dropped
    for number, row in enumerate(rows, start=first):
        if row is None:
            out.append(None)
            continue
        built, problems = values(row, number)
        if built is None:
            out.append(problems)
        elif not sql_rows:
            out.append(built)
            payloads.append((dumps(built),))
        else:
            out.append(built)
            external_id, email, phone, first_name, last_name, timezone, tags, unsubscribed, attributes = built
            payloads.append(
                (
                    external_id,
                    email,
                    phone,
                    first_name,
                    last_name,
                    timezone,
                    tags_text(tags),
                    None if unsubscribed is None else int(unsubscribed),
                    attributes_text(attributes),
                )
            )
    return out, payloads, builder.dropped - dropped


# -- a worker process for the second CPU ------------------------------------------------------

#: A file at least this large (bytes) is built with the help of a worker process, when this
#: process may use two CPUs or more; smaller files are not worth the worker's start-up (~0.5 s).
_PARALLEL_MIN_BYTES = 16 << 20
#: Rows per chunk, and the most chunks handed to the worker and not yet taken back (memory stays
#: flat). Building chunks here as well whenever the worker held that many was tried: it took too
#: many chunks from the worker and was slower.
_CHUNK_ROWS = 1000
_IN_FLIGHT = 3
#: Pipe buffers for the worker: a chunk (~150 KB) and its answer (~300 KB) then pass in one write,
#: so that neither process waits for the other to read (the default 64 KiB made them take turns).
_PIPE_BYTES = 1 << 20
_WORKER_CODE = "from truagents_import.pipeline.importer import _worker_main; _worker_main()"
#: While a file is processed the cyclic garbage collector runs less often: its default (a
#: collection per 700 container allocations, and full ones as the batches in flight are promoted)
#: took about a tenth of the time, though the rows make no reference cycles.
_GC_THRESHOLD0 = 10_000


def _usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


@contextlib.contextmanager
def _fewer_collections() -> Iterator[None]:
    """Raise the first garbage-collection threshold for a while, then restore it (unless changed meanwhile)."""
    before = gc.get_threshold()
    if not gc.isenabled() or before[0] >= _GC_THRESHOLD0:
        yield
        return
    gc.set_threshold(_GC_THRESHOLD0, *before[1:])
    try:
        yield
    finally:
        if gc.get_threshold()[0] == _GC_THRESHOLD0:
            gc.set_threshold(*before)


def _enlarge_pipe(pipe: IO[bytes] | None) -> None:
    """Make a pipe's buffer :data:`_PIPE_BYTES` (or the system's maximum) where the OS allows it (Linux)."""
    setsize = getattr(fcntl, "F_SETPIPE_SZ", None) if fcntl is not None else None
    if pipe is None or setsize is None:
        return
    try:
        limit = int(Path("/proc/sys/fs/pipe-max-size").read_text(encoding="ascii"))
    except (OSError, ValueError):
        limit = _PIPE_BYTES
    with contextlib.suppress(OSError):
        fcntl.fcntl(pipe.fileno(), setsize, min(_PIPE_BYTES, limit))


class _WorkerGone(Exception):
    """The worker process stopped answering (it died, failed, or its pipe broke)."""


class _Worker:
    """A helper process, on another CPU, that turns chunks of raw rows into contact values.

    It runs ``python -c`` (not multiprocessing, whose start methods re-import the caller's
    ``__main__``). Chunks go to its stdin as length-prefixed pickles, written by a thread so that
    neither process can block the other on a full pipe; answers come back in order on its stdout,
    after a first ``ready`` once it has started. It exits when its stdin closes, so also when this
    process dies. Any failure marks it ``broken``: the importer then builds the rows itself, with
    the same code.
    """

    def __init__(self) -> None:
        self._proc = subprocess.Popen(
            [sys.executable, "-c", _WORKER_CODE],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            bufsize=0,  # raw pipes: select() then tells exactly whether an answer has arrived
        )
        assert self._proc.stdin is not None
        assert self._proc.stdout is not None
        self._stdin: IO[bytes] = self._proc.stdin
        self._stdout: IO[bytes] = self._proc.stdout
        for pipe in (self._stdin, self._stdout):
            _enlarge_pipe(pipe)
        self._requests: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self._writer = threading.Thread(target=self._write, name="truagents-import-worker-feed", daemon=True)
        self._writer.start()
        #: Chunks sent and not yet answered.
        self.in_flight = 0
        self.broken = False
        self._ready = False

    def _write(self) -> None:
        try:
            while (data := self._requests.get()) is not None:
                frame = memoryview(len(data).to_bytes(8, "little") + data)
                while frame:
                    frame = frame[self._stdin.write(frame) or 0 :]
        except (OSError, ValueError):
            self.broken = True  # the worker is gone: receive() finds out too
        finally:
            with contextlib.suppress(OSError, ValueError):
                self._stdin.close()

    def _read_exactly(self, size: int) -> bytearray:
        buffer = bytearray(size)
        view = memoryview(buffer)
        got = 0
        while got < size:
            n = self._stdout.readinto(view[got:])  # type: ignore[attr-defined]
            if not n:
                raise _WorkerGone("the worker process ended")
            got += n
        return buffer

    def _read_answer(self) -> tuple[str, Any]:
        try:
            size = int.from_bytes(self._read_exactly(8), "little")
            status, answer = pickle.loads(self._read_exactly(size))  # noqa: S301  (our own child, private pipe)
        except (OSError, ValueError, EOFError, pickle.UnpicklingError, _WorkerGone) as exc:
            self.broken = True
            raise _WorkerGone from exc
        return str(status), answer

    def answer_waiting(self) -> bool:
        """Whether the worker has begun its next answer (or ended): reading it will not wait long."""
        try:
            return bool(select.select([self._stdout], [], [], 0)[0])
        except (OSError, ValueError):
            return True  # receive() finds out what is wrong

    def usable(self, wait: float = 0.0) -> bool:
        """Whether chunks may be sent: the worker has started (it said ``ready``) and nothing broke.

        ``wait``: seconds to wait for the worker to start, if it has not yet.
        """
        if not self._ready and not self.broken and wait > 0:
            with contextlib.suppress(OSError, ValueError):
                select.select([self._stdout], [], [], wait)
        if not self._ready and not self.broken and self.answer_waiting():
            with contextlib.suppress(_WorkerGone):
                status, _ = self._read_answer()
                self._ready = status == "ready"
                self.broken = not self._ready
        return self._ready and not self.broken

    def submit(self, spec: _BuildSpec, first: int, rows: list[list[str] | None]) -> None:
        """Send a chunk whose first row is data row ``first``."""
        self._requests.put(pickle.dumps((spec, first, rows), protocol=5))
        self.in_flight += 1

    def receive(self) -> _Built:
        """The answer to the oldest chunk not yet received; raises :class:`_WorkerGone`."""
        if self.broken:
            raise _WorkerGone
        status, answer = self._read_answer()
        self.in_flight -= 1
        if status != "ok":
            self.broken = True
            raise _WorkerGone(answer)
        built: _Built = answer
        return built

    def close(self) -> None:
        """Stop the worker (at once when answers are still owed: nobody will read them)."""
        self._requests.put(None)
        if self.in_flight or self.broken:
            self._proc.kill()  # our own child, through its Popen handle
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._writer.join(timeout=10)
        self._stdout.close()


def _worker_main() -> None:
    """The worker process: build each chunk read from stdin and answer it on stdout, until stdin closes."""
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # nothing else may write on the answer stream
    gc.set_threshold(_GC_THRESHOLD0, *gc.get_threshold()[1:])
    builders: dict[_BuildSpec, _RowBuilder] = {}

    def answer(message: tuple[str, object]) -> None:
        out = pickle.dumps(message, protocol=5)
        stdout.write(len(out).to_bytes(8, "little"))
        stdout.write(out)
        stdout.flush()

    answer(("ready", None))
    while len(head := stdin.read(8)) == 8:
        size = int.from_bytes(head, "little")
        data = stdin.read(size)
        if len(data) < size:
            break
        try:
            spec, first, rows = pickle.loads(data)  # noqa: S301  (from our parent, over a private pipe)
            builder = builders.get(spec)
            if builder is None:
                if len(builders) >= 4:
                    builders.clear()
                builder = builders[spec] = _RowBuilder(spec)
            answer(("ok", _build_chunk(builder, first, rows)))
        except Exception as exc:  # the importer builds this chunk itself, and sees the error there
            answer(("error", f"{type(exc).__name__}: {exc}"))


class _Staging:
    """Valid contacts of one file, keyed by identity in a local SQLite file (the later row wins).

    Rows are keyed by their row number (so reading them back in row order needs no sort), with
    a unique index on identity: a later row with the same identity replaces the earlier one.
    A contact's source and file are the same for the whole file and are not stored per row.

    Two layouts, chosen for the sink: for the built-in ``sqlite`` sink (``sql_rows``) the columns of
    its table, tags and attributes as its JSON text, so that it takes the whole file in one
    ``INSERT ... SELECT`` (:meth:`seal`); for any other sink a ``marshal``-ed payload per row, which
    :meth:`contacts` turns back into :class:`Contact` batches (marshal is several times cheaper
    than JSON both ways; this file is written and read by this process only).
    """

    def __init__(self, path: Path, *, sql_rows: bool = False) -> None:
        self.path = path
        self.sql_rows = sql_rows
        self._db = sqlite3.connect(path, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=OFF")
        self._db.execute("PRAGMA synchronous=OFF")
        columns = (
            "external_id TEXT, email TEXT, phone TEXT, first_name TEXT, last_name TEXT, timezone TEXT,"
            " tags TEXT NOT NULL, unsubscribed INTEGER, attributes TEXT NOT NULL"
            if sql_rows
            else "payload BLOB NOT NULL"
        )
        self._db.execute(f"CREATE TABLE staged (row INTEGER PRIMARY KEY, identity TEXT UNIQUE, {columns})")
        width = 11 if sql_rows else 3
        self._insert = f"INSERT OR REPLACE INTO staged VALUES ({', '.join('?' * width)})"
        self._db.execute("BEGIN")
        self.added = 0
        self._source: str | None = None
        self._file: str | None = None

    def add(self, source: str, file: str, rows: list[tuple[Any, ...]]) -> None:
        """Stage ``(row number, identity, *payload)`` rows of contacts of ``source``'s ``file``
        (payloads as ``_build_chunk`` makes them)."""
        self._source, self._file = source, file
        self._db.executemany(self._insert, rows)
        self.added += len(rows)

    def count(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM staged").fetchone()[0])

    def seal(self) -> Path:
        """Commit what was staged, so that another connection (the sink's) can read it; its path."""
        if self._db.in_transaction:
            self._db.execute("COMMIT")
        return self.path

    def contacts(self, batch_size: int) -> Iterator[list[Contact]]:
        """The staged contacts in row order, in batches (marshal layout only)."""
        assert not self.sql_rows, "sql_rows staging is for the sqlite sink's INSERT ... SELECT"
        source, file, loads = self._source, self._file, marshal.loads
        make: Callable[..., Contact] = Contact  # positional: the payload holds the first nine fields in order
        cur = self._db.execute("SELECT row, payload FROM staged ORDER BY row")
        while rows := cur.fetchmany(batch_size):
            yield [make(*loads(payload), source, file, row) for row, payload in rows]

    def close(self) -> None:
        self._db.close()


class _Rejects:
    """The rejects CSV of one file: original columns plus ``_row, _code, _column, _message``."""

    def __init__(self, path: Path, header: list[str]) -> None:
        self.path = path
        self._file = path.open("w", encoding="utf-8", newline="")
        self._writer = csv.writer(self._file)
        self._writer.writerow([_neutralise(h) for h in header] + ["_row", "_code", "_column", "_message"])
        self._width = len(header)
        self.count = 0

    def add(self, row: list[str], problem: Problem) -> None:
        # The four columns stay where the header puts them: a short row is padded, and the extra
        # cells of a long (ragged) row follow them, so nothing the file carried is lost.
        cells = [_neutralise(v) for v in row]
        head, extra = cells[: self._width], cells[self._width :]
        head += [""] * (self._width - len(head))
        meta = [str(problem.row or ""), problem.code, _neutralise(problem.column or ""), _neutralise(problem.message)]
        self._writer.writerow(head + meta + extra)
        self.count += 1

    def close(self) -> None:
        self._file.close()


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _neutralise(value: str) -> str:
    """Cells a spreadsheet would execute get a leading apostrophe (SPEC 8)."""
    return "'" + value if value.startswith(_FORMULA_START) else value


class Importer:
    """Runs a :class:`DataSource` into a :class:`Sink` through the plugin hooks.

    :param source: the data source to import.
    :param sink: where contacts go (any object with ``write``, ``commit`` and ``close``).
    :param state: a :class:`StateStore` or a path to its SQLite file; without one, what was
        imported is remembered only for the life of this importer.
    :param plugins: plugins to register besides the built-ins and installed entry points.
    :param rejects_dir: where to write a rejects CSV for each file with rejected rows.
    :param entry_points: load plugins installed under the ``truagents_import`` entry-point group.
    :param parallel: build the rows of large files (16 MiB or more) with the help of one helper
        process when two CPUs or more are usable; ``False`` does all the work in this process
        (slower, with exactly the same outcome).
    """

    def __init__(
        self,
        source: DataSource,
        sink: Sink,
        *,
        state: State | Path | str | None = None,
        plugins: Sequence[object] = (),
        rejects_dir: Path | str | None = None,
        batch_size: int = 5000,
        entry_points: bool = True,
        plugin_set: Plugins | None = None,
        parallel: bool = True,
    ) -> None:
        self.source = source
        self.sink = sink
        self.state: State = StateStore(state or ":memory:") if state is None or isinstance(state, str | Path) else state
        self.plugins = plugin_set or Plugins.build(plugins, entry_points=entry_points)
        self.rejects_dir = None if rejects_dir is None else Path(rejects_dir)
        self.batch_size = batch_size
        self.parallel = parallel
        self._progress: ProgressCallback | None = None
        #: The worker process of the current run, if a file in it is large enough for one.
        self._worker: _Worker | None = None
        #: Files at least this large (bytes) are built with the worker's help (tests lower it).
        self._parallel_min_bytes = _PARALLEL_MIN_BYTES

    @classmethod
    def from_config(
        cls, config: Config, source: str | None = None, *, rejects_dir: Path | str | None = None
    ) -> Importer:
        """An importer for one source of a configuration, with its sink and state database."""
        plugins = Plugins.build()
        sink = plugins.make_sink(config.sink.type, config.sink.options)
        try:
            state = open_state(config.state)
        except BaseException:
            sink.close()  # do not leave the sink's connection or file open
            raise
        return cls(
            config.source(source),
            sink,
            state=state,
            rejects_dir=rejects_dir,
            plugin_set=plugins,
        )

    def close(self) -> None:
        """Close the sink, the state database and the source's connection."""
        try:
            self._stop_worker()
            self.sink.close()
        finally:
            self.state.close()
            if self.source.integration is not None:
                self.source.integration.close()

    def __enter__(self) -> Importer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def run(
        self,
        files: Sequence[RemoteFile | str] | None = None,
        *,
        dry_run: bool = False,
        force: bool = False,
        progress: ProgressCallback | None = None,
    ) -> ImportReport:
        """Import every new or changed complete file (or just ``files``) and report on each.

        ``dry_run`` maps, validates and counts without writing to the sink or the state.
        ``force`` imports the named files again even when their content was imported before.
        ``progress`` is called with a :class:`Progress` as each file downloads and its rows are read.
        """
        self._progress = progress
        if not dry_run:
            self._check_merge_policy()
        report = ImportReport(source=self.source.name, dry_run=dry_run, started_at=datetime.now(UTC))
        listing = self.source.list_files(self.state)
        late = self.source.overdue(listing, report.started_at)
        if late is not None:
            report.warnings.append(late)
        todo: list[RemoteFile] = []
        if files is None:
            for f in listing:
                if f.state in ("new", "changed"):
                    todo.append(f)
                elif f.state == "imported":
                    report.files.append(FileResult(f.path, "skipped", reason="already imported", size=f.size))
                elif f.state == "incomplete":
                    report.files.append(FileResult(f.path, "incomplete", reason=f.note, size=f.size))
        else:
            by_path = {f.path: f for f in listing}
            for wanted in files:
                path = wanted.path if isinstance(wanted, RemoteFile) else wanted
                if not path.startswith("/") and path not in by_path:
                    path = f"{self.source.path.rstrip('/')}/{path}"
                found = by_path.get(path)
                if found is None:
                    reason = f"not found in {self.source.path} (or its name does not match {self.source.pattern!r})"
                    report.files.append(FileResult(path, "failed", reason=reason))
                elif found.state in ("incomplete", "ignored"):
                    report.files.append(FileResult(path, "incomplete", reason=found.note, size=found.size))
                else:
                    todo.append(found)
        if any(f.size >= self._parallel_min_bytes for f in todo):
            self._start_worker()  # now, so that it starts up while the first file downloads
        try:
            with tempfile.TemporaryDirectory(prefix="truagents-import-") as spool:
                for index, remote in enumerate(todo):
                    result = self._import_file(remote, Path(spool), index, dry_run=dry_run, force=force)
                    report.files.append(result)
                    if progress is not None:
                        progress(Progress(remote.path, "done", remote.size, remote.size, result.rows))
        finally:
            self._stop_worker()
        report.finished_at = datetime.now(UTC)
        report.warnings.extend(self.plugins.import_finished(report, self.source))
        return report

    def preview(self, file: RemoteFile | str, *, rows: int = 10, sample: int = 1000) -> Preview:
        """Encoding, delimiter, header, mapping, the first ``rows`` rows and validation counts
        on the first ``sample`` rows of one file, writing nothing anywhere."""
        path = file.path if isinstance(file, RemoteFile) else file
        if not path.startswith("/") and not Path(path).is_absolute():
            path = f"{self.source.path.rstrip('/')}/{path}"
        listing = {f.path: f for f in self.source.list_files(self.state)}
        remote = listing.get(path) or RemoteFile(path, 0, datetime.now(UTC))
        out = Preview(path=path, size=remote.size if path in listing else None)
        with tempfile.TemporaryDirectory(prefix="truagents-preview-") as spool:
            local = Path(spool) / "0.data"
            self._download(remote, local)
            try:
                with open_rows(
                    local,
                    encoding=self.source.encoding,
                    delimiter=self.source.delimiter,
                    max_field_size=self.source.max_field_size,
                    max_decompressed_size=self.source.max_decompressed_size,
                ) as (layout, it):
                    out.compression, out.encoding, out.delimiter = layout.compression, layout.encoding, layout.delimiter
                    out.header = layout.header
                    drift = header_drift(self.state.last_header(self.source.name), layout.header)
                    if drift is not None:
                        out.drift = {k: list(v) for k, v in attrs.asdict(drift).items()}
                        out.warnings.append(drift.describe())
                    mapping = self._mapping(layout, path)
                    out.mapping = dict(mapping.by_column)
                    out.warnings.extend(mapping.warnings)
                    builder = _RowBuilder.for_file(self.source, layout.header, mapping, path)
                    codes: Counter[str] = Counter()
                    batch: list[Contact] = []
                    for number, row in enumerate(it, start=1):
                        if number > sample:
                            break
                        out.sampled += 1
                        if row is not None and len(out.rows) < rows:
                            out.rows.append(row)
                        if row is None:
                            codes["field_too_large"] += 1
                            continue
                        contact, problems = builder.build(row, number)
                        if contact is None:
                            codes[problems[0].code] += 1
                        else:
                            batch.append(contact)
                    bad = self.plugins.validate_contacts(batch, self.source, path)
                    for problem in dict(bad).values():
                        codes[problem.code] += 1
                    out.rejected = sum(codes.values())
                    out.valid = out.sampled - out.rejected
                    out.count(codes)
            except FileRejected as exc:
                out.rejected_because = exc.message
            except PluginError as exc:
                out.rejected_because = str(exc)
        return out

    def _start_worker(self) -> _Worker | None:
        """The run's worker process, started (again, after a failure) when needed; None when there is none.

        None on one CPU, with ``parallel=False``, and where ``sys.executable`` cannot start a Python
        (an application frozen into one binary).
        """
        if self._worker is not None and not self._worker.broken:
            return self._worker
        self._stop_worker()
        if not self.parallel or _usable_cpus() < 2 or not sys.executable or getattr(sys, "frozen", False):
            return None
        try:
            self._worker = _Worker()
        except OSError:  # no worker: the rows are built here, as on one CPU
            return None
        return self._worker

    def _stop_worker(self) -> None:
        worker, self._worker = self._worker, None
        if worker is not None:
            worker.close()

    def _download(self, remote: RemoteFile, dest: Path) -> str:
        report = self._progress
        tick = None if report is None else lambda n: report(Progress(remote.path, "download", n, remote.size))
        try:
            return self.source.download(remote, dest, tick)
        except _CONNECTION_ERRORS:
            if self.source.integration is None:
                raise
            self.source.integration.reconnect()
            return self.source.download(remote, dest, tick)

    def _import_file(self, remote: RemoteFile, spool: Path, index: int, *, dry_run: bool, force: bool) -> FileResult:
        started = datetime.now(UTC)
        result = FileResult(remote.path, "imported", size=remote.size)
        local = spool / f"{index}.data"
        try:
            result.sha256 = self._download(remote, local)
        except (OSError, asyncssh.Error, ConnectError) as exc:
            result.status, result.reason = "failed", f"download failed: {exc}"
            return result
        claim: Claim | None = None
        if dry_run:
            earlier = None if force else self.state.imported_sha(self.source.name, result.sha256)
            if earlier is not None:
                result.status = "skipped"
                result.reason = (
                    "already imported" if earlier == remote.path else f"same content already imported as {earlier}"
                )
                return result
        else:
            taken = self.state.claim(self.source.name, result.sha256, remote.path, force=force)
            if isinstance(taken, str):
                result.status, result.reason = "skipped", taken
                if not taken.startswith("being imported"):
                    self.state.record(self.source.name, result, mtime=remote.mtime, header=None, started_at=started)
                return result
            claim = taken
        try:
            with _fewer_collections():
                return self._process(remote, result, local, spool, index, started, dry_run=dry_run)
        finally:
            if claim is not None:
                self.state.release(claim)

    def _process(
        self,
        remote: RemoteFile,
        result: FileResult,
        local: Path,
        spool: Path,
        index: int,
        started: datetime,
        *,
        dry_run: bool,
    ) -> FileResult:
        header: list[str] | None = None
        # The built-in SQLite sink takes the staging file in SQL, when this run delivers at all.
        bulk = not dry_run and isinstance(self.sink, SQLiteSink) and self.sink._takes_staging()
        staging = _Staging(spool / f"{index}.staging", sql_rows=bulk)
        rejects: _Rejects | None = None
        try:
            with open_rows(
                local,
                encoding=self.source.encoding,
                delimiter=self.source.delimiter,
                max_field_size=self.source.max_field_size,
                max_decompressed_size=self.source.max_decompressed_size,
            ) as (layout, rows):
                header = layout.header
                try:
                    drift = header_drift(self.state.last_header(self.source.name), header)
                    if drift is not None:
                        result.drift = {k: list(v) for k, v in attrs.asdict(drift).items()}
                        if self.source.on_drift == "reject":
                            raise FileRejected("schema_drift", drift.describe() + "; on_drift = 'reject'")
                        result.warnings.append(drift.describe())
                    mapping = self._mapping(layout, remote.path)
                except FileRejected:
                    # The whole file is rejected for its header: still account for every row.
                    with contextlib.suppress(FileRejected):
                        result.rows = sum(1 for _ in rows)
                    raise
                result.warnings.extend(mapping.warnings)
                result.mapping = dict(mapping.by_column)
                if self.rejects_dir is not None:
                    rejects = _Rejects(spool / f"{index}.rejects.csv", header)
                worker = self._start_worker() if remote.size >= self._parallel_min_bytes else None
                self._stage(rows, layout, mapping, remote.path, result, staging, rejects, worker)
            result.imported = staging.count()
            result.duplicates = staging.added - result.imported
            if result.rows == 0:
                result.warnings.append("the file has a header but no data rows")
            if not dry_run:
                self._deliver(staging, remote.path)
        except FileRejected as exc:
            result.status, result.reason = "rejected", exc.message
            result.problems.insert(0, Problem(code=exc.code, message=exc.message))
            result.imported = result.duplicates = 0
            result.rejected = result.rows
        except PluginError as exc:
            result.status, result.reason = "failed", str(exc)
            result.imported = result.duplicates = 0
            result.rejected = result.rows
        finally:
            staging.close()
            if rejects is not None:
                rejects.close()
        assert result.rows == result.imported + result.rejected + result.duplicates
        if rejects is not None and rejects.count and self.rejects_dir is not None:
            self.rejects_dir.mkdir(parents=True, exist_ok=True)
            target = _unique(self.rejects_dir / rejects_file_name(remote.path))
            rejects.path.replace(target)
            result.rejects_file = str(target)
        if not dry_run:
            if result.status == "imported":
                self._after_import(remote, result)
            self.state.record(self.source.name, result, mtime=remote.mtime, header=header, started_at=started)
        return result

    def _mapping(self, layout: Layout, file: str) -> ColumnMapping:
        header = layout.header
        blank = [i + 1 for i, h in enumerate(header) if not h]
        if blank:
            raise FileRejected("blank_header", f"header column(s) {blank} have no name; every column needs one")
        seen: dict[str, int] = {}
        for h in header:
            seen[h] = seen.get(h, 0) + 1
        dupes = sorted(h for h, n in seen.items() if n > 1)
        if dupes:
            raise FileRejected("duplicate_header", f"header names appear more than once: {', '.join(dupes)}")
        mapping = resolve_mapping(header, self.plugins.map_columns(header, self.source, file), self.source.mapping)
        if not mapping.has_identity:
            raise FileRejected("no_identity_column", describe_missing_identity(header, mapping))
        return mapping

    def _stage(
        self,
        rows: Iterator[list[str] | None],
        layout: Layout,
        mapping: ColumnMapping,
        file: str,
        result: FileResult,
        staging: _Staging,
        rejects: _Rejects | None,
        worker: _Worker | None = None,
    ) -> None:
        """Build, validate and stage every row; with a ``worker``, it builds most chunks of rows.

        Rows are read in chunks; each chunk is built (by the worker, or here) and then taken in
        row order, exactly as if each row were built as it is read: every row is counted,
        rejected or staged in order, and the plugins see the same batches. Rows are counted as
        they are taken, so a plugin failure stops the count where reading row by row would.
        """
        builder = _RowBuilder.for_file(self.source, layout.header, mapping, file, sql_rows=staging.sql_rows)
        spec = builder.spec
        source_name = self.source.name
        make: Callable[..., Contact] = Contact  # positional: values hold the first nine fields in order
        batch: list[Contact] = []
        raw_batch: list[list[str] | None] = []
        payloads: list[_Payload] = []
        pending: deque[tuple[int, list[list[str] | None], _Built | None]] = deque()
        dropped = 0

        def reject(row: list[str] | None, problems: list[Problem]) -> None:
            result.rejected += 1
            for p in problems:
                result.add_problem(p)
            if rejects is not None:
                rejects.add(row or [], problems[0])

        def flush() -> None:
            verdicts = self.plugins.validate_contacts(batch, self.source, file)
            bad: dict[int, list[Problem]] = {}
            for i, found in verdicts:
                problem = found if found.row is not None else attrs.evolve(found, row=batch[i].source_row)
                bad.setdefault(i, []).append(problem)
            staging.add(
                source_name,
                file,
                [(c.source_row or 0, c.identity, *payloads[i]) for i, c in enumerate(batch) if i not in bad],
            )
            for i in sorted(bad):
                reject(raw_batch[i], bad[i])
            batch.clear()
            raw_batch.clear()
            payloads.clear()
            if self._progress is not None:
                self._progress(Progress(file, "rows", rows=result.rows))

        def take() -> None:
            nonlocal dropped
            first, chunk, built = pending.popleft()
            if built is None:  # the worker's
                assert worker is not None
                try:
                    built = worker.receive()
                except _WorkerGone:
                    built = _build_chunk(builder, first, chunk)
            values_of_rows, chunk_payloads, chunk_dropped = built
            dropped += chunk_dropped
            next_payload = iter(chunk_payloads).__next__
            batch_size = self.batch_size
            number = first
            for row, values in zip(chunk, values_of_rows, strict=True):
                result.rows += 1
                if values.__class__ is tuple:
                    batch.append(make(*values, source_name, file, number))
                    raw_batch.append(row)
                    payloads.append(next_payload())
                    if len(batch) >= batch_size:
                        flush()
                elif values is None:
                    limit = self.source.max_field_size
                    message = f"a field is larger than {limit} bytes"
                    reject([], [Problem(code="field_too_large", message=message, row=number)])
                else:
                    reject(row, values)  # type: ignore[arg-type]
                number += 1

        def submit(first: int, chunk: list[list[str] | None]) -> None:
            if worker is not None and worker.usable():
                worker.submit(spec, first, chunk)
                pending.append((first, chunk, None))
            else:  # no worker, or it has not started yet: build this chunk here
                pending.append((first, chunk, _build_chunk(builder, first, chunk)))
            # Take every chunk that is ready, in order; wait for the worker once it holds enough chunks.
            while pending and (
                pending[0][2] is not None
                or len(pending) > _IN_FLIGHT
                or (worker is not None and worker.answer_waiting())
            ):
                take()

        chunk: list[list[str] | None] = []
        first = 1
        try:
            try:
                for row in rows:
                    chunk.append(row)
                    if len(chunk) >= _CHUNK_ROWS:
                        submit(first, chunk)
                        first += len(chunk)
                        chunk = []
            except FileRejected:
                # Reading failed part-way: every row read before still counts, as row by row.
                if chunk:
                    submit(first, chunk)
                while pending:
                    take()
                raise
            if chunk:
                submit(first, chunk)
            while pending:
                take()
        except BaseException:
            if worker is not None and worker.in_flight:
                worker.broken = True  # answers still owed for this file: this worker is done
            raise
        if batch:
            flush()
        if dropped:
            result.warnings.append(f"{dropped} invalid values dropped (on_invalid = drop_field)")

    def _check_merge_policy(self) -> None:
        """A source's ``merge`` option needs a sink with a merge policy (an upserting one)."""
        if self.source.merge is not None and not hasattr(self.sink, "merge"):
            msg = (
                f"source {self.source.name!r} sets merge = {self.source.merge!r}, but its sink "
                f"({type(self.sink).__name__}) does not upsert and has no merge policy: remove merge from the "
                "source, or use an upserting sink (sqlite, postgres)"
            )
            raise ConfigError(msg)

    def _deliver(self, staging: _Staging, file: str) -> None:
        policy = self.source.merge
        if policy is None:
            self._write_and_commit(staging, file)
            return
        # The source's policy for this file's contacts; the sink's own again afterwards.
        sink: Any = self.sink
        before, sink.merge = sink.merge, policy
        try:
            self._write_and_commit(staging, file)
        finally:
            sink.merge = before

    def _write_and_commit(self, staging: _Staging, file: str) -> None:
        method = "write"
        try:
            if staging.sql_rows and isinstance(self.sink, SQLiteSink):
                # The built-in SQLite sink copies the staged file in SQL: the same rows, in the
                # same order, through the same upsert, without a Contact per row.
                self.sink._load_staging(staging.seal(), self.source.name, file)
            else:
                for contacts in staging.contacts(self.batch_size):
                    self.sink.write(contacts)
            method = "commit"
            self.sink.commit()
        except Exception as exc:
            rollback = getattr(self.sink, "rollback", None)
            if callable(rollback):
                # The sink is already failing: report the first error, not the rollback's.
                with contextlib.suppress(Exception):
                    rollback()
            raise self.plugins.sink_failure(self.sink, method, file, exc) from exc

    def _after_import(self, remote: RemoteFile, result: FileResult) -> None:
        action = self.source.after_import
        try:
            if action == "delete":
                self.source.remove(remote.path)
            elif action.startswith("move:"):
                self.source.move(remote.path, action.removeprefix("move:"))
        except (OSError, asyncssh.Error, ConnectError) as exc:
            result.warnings.append(f"imported, but after_import {action!r} failed: {exc}")


def _unique(path: Path) -> Path:
    candidate, n = path, 1
    while candidate.exists():
        n += 1
        candidate = path.with_name(f"{path.name.removesuffix('.rejects.csv')}.{n}.rejects.csv")
    return candidate
