"""The columnar path: a CSV file's rows checked a column at a time (SPEC 3, 9), same outcome.

A file whose rows take :class:`~truagents_import.pipeline.builder.RowBuilder`'s one-column path (UTF-8,
plain or gzip, no preamble, one column per field) is parsed by Arrow's CSV reader
in batches of columns, and each field is checked on whole columns: stripping, emails (a plain ASCII
address at a domain email-validator accepts), phones (:mod:`~truagents_import.fields.phone_columns`),
and time zones, opt-outs and tags once per distinct value. Every value the columnar rules cannot
decide is handed to the same normaliser the row path calls, and the rare row that needs the row
path's other rules (several values in a cell, a text marker on its phone) is built by the row builder
itself. The staged rows, rejected rows (in row order, with the same problems) and counts are those of
the row path; ``tests/test_columnar.py`` compares the two on the benchmark file and on odd files.

Anything the reader cannot take as the row path does (a ragged row, a field over ``max_field_size``,
text that is not UTF-8, gzip past ``max_decompressed_size``) raises :class:`NotColumnar`: the caller
discards what was staged and reads the file again row by row, which reports it exactly.
"""

from __future__ import annotations

import functools
import heapq
import marshal
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv

from truagents_import._arrow import falses, mask_at
from truagents_import._jsontext import dumps, dumps_attributes, dumps_tags
from truagents_import.errors import FieldError
from truagents_import.fields.contact import normalise_email, normalise_timezone, split_full_name
from truagents_import.fields.countries import region_of
from truagents_import.fields.email_address import _ADDRESS_MAX, _LOCAL_MAX, _plain_domain
from truagents_import.fields.mapping import FULL_NAME
from truagents_import.fields.normalise import normalise_tags
from truagents_import.fields.phone_columns import read_phones
from truagents_import.fields.several import SEPARATOR, normalise_opt_out
from truagents_import.pipeline.builder import BuildSpec, RowBuilder, Values
from truagents_import.pipeline.process import WIDE_COLUMNS
from truagents_import.reading import FileRejected, Shape, open_binary
from truagents_import.report import Problem

__all__ = ["ColumnBuilder", "NotColumnar", "columnar_refusal", "raw_rows", "read_batches"]

#: Bytes of CSV text Arrow's reader parses at a time: its memory grows with this (about 70 times it,
#: measured), so it reads small blocks ...
BLOCK_BYTES = 128 << 10
#: ... and they are checked in batches of about this many bytes of Arrow arrays (about 30,000 rows of
#: the benchmark file): every column operation has a fixed cost, worth paying per batch, not per block.
BATCH_BYTES = 4 << 20
#: Rows made into Python values (and staged) at a time: their objects, not the arrays, are the bulk
#: of the columnar path's memory.
STAGE_ROWS = 4096
#: Every character Python's ``str.strip()`` removes (Arrow's own whitespace set differs a little).
_WHITESPACE = "".join(c for c in map(chr, range(0x110000)) if c.isspace())
#: A lower-cased plain address (email_address._PLAIN_ADDRESS) as RE2 reads it.
_ATEXT = r"a-zA-Z0-9_!#$%&'*+\-/=?^`{|}~"
_PLAIN_ADDRESS = rf"^[{_ATEXT}]+(?:\.[{_ATEXT}]+)*@[a-z0-9.\-]+$"
#: Characters JSON escapes other than ``"`` and ``\``: a cell holding one is written by json itself.
_JSON_CONTROL = r"[\x00-\x1f]"

#: A staged row: (row number, identity, *payload), as :meth:`Staging.add` takes them.
Staged = tuple[Any, ...]
#: A rejected row: its number, its cells and its problems.
Rejected = tuple[int, list[str], list[Problem]]


class NotColumnar(Exception):
    """This file (or a part of it found later) needs the row path."""


def columnar_refusal(spec: BuildSpec, shape: Shape, *, validates: bool) -> str | None:
    """Why a file of this shape cannot take the columnar path (``None``: it can)."""
    fields = dict(spec.fields)
    reasons = [
        (shape.compression not in (None, "gzip"), "compressed"),
        (shape.encoding not in ("utf-8", "utf-8-sig"), "not UTF-8"),
        (shape.preamble_lines > 0, "a preamble"),
        (any("\n" in h or "\r" in h for h in shape.header), "a header cell on several lines"),
        (bool(spec.more) or "subscribed" in fields, "several columns for a field"),
        (spec.infer_timezone, "infer_timezone"),
        (validates and len(shape.header) > WIDE_COLUMNS, "a plugin validates contacts of a wide file"),
        (len({name for name, _ in spec.attributes}) < len(spec.attributes), "repeated column names"),
    ]
    return next((why for refused, why in reasons if refused), None)


