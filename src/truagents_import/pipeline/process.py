"""One file's rows to contacts and problems (SPEC 3 and 5): the one row pipeline.

Import, preview, :meth:`DataSource.read` and ``check``'s sample all run rows through
:class:`RowPipeline`: the header is checked and mapped once (:func:`checked_mapping`), each row is
normalised and checked by a :class:`RowBuilder` (in chunks, possibly by a helper process), the
valid contacts are judged by the plugins' ``validate_contacts`` in batches, and every row is
accounted for: accepted in a batch, or handed to ``on_reject`` with its problems, in row order.
Nothing here reads files, talks to a server or writes anywhere.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Protocol

import attrs

from truagents_import.fields.contact import Contact
from truagents_import.fields.mapping import ColumnMapping
from truagents_import.pipeline.builder import BuildSpec, Built, Kept, Payload, RowBuilder, build_chunk
from truagents_import.pipeline.header import checked_mapping
from truagents_import.reading import FileRejected
from truagents_import.report import Problem

if TYPE_CHECKING:
    from truagents_import.plugins import Plugins
    from truagents_import.source import DataSource

__all__ = [
    "CHUNK_ROWS",
    "AcceptedBatch",
    "BuildSpec",
    "Built",
    "ChunkHelper",
    "HelperGone",
    "RowBuilder",
    "RowPipeline",
    "build_chunk",
    "checked_mapping",
]

#: Rows per chunk handed to a :class:`RowBuilder` (here or in the helper process).
CHUNK_ROWS = 1000
#: A chunk holds at most about this many characters of cells: with wide rows (hundreds of columns,
#: large cells) it holds fewer than :data:`CHUNK_ROWS` rows, so memory does not grow with the width.
CHUNK_CHARS = 4 << 20
#: A batch of contacts for the plugins holds at most about this many characters of cells (wide files).
BATCH_CHARS = 16 << 20
#: Files with more columns than this count the characters of each row as it comes.
WIDE_COLUMNS = 64
#: The most chunks handed to a helper and not yet taken back (memory stays flat). Building chunks
#: here as well whenever the helper held that many was tried: it took too many chunks from it and
#: was slower.
IN_FLIGHT = 3


class HelperGone(Exception):
    """A helper process stopped answering (it died, failed, or its pipe broke)."""


class ChunkHelper(Protocol):
    """What :class:`RowPipeline` needs of a helper process that builds chunks of rows
    (:class:`~truagents_import.pipeline.parallel.Worker` is one)."""

    in_flight: int
    broken: bool

    def usable(self, wait: float = 0.0) -> bool:
        """Whether chunks may be sent now."""

    def submit(self, spec: BuildSpec, first: int, rows: list[list[str] | None]) -> None:
        """Send a chunk whose first row is data row ``first``."""

    def receive(self) -> Built:
        """The answer to the oldest chunk not yet received; raises :class:`HelperGone`."""

    def answer_waiting(self) -> bool:
        """Whether the next answer has begun to arrive."""


@attrs.define
class AcceptedBatch:
    """Valid contacts of one batch, in row order: their row numbers, values and staging payloads.

    :attr:`contacts` makes :class:`Contact` objects only when asked (a plugin's validators, or
    :meth:`DataSource.read`); staging needs none.
    """

    numbers: list[int]
    #: Each contact's values, or ``(identity,)`` when no contact was asked for (see ``RowPipeline``).
    values: list[Kept]
    payloads: list[Payload]
    #: Rows of the file taken when this batch was complete (for progress reports).
    rows: int
    source_name: str
    file: str
    _contacts: list[Contact] | None = None

    @property
    def contacts(self) -> list[Contact]:
        """The batch's contacts (made once, on first use)."""
        if self._contacts is None:
            assert all(len(v) > 1 for v in self.values), "this pipeline was made with contacts=False"
            make: Callable[..., Contact] = Contact  # positional: values hold the first nine fields in order
            name, file = self.source_name, self.file
            self._contacts = [make(*v, name, file, n) for v, n in zip(self.values, self.numbers, strict=True)]
        return self._contacts

    def identities(self) -> list[str | None]:
        """Each contact's identity (external_id, else email, else phone), without making contacts."""
        return [v[0] if len(v) == 1 else v[0] or v[1] or v[2] for v in self.values]


#: Called for every rejected row, in row order: the raw row (``None`` when it was too large to
#: read) and its problems (at least one).
RejectCallback = Callable[[list[str] | None, list[Problem]], None]


