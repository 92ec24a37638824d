"""One file's rows to contacts and problems (SPEC 3 and 5): the one row pipeline.

Import, preview, :meth:`DataSource.read` and ``check``'s sample all run rows through
:class:`RowPipeline`: the header is checked and mapped once (:func:`checked_mapping`), each row is
normalised and checked by a :class:`RowBuilder` (in chunks, possibly by a helper process), the
valid contacts are judged by the plugins' ``validate_contacts`` in batches, and every row is
accounted for: accepted in a batch, or handed to ``on_reject`` with its problems, in row order.
Nothing here reads files, talks to a server or writes anywhere.
"""

from __future__ import annotations

import contextlib
import marshal
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import attrs

from truagents_import._jsontext import dumps_attributes, dumps_tags
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
#: The most chunks handed to a helper and not yet taken back (memory stays flat). Building chunks
#: here as well whenever the helper held that many was tried: it took too many chunks from it and
#: was slower.
IN_FLIGHT = 3


def checked_mapping(header: list[str], plugins: Plugins, source: DataSource, file: str) -> ColumnMapping:
    """The mapping of a file's header, or :class:`FileRejected` when the header cannot be imported.

    Every column needs a name, no name may appear twice, and some column must map to an identity
    field (``external_id``, ``email`` or ``phone``). The ``map_columns`` plugins, the source's
    explicit mapping and the aliases decide the rest (SPEC 3 and 5).
    """
    blank = [i + 1 for i, h in enumerate(header) if not h]
    if blank:
        raise FileRejected("blank_header", f"header column(s) {blank} have no name; every column needs one")
    seen: dict[str, int] = {}
    for h in header:
        seen[h] = seen.get(h, 0) + 1
    dupes = sorted(h for h, n in seen.items() if n > 1)
    if dupes:
        raise FileRejected("duplicate_header", f"header names appear more than once: {', '.join(dupes)}")
    mapping = resolve_mapping(header, plugins.map_columns(header, source, file), source.mapping)
    if not mapping.has_identity:
        raise FileRejected("no_identity_column", describe_missing_identity(header, mapping))
    return mapping


#: What a row becomes: the first nine fields of its contact, in :class:`Contact`'s order
#: (external_id, email, phone, first_name, last_name, timezone, tags, unsubscribed, attributes).
Values = tuple[
    str | None, str | None, str | None, str | None, str | None, str | None, tuple[str, ...], bool | None, dict[str, str]
]


@attrs.frozen
class BuildSpec:
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
    #: Stage rows as the ``sqlite`` sink's columns (see :class:`Staging`), not as marshal payloads.
    sql_rows: bool = False

    @classmethod
    def of(
        cls, source: DataSource, header: list[str], mapping: ColumnMapping, file: str, *, sql_rows: bool = False
    ) -> BuildSpec:
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


class RowBuilder:
    """Turns one raw row into a contact, or into the problems that reject it (SPEC 3).

    Cells are stripped; an empty cell is an absent value. A value its normaliser refuses
    rejects the row (``invalid_<field>``, one problem per bad cell), or, with
    ``on_invalid = "drop_field"``, is dropped as if the cell were empty; a row left with no
    identity because its identity values were dropped is rejected with ``missing_identity``.
    Rows with no identity at all are left to the built-in ``validate_contacts`` plugin.
    """

    def __init__(self, spec: BuildSpec) -> None:
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
    ) -> RowBuilder:
        """The builder for one file of ``source``."""
        return cls(BuildSpec.of(source, header, mapping, file, sql_rows=sql_rows))

    def _problem(self, exc: FieldError, index: int, number: int, raw: str) -> Problem:
        return Problem(code=exc.code, message=exc.message, column=self.header[index], row=number, value=raw)

    def build(self, row: list[str], number: int) -> tuple[Contact | None, list[Problem]]:
        """The contact of data row ``number`` (counted from 1), or ``None`` and why not."""
        values, problems = self.values(row, number)
        if values is None:
            return None, problems
        return Contact(*values, self.source_name, self.file, number), problems

    def values(self, row: list[str], number: int) -> tuple[Values | None, list[Problem]]:
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
            if external_id is None and email is None and phone is None and (lost := _identity_lost(bad, number)):
                return None, [lost]
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


