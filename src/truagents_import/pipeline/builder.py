"""The row builder: one raw row to a contact's values, or to the problems that reject it (SPEC 3, 9).

:class:`RowBuilder` reads each field from its column, normalises and checks it; the one-column
path (most files) is kept tight, the SPEC 9 path (several columns or values for a field,
consent columns, the phone region of the row's country) takes the first valid value and keeps
the rest in attributes. :func:`build_chunk` builds a chunk of rows the same way in either
process (the helper process gets the picklable :class:`BuildSpec` with every chunk).
"""

from __future__ import annotations

import contextlib
import functools
import marshal
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import attrs

from truagents_import._jsontext import dumps_attributes, dumps_tags
from truagents_import.fields.contact import (
    FieldError,
    infer_timezone,
    normalise_email,
    normalise_phone,
    normalise_region,
    normalise_tags,
    normalise_timezone,
    prepare_phone_parsing,
    split_full_name,
)
from truagents_import.fields.countries import region_of
from truagents_import.fields.mapping import FULL_NAME, ColumnMapping
from truagents_import.fields.several import (
    SEPARATOR,
    choose,
    normalise_consent,
    normalise_opt_out,
    read_phone,
    strip_text_marker,
)
from truagents_import.fields.validators import missing_identity
from truagents_import.report import Problem

if TYPE_CHECKING:
    from truagents_import.source import DataSource

__all__ = ["BuildSpec", "Built", "Kept", "Payload", "RowBuilder", "Values", "build_chunk"]

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
    #: Further columns of a field, in order of preference (SPEC 9).
    more: tuple[tuple[str, tuple[int, ...]], ...] = ()
    #: Read phones in the region of the row's country column first (SPEC 9).
    region_from_country: bool = True
    #: Hand back each valid row's values (to make contacts of); without it only ``(identity,)``,
    #: all that staging needs besides the payload (the helper's answers are then much smaller).
    keep_values: bool = True

    @classmethod
    def of(
        cls,
        source: DataSource,
        header: list[str],
        mapping: ColumnMapping,
        file: str,
        *,
        sql_rows: bool = False,
        keep_values: bool = True,
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
            more=tuple(mapping.more.items()),
            region_from_country=bool(source.phone_region_from_country),
            keep_values=keep_values,
        )