def read_batches(path: Path, shape: Shape, max_field_size: int, max_decompressed_size: int) -> Iterator[list[pa.Array]]:
    """The file's data rows as lists of string columns, a batch at a time; :class:`NotColumnar` for
    anything Arrow's reader would read otherwise than the row path (ragged rows, bad UTF-8, huge fields,
    a gzip file that decompresses past ``max_decompressed_size``)."""
    with open_binary(path, max_decompressed_size) as (stream, compression):
        # A plain file is read by Arrow itself; a gzip file through Python's decompressor and its limit.
        yield from _batches(stream if compression else path, shape, max_field_size)


def _batches(source: Path | BinaryIO, shape: Shape, max_field_size: int) -> Iterator[list[pa.Array]]:
    names = [f"c{i}" for i in range(len(shape.header))]
    try:
        reader = pcsv.open_csv(
            source,
            read_options=pcsv.ReadOptions(column_names=names, skip_rows=1, block_size=BLOCK_BYTES),
            parse_options=pcsv.ParseOptions(delimiter=shape.delimiter, newlines_in_values=True),
            convert_options=pcsv.ConvertOptions(
                column_types=dict.fromkeys(names, pa.string()),
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
        blocks: list[pa.RecordBatch] = []
        held = 0
        for block in reader:
            blocks.append(block)
            held += block.nbytes
            if held >= BATCH_BYTES:
                yield _batch(blocks, max_field_size)
                blocks, held = [], 0
        if blocks:
            yield _batch(blocks, max_field_size)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, FileRejected, EOFError, zlib.error) as exc:
        raise NotColumnar(str(exc)) from None


def _batch(blocks: list[pa.RecordBatch], max_field_size: int) -> list[pa.Array]:
    """The blocks' rows as one list of columns."""
    table = pa.Table.from_batches(blocks).combine_chunks()
    columns = [column.chunk(0) if column.num_chunks else pa.array([], pa.string()) for column in table.columns]
    if any((pc.max(pc.binary_length(c)).as_py() or 0) > max_field_size for c in columns):
        raise NotColumnar("a field is larger than max_field_size")
    return columns


def _strip(column: pa.Array) -> pa.Array:
    return pc.utf8_trim(column, _WHITESPACE)


def _null_if_empty(column: pa.Array) -> pa.Array:
    return pc.if_else(pc.equal(column, ""), pa.scalar(None, pa.string()), column)


def _distinct(column: pa.Array, judge: Callable[[str], Any]) -> list[Any]:
    """``judge`` of each value of ``column``, asked once per distinct value (a refusal as the FieldError)."""
    encoded = pc.dictionary_encode(column)
    verdicts: list[Any] = []
    for value in encoded.dictionary.to_pylist():
        try:
            verdicts.append(judge(value) if value else None)
        except FieldError as exc:
            verdicts.append(exc.kept())
    return [verdicts[i] for i in encoded.indices.to_pylist()]


class ColumnBuilder:
    """Turns batches of columns into staged rows and rejected rows, as :class:`RowBuilder` would."""

    def __init__(self, spec: BuildSpec) -> None:
        self.spec = spec
        #: The row builder: for the rare rows that need its other rules, and its identity rule.
        self.rows = RowBuilder(spec)
        self.fields = dict(spec.fields)
        self._country = self.fields.get("country") if spec.region_from_country and "phone" in self.fields else None
        self._attribute_keys = [dumps(name) for name, _ in spec.attributes]

    @property
    def dropped(self) -> int:
        return self.rows.dropped

    def build(self, columns: list[pa.Array], first: int) -> tuple[Iterator[list[Staged]], list[Rejected]]:
        """The staged rows of a batch whose first row is data row ``first``, in chunks of at most
        :data:`STAGE_ROWS` (Python values are made a chunk at a time), and its rejected rows; each in
        row order."""
        size = len(columns[0]) if columns else 0
        verdicts = self._verdicts(columns, size)
        identity = self._identity(verdicts, size)
        bad = self._bad_rows(verdicts, identity, first)
        good = [i for i in range(size) if i not in bad]
        extra: list[Staged] = []
        rejected: list[Rejected] = []
        if bad:
            where = sorted(bad)
            raw = raw_rows(columns, where)
            for i, cells in zip(where, raw, strict=True):
                problems = bad[i]
                number = first + i
                if problems is None:  # the row builder's own rules
                    built, problems = self.rows.values(cells, number)
                    if built is not None:
                        extra.append(self._payload(number, built))
                        continue
                rejected.append((number, cells, problems))
        return self._chunks(columns, verdicts, identity, good, extra, first), rejected

    def _chunks(
        self,
        columns: list[pa.Array],
        verdicts: dict[str, Any],
        identity: pa.Array,
        good: list[int],
        extra: list[Staged],
        first: int,
    ) -> Iterator[list[Staged]]:
        """The rows ``good`` staged a chunk at a time, with the row builder's rows ``extra`` in row order."""
        for at in range(0, max(len(good), 1), STAGE_ROWS):
            chunk = self._staged(columns, verdicts, identity, good[at : at + STAGE_ROWS], first)
            if extra:
                end = at + STAGE_ROWS
                bound = first + good[end] if end < len(good) else None
                mine = [row for row in extra if bound is None or row[0] < bound]
                extra = extra[len(mine) :]
                chunk = list(heapq.merge(chunk, mine))
            if chunk:
                yield chunk

    # -- the fields -------------------------------------------------------------------------------

    def _column(self, columns: list[pa.Array], field: str) -> pa.Array | None:
        index = self.fields.get(field)
        return None if index is None else _strip(columns[index])

    def _verdicts(self, columns: list[pa.Array], size: int) -> dict[str, Any]:
        """Each field's column of values (null: absent), and its refusals by row."""
        out: dict[str, Any] = {}
        external_id = self._column(columns, "external_id")
        if external_id is not None:
            marked = pc.starts_with(external_id, "'")
            if pc.any(marked).as_py():
                unmarked = pc.utf8_ltrim(pc.utf8_slice_codeunits(external_id, 1), _WHITESPACE)
                external_id = pc.if_else(marked, unmarked, external_id)
            out["external_id"] = _null_if_empty(external_id)
        out["email"] = self._emails(self._column(columns, "email"))
        out["phone"] = self._phones(columns, self._column(columns, "phone"))
        for name in ("first_name", "last_name"):
            column = self._column(columns, name)
            out[name] = None if column is None else _null_if_empty(column)
        if FULL_NAME in self.fields:
            names = [split_full_name(v) for v in _strip(columns[self.fields[FULL_NAME]]).to_pylist()]
            out["first_name"] = pa.array([n[0] for n in names], pa.string())
            out["last_name"] = pa.array([n[1] for n in names], pa.string())
        timezone = self._column(columns, "timezone")
        out["timezone"] = None if timezone is None else _distinct(timezone, normalise_timezone)
        opt_out = self._column(columns, "unsubscribed")
        out["unsubscribed"] = None if opt_out is None else _distinct(opt_out, normalise_opt_out)
        tags = self.fields.get("tags")
        out["tags"] = None if tags is None else _distinct(columns[tags], _tags_text)
        out["attributes"] = self._attributes(columns, size)
        out["raw_email"] = self._column(columns, "email")
        out["raw_phone"] = self._column(columns, "phone")
        out["raw_timezone"], out["raw_unsubscribed"] = timezone, opt_out
        return out

    def _emails(self, column: pa.Array | None) -> tuple[pa.Array, dict[int, FieldError]] | None:
        """Each email normalised (null: empty or refused), and the refusals by row."""
        if column is None:
            return None
        lower = pc.ascii_lower(column)
        plain = pc.and_(pc.string_is_ascii(column), pc.match_substring_regex(lower, _PLAIN_ADDRESS))
        parts = pc.split_pattern(pc.if_else(plain, lower, "@"), "@", max_splits=1)
        local, domain = pc.list_element(parts, 0), pc.list_element(parts, 1)
        known = pc.dictionary_encode(domain)
        verdicts = [_plain_domain(d) if d else None for d in known.dictionary.to_pylist()]
        normal = pa.array([None if v is None else v[0] for v in verdicts], pa.string()).take(known.indices)
        widest = pa.array([None if v is None else v[1] for v in verdicts], pa.int64()).take(known.indices)
        local_bytes = pc.binary_length(local)
        fits = pc.and_(
            pc.less_equal(local_bytes, _LOCAL_MAX), pc.less_equal(pc.add(pc.add(local_bytes, 1), widest), _ADDRESS_MAX)
        )
        ok = pc.fill_null(pc.and_(plain, fits), False)
        emails = pc.if_else(ok, pc.binary_join_element_wise(local, normal, "@"), pa.scalar(None, pa.string()))
        errors: dict[int, FieldError] = {}
        rest = pc.indices_nonzero(pc.and_(pc.invert(ok), pc.not_equal(column, ""))).to_pylist()
        if rest:
            found: dict[int, str] = {}
            for i, value in zip(rest, column.take(pa.array(rest, pa.int64())).to_pylist(), strict=True):
                try:
                    found[i] = normalise_email(value)
                except FieldError as exc:
                    errors[i] = exc.kept()
            if found:  # rest is in row order, and so is found
                replaced = pa.array(list(found.values()), pa.string())
                emails = pc.replace_with_mask(emails, mask_at(len(column), list(found)), replaced)
        return emails, errors

    def _phones(
        self, columns: list[pa.Array], column: pa.Array | None
    ) -> tuple[pa.Array, dict[int, FieldError]] | None:
        if column is None:
            return None
        primary = None
        if self._country is not None:
            countries = _strip(columns[self._country])
            primary = pa.array(_distinct(countries, self._region), pa.string())
        phones = read_phones(column, primary, self.spec.region)
        return phones.e164, phones.errors

    def _region(self, country: str) -> str | None:
        """The region a row's country names, when it differs from default_region (SPEC 9)."""
        region = region_of(country)
        return None if region is None or region == self.spec.region else region

    def _attributes(self, columns: list[pa.Array], size: int) -> pa.Array:
        """Each row's attributes as the JSON text ``dumps_attributes`` writes."""
        if not self.spec.attributes:
            return pa.array(["{}"] * size, pa.string())
        pieces: list[pa.Array | str] = []
        control = falses(size)
        for n, ((_name, index), key) in enumerate(zip(self.spec.attributes, self._attribute_keys, strict=True)):
            cell = columns[index]
            control = pc.or_(control, pc.match_substring_regex(cell, _JSON_CONTROL))
            escaped = pc.replace_substring(pc.replace_substring(cell, "\\", "\\\\"), '"', '\\"')
            pieces += [("{" if n == 0 else ", ") + key + ': "', escaped, '"']
        pieces[-1] = '"}'
        text = pc.binary_join_element_wise(*pieces, "")
        odd = pc.indices_nonzero(control).to_pylist()
        if odd:  # a control character: json writes those cells itself
            texts = [
                dumps_attributes({name: row[i] for name, i in self.spec.attributes}) for row in raw_rows(columns, odd)
            ]
            text = pc.replace_with_mask(text, mask_at(size, odd), pa.array(texts, pa.string()))
        return text

    # -- rows ---------------------------------------------------------------------------------------

    def _bad_rows(self, verdicts: dict[str, Any], identity: pa.Array, first: int) -> dict[int, list[Problem] | None]:
        """Rows not staged as they are: their problems, or ``None`` for rows the row builder builds."""
        special = _special_rows(verdicts)
        bad: dict[int, list[Problem] | None] = dict.fromkeys(special)
        drop = self.spec.drop_invalid
        for i, found in _refusals(verdicts).items():
            if i not in special:
                problems = [self._problem(verdicts, field, exc, i, first + i) for field, exc in found]
                bad[i] = None if drop else problems
        for i in pc.indices_nonzero(pc.is_null(identity)).to_pylist():
            bad.setdefault(i, None)  # the row builder says why (missing_identity)
        return bad

    def _problem(self, verdicts: dict[str, Any], field: str, exc: FieldError, i: int, number: int) -> Problem:
        value = verdicts[f"raw_{field}"][i].as_py()
        column = self.spec.header[self.fields[field]]
        return Problem(code=exc.code, message=exc.message, column=column, row=number, value=value)

    def _identity(self, verdicts: dict[str, Any], size: int) -> pa.Array:
        found = [verdicts["external_id"]] if verdicts.get("external_id") is not None else []
        found += [verdicts[f][0] for f in ("email", "phone") if verdicts[f] is not None]
        return pc.coalesce(*found) if found else pa.nulls(size, pa.string())

    def _staged(
        self, columns: list[pa.Array], verdicts: dict[str, Any], identity: pa.Array, good: list[int], first: int
    ) -> list[Staged]:
        if not good:
            return []
        take = pa.array(good, pa.int64())

        def values(column: pa.Array | None) -> list[Any]:
            return [None] * len(good) if column is None else column.take(take).to_pylist()

        timezone = verdicts["timezone"]
        default = self.spec.default_timezone
        zones = [default] * len(good) if timezone is None else [timezone[i] or default for i in good]
        unsubscribed = verdicts["unsubscribed"]
        opt_outs = [None] * len(good) if unsubscribed is None else [unsubscribed[i] for i in good]
        tags = verdicts["tags"]
        tag_texts = ["[]"] * len(good) if tags is None else [tags[i] or "[]" for i in good]
        numbers = [first + i for i in good]
        rows = zip(
            numbers,
            values(identity),
            values(verdicts.get("external_id")),
            values(None if verdicts["email"] is None else verdicts["email"][0]),
            values(None if verdicts["phone"] is None else verdicts["phone"][0]),
            values(verdicts["first_name"]),
            values(verdicts["last_name"]),
            zones,
            tag_texts,
            opt_outs,
            values(verdicts["attributes"]),
            strict=True,
        )
        if self.spec.sql_rows:
            return [(*row[:9], None if row[9] is None else int(row[9]), row[10]) for row in rows]
        # The marshal layout (sinks other than sqlite): the values themselves, tags and attributes as objects.
        tag_tuples = [()] * len(good) if tags is None else list(map(_tags_tuple, values(columns[self.fields["tags"]])))
        names = [name for name, _ in self.spec.attributes]
        cells = [columns[index].take(take).to_pylist() for _, index in self.spec.attributes]
        attributes = (
            [dict(zip(names, row, strict=True)) for row in zip(*cells, strict=True)] if cells else [{}] * len(good)
        )
        dumps_ = marshal.dumps
        return [
            (n, identity, dumps_((e, m, p, f, la, tz, t, u, a)))
            for (n, identity, e, m, p, f, la, tz, _, u, _), t, a in zip(rows, tag_tuples, attributes, strict=True)
        ]

    def _payload(self, number: int, built: Values) -> Staged:
        """A row the row builder built, staged as :func:`build_chunk` stages it."""
        identity = built[0] or built[1] or built[2]
        if not self.spec.sql_rows:
            return (number, identity, marshal.dumps(built))
        external_id, email, phone, first_name, last_name, timezone, tags, unsubscribed, attributes = built
        unsub = None if unsubscribed is None else int(unsubscribed)
        return (number, identity, external_id, email, phone, first_name, last_name, timezone,
                dumps_tags(tags), unsub, dumps_attributes(attributes))  # fmt: skip


#: The order in which the row builder checks fields (and lists their problems).
_ORDER = {"email": 0, "phone": 1, "timezone": 2, "unsubscribed": 3}


def _special_rows(verdicts: dict[str, Any]) -> set[int]:
    """Rows the row builder's other rules build: several values in a cell, a text marker on a phone."""
    special: set[int] = set()
    for raw in (verdicts["raw_email"], verdicts["raw_phone"]):
        if raw is not None:
            special.update(pc.indices_nonzero(pc.match_substring(raw, SEPARATOR)).to_pylist())
    if verdicts["raw_phone"] is not None:
        special.update(pc.indices_nonzero(pc.starts_with(verdicts["raw_phone"], "'")).to_pylist())
    return special


def _refusals(verdicts: dict[str, Any]) -> dict[int, list[tuple[str, FieldError]]]:
    """Each row's refused fields, in the order the row builder checks them."""
    refused: dict[int, list[tuple[str, FieldError]]] = {}
    for field in ("email", "phone"):
        if verdicts[field] is not None:
            for i, exc in verdicts[field][1].items():
                refused.setdefault(i, []).append((field, exc))
    for field in ("timezone", "unsubscribed"):
        if verdicts[field] is not None:
            for i, verdict in enumerate(verdicts[field]):
                if verdict.__class__ is FieldError:
                    refused.setdefault(i, []).append((field, verdict))
    for found in refused.values():
        found.sort(key=lambda pair: _ORDER[pair[0]])
    return refused


def _tags_text(value: str) -> str:
    return dumps_tags(normalise_tags(value))


@functools.lru_cache(maxsize=4096)
def _tags_tuple(value: str) -> tuple[str, ...]:
    return normalise_tags(value)


def raw_rows(columns: list[pa.Array], where: list[int]) -> list[list[str]]:
    """The cells of rows ``where``, as the row path reads them."""
    take = pa.array(where, pa.int64())
    cells = [column.take(take).to_pylist() for column in columns]
    return [list(row) for row in zip(*cells, strict=True)]