def _identity_lost(bad: list[Problem], number: int) -> Problem | None:
    """The ``missing_identity`` problem of a row whose only identity values were dropped as invalid."""
    lost = [p for p in bad if p.code in ("invalid_email", "invalid_phone")]
    if not lost:
        return None
    what = " and ".join(f"{p.column!r} ({p.message})" for p in lost)
    message = f"no identity left: {what} dropped as invalid (on_invalid = drop_field)"
    return Problem(code="missing_identity", message=message, column=lost[0].column, row=number, value=lost[0].value)


#: What values() returns with values (never mutated).
_NO_PROBLEMS: list[Problem] = []

#: What a contact is staged as, after its row number and identity (see :class:`Staging`): its
#: marshal-ed values, or (``sql_rows``) the ``sqlite`` sink's columns: the first six fields, tags
#: and attributes as JSON text, unsubscribed as 1, 0 or None.
Payload = tuple[Any, ...]

#: A chunk of rows built: per row ``None`` (a field too large: the row was never read),
#: its problems (a list) or its values (a tuple); the staging payload of each row with values,
#: in order; and how many invalid values were dropped (``on_invalid = "drop_field"``).
Built = tuple[list[list[Problem] | Values | None], list[Payload], int]


def build_chunk(builder: RowBuilder, first: int, rows: Sequence[list[str] | None]) -> Built:
    """Build the rows of a chunk whose first row is data row ``first``; the same in either process."""
    values = builder.values
    sql_rows = builder.spec.sql_rows
    dumps, tags_text, attributes_text = marshal.dumps, dumps_tags, dumps_attributes
    out: list[list[Problem] | Values | None] = []
    payloads: list[Payload] = []
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


@attrs.frozen
class AcceptedBatch:
    """Valid contacts of one batch, in row order, with their staging payloads (one per contact)."""

    contacts: list[Contact]
    payloads: list[Payload]
    #: Rows of the file taken when this batch was complete (for progress reports).
    rows: int


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
    ) -> None:
        self.source = source
        self.plugins = plugins
        self.file = file
        self.batch_size = batch_size
        self.builder = RowBuilder(BuildSpec.of(source, header, mapping, file, sql_rows=sql_rows))
        self.helper = helper
        self._on_reject = on_reject
        #: Rows taken so far, and invalid values dropped from kept rows (``on_invalid = "drop_field"``).
        self.rows = 0
        self.dropped = 0
        self._batch: list[Contact] = []
        self._raw: list[list[str] | None] = []
        self._payloads: list[Payload] = []
        self._pending: deque[tuple[int, list[list[str] | None], Built | None]] = deque()
        self._ready: list[AcceptedBatch] = []

    def batches(self, rows: Iterable[list[str] | None]) -> Iterator[AcceptedBatch]:
        """The accepted contacts, a batch at a time; rejected rows go to ``on_reject`` as they are taken."""
        chunk: list[list[str] | None] = []
        first = 1
        try:
            try:
                for row in rows:
                    chunk.append(row)
                    if len(chunk) >= CHUNK_ROWS:
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
        if self._batch:
            self._flush()
        yield from self._drain()

    def _drain(self) -> Iterator[AcceptedBatch]:
        ready, self._ready = self._ready, []
        yield from ready

    def _reject(self, row: list[str] | None, problems: list[Problem]) -> None:
        self._on_reject(row, problems)

    def _flush(self) -> None:
        batch, raw, payloads = self._batch, self._raw, self._payloads
        self._batch, self._raw, self._payloads = [], [], []
        bad: dict[int, list[Problem]] = {}
        for i, found in self.plugins.validate_contacts(batch, self.source, self.file):
            problem = found if found.row is not None else attrs.evolve(found, row=batch[i].source_row)
            bad.setdefault(i, []).append(problem)
        if bad:
            keep = [i for i in range(len(batch)) if i not in bad]
            accepted = AcceptedBatch([batch[i] for i in keep], [payloads[i] for i in keep], self.rows)
        else:
            accepted = AcceptedBatch(batch, payloads, self.rows)
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
        make: Callable[..., Contact] = Contact  # positional: values hold the first nine fields in order
        source_name, file, batch_size = self.builder.source_name, self.file, self.batch_size
        number = first
        for row, values in zip(chunk, values_of_rows, strict=True):
            self.rows += 1
            if values.__class__ is tuple:
                self._batch.append(make(*values, source_name, file, number))
                self._raw.append(row)
                self._payloads.append(next_payload())
                if len(self._batch) >= batch_size:
                    self._flush()
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