class RowPipeline:
    """Runs one file's rows through the builder and the ``validate_contacts`` plugins.

    Rows are taken in chunks; each chunk is built (by ``helper``, or here) and then taken in row
    order, exactly as if each row were built as it is read: every row is counted, rejected or
    accepted in order, and the plugins see the same batches either way. :attr:`rows` counts rows
    as they are taken, so a plugin failure stops the count where reading row by row would.
    """

    def __init__(
        self,
        source: DataSource,
        header: list[str],
        mapping: ColumnMapping,
        *,
        plugins: Plugins,
        file: str,
        on_reject: RejectCallback,
        batch_size: int = 5000,
        sql_rows: bool = False,
        helper: ChunkHelper | None = None,
        contacts: bool = True,
    ) -> None:
        self.source = source
        self.plugins = plugins
        self.file = file
        self.batch_size = batch_size
        #: Whether a plugin (besides the built-in identity rule) validates contacts: only then, or
        #: when the caller wants ``AcceptedBatch.contacts`` (``contacts``), are rows' values kept.
        self._validated = plugins.validates_contacts()
        keep = contacts or self._validated
        self.builder = RowBuilder(BuildSpec.of(source, header, mapping, file, sql_rows=sql_rows, keep_values=keep))
        self.helper = helper
        self._on_reject = on_reject
        #: Rows taken so far, and invalid values dropped from kept rows (``on_invalid = "drop_field"``).
        self.rows = 0
        self.dropped = 0
        #: A wide file's chunks are also cut by characters (see :data:`CHUNK_CHARS`).
        self._row_chars = 16 * len(header)
        self._wide = len(header) > WIDE_COLUMNS
        self._chars = 0
        self._batch_chars = 0
        self._numbers: list[int] = []
        self._values: list[Kept] = []
        self._raw: list[list[str] | None] = []
        self._payloads: list[Payload] = []
        self._pending: deque[tuple[int, list[list[str] | None], Built | None]] = deque()
        self._ready: list[AcceptedBatch] = []

    def batches(self, rows: Iterable[list[str] | None]) -> Iterator[AcceptedBatch]:
        """The accepted contacts, a batch at a time; rejected rows go to ``on_reject`` as they are taken."""
        chunk: list[list[str] | None] = []
        first = 1
        # Chunks are cut by rows, and for wide files also by characters, so that memory stays
        # bounded whatever the file's shape (a row may hold max_columns x max_field_size).
        rows_per_chunk = max(1, min(CHUNK_ROWS, CHUNK_CHARS // max(1, self._row_chars)))
        try:
            try:
                for row in rows:
                    chunk.append(row)
                    if len(chunk) >= rows_per_chunk or (self._wide and self._chunk_chars(chunk)):
                        self._submit(first, chunk)
                        first += len(chunk)
                        chunk = []
                        yield from self._drain()
            except FileRejected:
                # Reading failed part-way: every row read before still counts, as row by row.
                if chunk:
                    self._submit(first, chunk)
                while self._pending:
                    self._take()
                raise
            if chunk:
                self._submit(first, chunk)
            while self._pending:
                self._take()
                yield from self._drain()
        except BaseException:
            if self.helper is not None and self.helper.in_flight:
                self.helper.broken = True  # answers still owed for this file: this helper is done
            raise
        if self._numbers:
            self._flush()
        yield from self._drain()

    def _chunk_chars(self, chunk: list[list[str] | None]) -> bool:
        """Whether a wide file's chunk holds :data:`CHUNK_CHARS` characters (counted as rows come)."""
        row = chunk[-1]
        self._chars += 0 if row is None else sum(map(len, row))
        if self._chars >= CHUNK_CHARS:
            self._chars = 0
            return True
        return False

    def _drain(self) -> Iterator[AcceptedBatch]:
        ready, self._ready = self._ready, []
        yield from ready

    def _reject(self, row: list[str] | None, problems: list[Problem]) -> None:
        self._on_reject(row, problems)

    def _flush(self) -> None:
        self._batch_chars = 0
        numbers, values, raw, payloads = self._numbers, self._values, self._raw, self._payloads
        self._numbers, self._values, self._raw, self._payloads = [], [], [], []
        name = self.builder.source_name
        accepted = AcceptedBatch(numbers, values, payloads, self.rows, name, self.file)
        if not self._validated:
            self._ready.append(accepted)
            return
        batch = accepted.contacts
        bad: dict[int, list[Problem]] = {}
        for i, found in self.plugins.validate_contacts(batch, self.source, self.file):
            problem = found if found.row is not None else attrs.evolve(found, row=numbers[i])
            bad.setdefault(i, []).append(problem)
        if bad:
            keep = [i for i in range(len(batch)) if i not in bad]
            accepted = AcceptedBatch(
                [numbers[i] for i in keep],
                [values[i] for i in keep],
                [payloads[i] for i in keep],
                self.rows,
                name,
                self.file,
                [batch[i] for i in keep],
            )
        self._ready.append(accepted)
        for i in sorted(bad):
            self._reject(raw[i], bad[i])

    def _take(self) -> None:
        first, chunk, built = self._pending.popleft()
        if built is None:  # the helper's
            assert self.helper is not None
            try:
                built = self.helper.receive()
            except HelperGone:
                built = build_chunk(self.builder, first, chunk)
        values_of_rows, chunk_payloads, chunk_dropped = built
        self.dropped += chunk_dropped
        next_payload = iter(chunk_payloads).__next__
        batch_size = self.batch_size
        numbers, kept, raw, payloads = self._numbers, self._values, self._raw, self._payloads
        number = first
        for row, values in zip(chunk, values_of_rows, strict=True):
            self.rows += 1
            if values.__class__ is tuple:
                numbers.append(number)
                kept.append(values)
                raw.append(row)
                payloads.append(next_payload())
                if self._wide and row is not None:
                    self._batch_chars += sum(map(len, row))
                if len(numbers) >= batch_size or self._batch_chars >= BATCH_CHARS:
                    self._flush()
                    numbers, kept, raw, payloads = self._numbers, self._values, self._raw, self._payloads
            elif values is None:
                message = f"a field is larger than {self.source.max_field_size} bytes"
                self._reject(None, [Problem(code="field_too_large", message=message, row=number)])
            else:
                self._reject(row, values)  # type: ignore[arg-type]
            number += 1

    def _submit(self, first: int, chunk: list[list[str] | None]) -> None:
        helper = self.helper
        if helper is not None and helper.usable():
            helper.submit(self.builder.spec, first, chunk)
            self._pending.append((first, chunk, None))
        else:  # no helper, or it has not started yet: build this chunk here
            self._pending.append((first, chunk, build_chunk(self.builder, first, chunk)))
        # Take every chunk that is ready, in order; wait for the helper once it holds enough chunks.
        while self._pending and (
            self._pending[0][2] is not None
            or len(self._pending) > IN_FLIGHT
            or (helper is not None and helper.answer_waiting())
        ):
            self._take()