class RowBuilder:
    """Turns one raw row into a contact, or into the problems that reject it (SPEC 3).

    Cells are stripped; an empty cell is an absent value. A value its normaliser refuses
    rejects the row (``invalid_<field>``, one problem per bad cell), or, with
    ``on_invalid = "drop_field"``, is dropped as if the cell were empty; a row left with no
    identity because its identity values were dropped is rejected with ``missing_identity``, as is
    a row with no identity at all (the rule of the built-in ``validate_contacts`` plugin, applied
    here so that no contact object is needed unless a plugin asks for contacts).
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
        more = dict(spec.more)
        self._columns = {f: (i, *more.get(f, ())) for f, i in fields.items()}
        #: Whether rows need SPEC 9's rules (several columns for a field, consent columns, the row's
        #: country) rather than the one-column path.
        self._rich = bool(more) or "subscribed" in fields
        #: The country column whose value picks the phone region of a row (one-column path), if any.
        self._country = fields.get("country") if spec.region_from_country and "phone" in fields else None
        self._readers: dict[str, Callable[[str], str]] = {}
        #: Invalid values dropped from rows that were kept (``on_invalid = "drop_field"``).
        self.dropped = 0

    def _problem(self, exc: FieldError, index: int, number: int, raw: str) -> Problem:
        return Problem(code=exc.code, message=exc.message, column=self.header[index], row=number, value=raw)

    def values(self, row: list[str], number: int) -> tuple[Values | None, list[Problem]]:
        """The first nine fields of data row ``number``'s contact (counted from 1), or ``None`` and why not."""
        if len(row) != self.width:
            message = f"{len(row)} fields where the header has {self.width}"
            return None, [Problem(code="ragged_row", message=message, row=number)]
        i = self._email
        raw_email = "" if i is None else row[i].strip()
        i = self._phone
        raw_phone = "" if i is None else row[i].strip()
        if self._rich or SEPARATOR in raw_email or SEPARATOR in raw_phone or raw_phone[:1] == "'":
            return self._rich_values(row, number)
        bad: list[Problem] = []
        checked = self._checked
        i = self._external_id
        external_id = None if i is None else strip_text_marker(row[i].strip()) or None
        email = checked(normalise_email, raw_email, self._email, number, bad) if raw_email else None
        phone = self._phone_of(row, raw_phone, number, bad) if raw_phone else None
        i = self._full_name
        if i is not None:
            first, last = split_full_name(row[i].strip())
        else:
            i = self._first_name
            first = None if i is None else row[i].strip() or None
            i = self._last_name
            last = None if i is None else row[i].strip() or None
        i = self._timezone
        raw = "" if i is None else row[i].strip()
        timezone = checked(normalise_timezone, raw, i, number, bad) if raw else None
        if timezone is None:  # empty, or dropped as invalid: the source's default applies
            timezone = (infer_timezone(phone) if self.infer_timezone and phone else None) or self.default_timezone
        i = self._unsubscribed
        raw = "" if i is None else row[i].strip()
        unsubscribed = checked(normalise_opt_out, raw, i, number, bad) if raw else None
        refused = self._refused(bad, number, external_id is not None or email is not None or phone is not None)
        if refused is not None:
            return None, refused
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

    def _refused(self, bad: list[Problem], number: int, identified: bool) -> list[Problem] | None:
        """Why a built row is rejected, or None to keep it (its invalid values dropped with ``drop_field``)."""
        if bad:
            if not self.drop_invalid:
                return bad
            if not identified and (lost := _identity_lost(bad, number)):
                return [lost]
            self.dropped += len(bad)
        return None if identified else [missing_identity(number)]

    def _checked(
        self, normalise: Callable[[str], Any], raw: str, index: int | None, number: int, bad: list[Problem]
    ) -> Any:
        """``normalise(raw)``, or None with the refusal added to ``bad``."""
        try:
            return normalise(raw)
        except FieldError as exc:
            assert index is not None
            bad.append(self._problem(exc, index, number, raw))
            return None

    def _phone_of(self, row: list[str], raw: str, number: int, bad: list[Problem]) -> str | None:
        """The row's phone, read in its country's region first when it has a country column (SPEC 9)."""
        i = self._country
        reader = self._read_phone if i is None or not (country := row[i].strip()) else self._phone_reader(country)
        return self._checked(reader, raw, self._phone, number, bad)  # type: ignore[no-any-return]

    def _read_phone(self, raw: str) -> str:
        return normalise_phone(raw, self.region)

    def _phone_reader(self, country: str) -> Callable[[str], str]:
        """How a row whose country cell is ``country`` reads its phone (SPEC 9), remembered per value."""
        reader = self._readers.get(country)
        if reader is None:
            region = region_of(country)
            if region is None or region == self.region:
                reader = self._read_phone
            else:
                regions = (region, self.region) if self.region else (region,)
                reader = functools.partial(read_phone, regions=regions)
            if len(self._readers) < 1024:
                self._readers[country] = reader
        return reader

    def _rich_values(self, row: list[str], number: int) -> tuple[Values | None, list[Problem]]:
        """:meth:`values` under SPEC 9's rules: several columns and values per field, consent columns,
        the phone read in the row's country first; every value not taken stays in attributes."""
        columns, header = self._columns, self.header
        bad: list[Problem] = []
        left: list[tuple[int, str]] = []

        def take(field: str, normalise: Callable[[str], object]) -> Any:
            value, refused, unused = choose(row, columns.get(field, ()), normalise)
            left.extend(unused)
            if refused is not None:
                index, raw, exc = refused
                bad.append(self._problem(exc, index, number, raw))
            return value

        external_id = _first_cell(row, columns.get("external_id", ()), left, strip_text_marker)
        email = take("email", normalise_email)
        regions = self._regions(row)
        phone = take("phone", lambda value: read_phone(value, regions))
        if FULL_NAME in columns:
            first, last = split_full_name(_first_cell(row, columns[FULL_NAME], left) or "")
        else:
            first = _first_cell(row, columns.get("first_name", ()), left)
            last = _first_cell(row, columns.get("last_name", ()), left)
        timezone = take("timezone", normalise_timezone)
        if timezone is None:  # empty, or dropped as invalid: the source's default applies
            timezone = (infer_timezone(phone) if self.infer_timezone and phone else None) or self.default_timezone
        if columns.get("unsubscribed") and any(row[i].strip() for i in columns["unsubscribed"]):
            unsubscribed = take("unsubscribed", normalise_opt_out)
            left.extend((i, row[i]) for i in columns.get("subscribed", ()) if row[i].strip())
        else:
            unsubscribed = take("subscribed", normalise_consent)
        tags = _first_cell(row, columns.get("tags", ()), left)
        refused = self._refused(bad, number, external_id is not None or email is not None or phone is not None)
        if refused is not None:
            return None, refused
        attributes = {name: row[index] for name, index in self.attributes}
        for index, text in left:
            attributes[header[index]] = text
        values = (
            external_id,
            email,
            phone,
            first,
            last,
            timezone,
            normalise_tags(tags or ""),
            unsubscribed,
            attributes,
        )
        return values, _NO_PROBLEMS

    def _regions(self, row: list[str]) -> tuple[str | None, ...]:
        """Where a phone without ``+`` is read: the row's country (SPEC 9), then the source's default_region."""
        if self.spec.region_from_country:
            for index in self._columns.get("country", ()):
                region = region_of(row[index]) if row[index].strip() else None
                if region is not None and region != self.region:
                    return (region, self.region) if self.region else (region,)
                if region is not None:
                    break
        return (self.region,)


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

#: A valid row as the helper hands it back: its values, or ``(identity,)`` when
#: :attr:`BuildSpec.keep_values` is off.
Kept = Values | tuple[str | None]

#: A chunk of rows built: per row ``None`` (a field too large: the row was never read),
#: its problems (a list) or its values (a tuple); the staging payload of each row with values,
#: in order; and how many invalid values were dropped (``on_invalid = "drop_field"``).
Built = tuple[list[list[Problem] | Kept | None], list[Payload], int]


def build_chunk(builder: RowBuilder, first: int, rows: Sequence[list[str] | None]) -> Built:
    """Build the rows of a chunk whose first row is data row ``first``; the same in either process."""
    values = builder.values
    sql_rows, keep = builder.spec.sql_rows, builder.spec.keep_values
    dumps, tags_text, attributes_text = marshal.dumps, dumps_tags, dumps_attributes
    out: list[list[Problem] | Kept | None] = []
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
            out.append(built if keep else (built[0] or built[1] or built[2],))
            payloads.append((dumps(built),))
        else:
            out.append(built if keep else (built[0] or built[1] or built[2],))
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


def _first_cell(
    row: list[str], columns: Sequence[int], left: list[tuple[int, str]], clean: Callable[[str], str] = str.strip
) -> str | None:
    """The first non-empty cell of ``columns`` (cleaned); the other non-empty ones go to ``left``."""
    taken: str | None = None
    for index in columns:
        cell = row[index].strip()
        if not cell:
            continue
        if taken is None:
            taken = clean(cell) or None
        else:
            left.append((index, row[index]))
    return taken
