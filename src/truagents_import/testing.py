"""Test helpers for plugin authors: an embedded SFTP server, a data source on it, messy CSV files.

This module is a pytest plugin, registered under the ``pytest11`` entry point as
``truagents_import``: with truagents-import installed, every test suite can use these fixtures
without importing anything (disable them with ``-p no:truagents_import``). Each fixture name
starts with ``truagents_`` so that it cannot clash with a project's own fixtures.

=========================  ==============================================================
fixture                    what it gives
=========================  ==============================================================
``truagents_client_key``   an ed25519 client key (one per test session)
``truagents_host_key``     the server's ed25519 host key (one per test session)
``truagents_key_file``     the client key written to a 0600 file, as a user would have it
``truagents_sftp_server``  a running :class:`~truagents_import.remote.server.SFTPServer` on
                           127.0.0.1 (a free port), key auth only, with an ``/inbox`` folder
``truagents_inbox``        the local folder behind ``/inbox``: put the files to import here
``truagents_integration``  an :class:`~truagents_import.Integration` to that server, its host
                           key pinned by fingerprint
``truagents_source``       a :class:`~truagents_import.DataSource` named ``test`` on ``/inbox``
                           (``*.csv`` and ``*.csv.gz``, ``min_age = 0``, ``default_region = "US"``)
``truagents_messy_csv``    :func:`make_messy_csv`, to make realistic, messy contact files
=========================  ==============================================================

:func:`write_export` writes a file the way another system exports contacts (an export
:class:`~truagents_import.Layout`: its columns, encoding, delimiter, line endings and preamble),
so a plugin author can test a layout of their own.

A test of a plugin then reads like the project's own tests::

    from truagents_import import Importer, MemorySink

    def test_my_plugin(truagents_source, truagents_inbox, truagents_messy_csv):
        messy = truagents_messy_csv(rows=200, seed=1)
        messy.write(truagents_inbox, "contacts.csv")
        sink = MemorySink()
        with Importer(truagents_source, sink, plugins=[my_plugin]) as importer:
            [result] = importer.run().files
        assert (result.rows, result.imported) == (messy.rows, messy.imported)
"""

from __future__ import annotations

import csv
import gzip
import io
import os
import random
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

import asyncssh
import attrs
import pytest

from truagents_import.fields.layout import Layout
from truagents_import.remote import keys
from truagents_import.remote.integration import Integration
from truagents_import.remote.server import SFTPServer
from truagents_import.source import DataSource

__all__ = [
    "ENCODINGS",
    "MessyCSV",
    "MessyRow",
    "make_messy_csv",
    "write_export",
    "truagents_client_key",
    "truagents_host_key",
    "truagents_inbox",
    "truagents_integration",
    "truagents_key_file",
    "truagents_messy_csv",
    "truagents_sftp_server",
    "truagents_source",
]

#: The user name the test server accepts.
USERNAME = "truagents"

# -- fixtures -------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def truagents_client_key() -> asyncssh.SSHKey:
    """An ed25519 client key, made once per test session."""
    return keys.generate_key_pair("truagents-import-tests")


@pytest.fixture(scope="session")
def truagents_host_key() -> asyncssh.SSHKey:
    """The test server's ed25519 host key, made once per test session."""
    return keys.generate_key_pair("truagents-import-test-server")


@pytest.fixture
def truagents_key_file(tmp_path: Path, truagents_client_key: asyncssh.SSHKey) -> Path:
    """The client key written as a user keeps it: private key 0600 in a 0700 folder (``.pub`` beside it)."""
    return keys.write_key_pair(truagents_client_key, tmp_path / "truagents-keys", "id_ed25519").private_key


@pytest.fixture
def truagents_sftp_server(
    tmp_path: Path, truagents_client_key: asyncssh.SSHKey, truagents_host_key: asyncssh.SSHKey
) -> Iterator[SFTPServer]:
    """A running embedded SFTP server on 127.0.0.1 that accepts only the client key, with ``/inbox``.

    Its root is a fresh folder under ``tmp_path``; it is stopped after the test.
    """
    root = tmp_path / "truagents-sftp"
    (root / "inbox").mkdir(parents=True)
    server = SFTPServer(root, [keys.public_line(truagents_client_key)], host_key=truagents_host_key, username=USERNAME)
    with server:
        yield server


@pytest.fixture
def truagents_inbox(truagents_sftp_server: SFTPServer) -> Path:
    """The local folder the server shows as ``/inbox``: write the files to import here."""
    return truagents_sftp_server.root / "inbox"


@pytest.fixture
def truagents_integration(truagents_sftp_server: SFTPServer, truagents_key_file: Path) -> Iterator[Integration]:
    """An integration to the test server, with its host key pinned by fingerprint; closed after the test."""
    integration = Integration(
        host=truagents_sftp_server.host,
        port=truagents_sftp_server.port,
        username=USERNAME,
        private_key=truagents_key_file,
        host_key=truagents_sftp_server.host_key_fingerprint,
    )
    try:
        yield integration
    finally:
        integration.close()


@pytest.fixture
def truagents_source(truagents_integration: Integration) -> DataSource:
    """A data source named ``test`` on ``/inbox`` of the test server.

    Files count as complete at once (``min_age = 0``); phone numbers without a country code are
    read as US numbers (``default_region = "US"``), which is what :func:`make_messy_csv` expects.
    Change anything with ``attrs.evolve(truagents_source, ...)``.
    """
    return DataSource(
        name="test",
        path="/inbox",
        pattern="re:.*\\.csv(\\.gz)?$",
        min_age=0,
        default_region="US",
        integration=truagents_integration,
    )


@pytest.fixture
def truagents_messy_csv() -> Callable[..., MessyCSV]:
    """:func:`make_messy_csv`, as a fixture: ``truagents_messy_csv(rows=100, seed=3)``."""
    return make_messy_csv


# -- messy contact files --------------------------------------------------------------------------

#: The encodings :func:`make_messy_csv` picks from (all of them read by the importer).
ENCODINGS: tuple[str, ...] = ("utf-8", "utf-8-sig", "utf-16", "cp1252")
_DELIMITERS = (",", ";", "\t", "|")

#: Header spellings per field, all of them built-in aliases (SPEC 3).
_HEADERS: dict[str, tuple[str, ...]] = {
    "external_id": ("ID", "Contact ID", "customer_id", "External-Id", "RECORD ID"),
    "first_name": ("First Name", "first_name", "FNAME", "Given Name"),
    "last_name": ("Last Name", "SURNAME", "family-name", "lname"),
    "email": ("Email", "E-mail", "EMAIL_ADDRESS", "e-mail address", "Mail"),
    "phone": ("Phone", "Mobile", "Phone Number", "CELL", "tel"),
    "tags": ("Tags", "labels", "Segments"),
    "unsubscribed": ("Unsubscribed", "Opt Out", "opted_out", "Do Not Contact"),
    "timezone": ("Timezone", "Time Zone", "TZ"),
}
#: Columns no alias maps: they end up in ``attributes``.
_ATTRIBUTE_COLUMNS = ("Notes", "Account Manager")

# (as written, as ASCII for the address); every name is in Windows-1252.
_FIRST = (
    ("José", "jose"),
    ("Zoë", "zoe"),
    ("Björn", "bjorn"),
    ("François", "francois"),
    ("Renée", "renee"),
    ("Ann", "ann"),
    ("Mary Ann", "maryann"),
    ("Søren", "soren"),
    ("Li", "li"),
    ("Omar", "omar"),
)
_LAST = (
    ("Nuñez", "nunez"),
    ("O'Brien", "obrien"),
    ("Smith, Jr.", "smith"),
    ("Müller", "muller"),
    ("Lee", "lee"),
    ("García", "garcia"),
    ("Dubois", "dubois"),
    ("Okafor", "okafor"),
)
_PHONES = ("({a}) 555-01{n:02d}", "{a}.555.01{n:02d}", "+1 {a} 555 01{n:02d}", "{a}55501{n:02d}")
_AREAS = ("212", "415", "617", "206", "312")
_TAGS = ("vip", "newsletter", "b2b", "trial", "Früh-Bucher")
_TAG_SEPARATORS = (";", "; ", "|", ", ", ";;")
_BOOLS = ("yes", "No", "Y", "n", "TRUE", "0", "1", "")
_ZONES = ("America/New_York", "europe/london", "ASIA/TOKYO", "")
_NOTES = ('He said "call me"', "a, b; c | d", "=1+2", "+44 is not a formula here", "  padded  ", "Café", "")
_MULTILINE_NOTE = "line one\nline two"

#: Bad-row kinds: their weight, the problem code each one produces, and the field it needs.
_BAD_KINDS: dict[str, tuple[int, str, str | None]] = {
    "invalid_email": (5, "invalid_email", "email"),
    "invalid_phone": (4, "invalid_phone", "phone"),
    "invalid_timezone": (2, "invalid_timezone", "timezone"),
    "invalid_unsubscribed": (2, "invalid_unsubscribed", "unsubscribed"),
    "missing_identity": (3, "missing_identity", None),
    "ragged_row": (3, "ragged_row", None),
}
#: The first rows are always well-formed, so that encoding and delimiter detection see clean lines.
_CLEAN_START = 25


@attrs.frozen
class MessyRow:
    """One generated data row: what kind it is, and the cell values by field (as written)."""

    #: ``good``, ``duplicate`` (a later row for an earlier contact) or a bad kind, named by its problem code.
    kind: str
    #: Field (or attribute column) -> cell text, before the importer normalises it.
    values: Mapping[str, str]
    #: The identity the importer will give the contact (``None`` for a rejected row).
    identity: str | None


@attrs.frozen
class MessyCSV:
    """A generated contact file and what the importer should make of it.

    The expectations hold for a source with the default options and ``default_region = "US"``
    (like the ``truagents_source`` fixture), with only the built-in plugins judging rows.
    """

    #: The file's bytes (encoded, and gzip-compressed when asked).
    data: bytes
    #: The encoding the text was written in.
    encoding: str
    #: The delimiter between fields.
    delimiter: str
    #: Whether :attr:`data` is gzip-compressed (name the file ``*.csv.gz``).
    compressed: bool
    #: The header the importer will see (trimmed), in file order.
    header: tuple[str, ...]
    #: Field -> the header that carries it (attribute columns are absent).
    columns: Mapping[str, str]
    #: Every data row, in file order (blank lines, which the importer skips, are not rows).
    records: tuple[MessyRow, ...]
    #: How many contacts end up in the sink (distinct identities of the valid rows).
    imported: int
    #: How many rows are rejected.
    rejected: int
    #: How many valid rows are superseded by a later row for the same identity.
    duplicates: int
    #: Problem code -> number of rows rejected with it.
    codes: Mapping[str, int]
    #: The identities of the contacts the sink receives.
    identities: frozenset[str]

    @property
    def rows(self) -> int:
        """How many data rows the file has (``rows = imported + rejected + duplicates``)."""
        return len(self.records)

    def write(self, folder: Path | str, name: str) -> Path:
        """Write the file into ``folder`` under ``name``, atomically (a temporary name, then a rename)."""
        target = Path(folder) / name
        partial = target.with_name(f".{target.name}.part")
        partial.write_bytes(self.data)
        os.replace(partial, target)
        return target


def make_messy_csv(
    rows: int = 50,
    seed: int = 0,
    *,
    columns: Mapping[str, str | None] | None = None,
    encoding: str | None = None,
    delimiter: str | None = None,
    compress: bool = False,
    mess: bool = True,
) -> MessyCSV:
    """Make a contact CSV file the way upstream systems really send them, with its expected outcome.

    The same ``rows`` and ``seed`` always give the same file. With ``mess`` (the default), the file
    has a random encoding (UTF-8 with or without BOM, UTF-16, Windows-1252) and delimiter, header
    names spelled in varied ways, padded and mixed-case values, accented names, quoted fields with
    delimiters, quotes and newlines, cells that look like formulas, blank lines, and after the
    first 25 rows about one row in five is bad: an invalid email, phone, time zone or
    unsubscribed flag, no identity at all, the wrong number of fields, or a later row for an
    earlier contact (a duplicate). Without ``mess``: UTF-8, commas, and only good rows.

    :param rows: how many data rows to write.
    :param seed: the seed of the random choices.
    :param columns: field -> header to use for it (a vendor's names: ``{"email": "EMAIL_ADDR_1"}``),
        or ``None`` to leave that field's column out. Other fields get a built-in alias.
    :param encoding: one of :data:`ENCODINGS` (default: random with ``mess``, else UTF-8).
    :param delimiter: ``,`` ``;`` tab or ``|`` (default: random with ``mess``, else ``,``).
    :param compress: gzip the file (then name it ``*.csv.gz``).
    :param mess: add the mess described above; ``False`` gives a clean file.
    :returns: the file's bytes with the counts, codes and identities the importer should report.
    """
    if rows < 0:
        msg = f"rows must be 0 or more, got {rows}"
        raise ValueError(msg)
    rnd = random.Random(seed)
    # The order of the random choices below is part of the promise: one seed, one file.
    encoding, delimiter = _choose_format(rnd, encoding, delimiter, mess=mess)
    chosen = _choose_columns(rnd, columns, mess=mess)
    names = list(chosen.values()) + list(_ATTRIBUTE_COLUMNS)
    if len({n.strip().casefold() for n in names}) != len(names):
        msg = f"columns: two columns would have the same header: {names}"
        raise ValueError(msg)
    padded = [f" {n} " if mess and rnd.random() < 0.2 else n for n in names]
    records = _records(rnd, rows, chosen, mess=mess)
    data = _csv_text(rnd, padded, records, chosen, delimiter, mess=mess).encode(encoding)
    if compress:
        data = gzip.compress(data, mtime=0)

    identities = [r.identity for r in records if r.identity is not None]
    distinct = frozenset(identities)
    codes = Counter(_BAD_KINDS[r.kind][1] for r in records if r.kind in _BAD_KINDS)
    return MessyCSV(
        data=data,
        encoding=encoding,
        delimiter=delimiter,
        compressed=compress,
        header=tuple(names),
        columns={field: name.strip() for field, name in chosen.items()},
        records=tuple(records),
        imported=len(distinct),
        rejected=sum(codes.values()),
        duplicates=len(identities) - len(distinct),
        codes=dict(codes),
        identities=distinct,
    )


def _choose_format(rnd: random.Random, encoding: str | None, delimiter: str | None, *, mess: bool) -> tuple[str, str]:
    """The file's encoding and delimiter: the ones asked for (checked), else random with ``mess``."""
    if encoding is None:
        encoding = rnd.choice(ENCODINGS) if mess else "utf-8"
    if encoding not in ENCODINGS:
        msg = f"encoding must be one of {', '.join(ENCODINGS)}, got {encoding!r}"
        raise ValueError(msg)
    if delimiter is None:
        delimiter = rnd.choice(_DELIMITERS) if mess else ","
    if delimiter not in _DELIMITERS:
        msg = f"delimiter must be one of {_DELIMITERS!r}, got {delimiter!r}"
        raise ValueError(msg)
    return encoding, delimiter


def _choose_columns(rnd: random.Random, columns: Mapping[str, str | None] | None, *, mess: bool) -> dict[str, str]:
    """Field -> header: a built-in alias for each field (random with ``mess``), overridden by ``columns``."""
    chosen = {field: (rnd.choice(names) if mess else names[0]) for field, names in _HEADERS.items()}
    for field, name in (columns or {}).items():
        if field not in _HEADERS:
            msg = f"columns: {field!r} is not a contact field; use one of {', '.join(_HEADERS)}"
            raise ValueError(msg)
        if name is None:
            del chosen[field]
        else:
            chosen[field] = name
    return chosen


def _records(rnd: random.Random, rows: int, chosen: Mapping[str, str], *, mess: bool) -> list[MessyRow]:
    """The rows: good ones, and after the first few, with ``mess``, about one in five bad."""
    # Only the kinds whose field the file has (a duplicate needs the external_id column).
    kinds = [kind for kind, (_, _, needs) in _BAD_KINDS.items() if needs is None or needs in chosen]
    weights = [_BAD_KINDS[kind][0] for kind in kinds]
    if "external_id" in chosen:
        kinds.append("duplicate")
        weights.append(4)
    records: list[MessyRow] = []
    good_ids: list[int] = []
    for i in range(1, rows + 1):
        kind = "good"
        if mess and i > _CLEAN_START and rnd.random() < 0.2:
            kind = rnd.choices(kinds, weights)[0]
            if kind == "duplicate" and not good_ids:
                kind = "good"
        records.append(_row(rnd, i, kind, good_ids, chosen, mess=mess))
    return records


def _csv_text(
    rnd: random.Random,
    header: list[str],
    records: list[MessyRow],
    chosen: Mapping[str, str],
    delimiter: str,
    *,
    mess: bool,
) -> str:
    """The CSV text: the header, then each record's cells (a surplus one for a ragged row), blank lines in between."""
    text = io.StringIO()
    writer = csv.writer(text, delimiter=delimiter, lineterminator=rnd.choice(("\r\n", "\n")) if mess else "\n")
    writer.writerow(header)
    for number, record in enumerate(records, start=1):
        cells = [record.values.get(field, "") for field in chosen] + [
            record.values.get(column, "") for column in _ATTRIBUTE_COLUMNS
        ]
        if record.kind == "ragged_row":
            cells.append("surplus")
        writer.writerow(cells)
        if mess and number > _CLEAN_START and rnd.random() < 0.03:
            text.write("\n")  # a blank line: skipped, not a row
    return text.getvalue()


def _row(
    rnd: random.Random, i: int, kind: str, good_ids: list[int], chosen: Mapping[str, str], *, mess: bool
) -> MessyRow:
    """One row of :func:`make_messy_csv`, with the identity the importer will give it."""
    pad: Callable[[str], str] = (lambda v: f"  {v} " if v and rnd.random() < 0.15 else v) if mess else (lambda v: v)
    (first, first_ascii), (last, last_ascii) = rnd.choice(_FIRST), rnd.choice(_LAST)
    contact_no = rnd.choice(good_ids) if kind == "duplicate" else i
    external_id = f"C-{contact_no:05d}"
    if kind == "good" and mess and rnd.random() < 0.1:
        external_id = ""  # identified by its email
    email = f"{first_ascii}.{last_ascii}.{i}@example.com"
    if mess and rnd.random() < 0.3:
        email = email.upper() if rnd.random() < 0.5 else email.capitalize()
    phone = rnd.choice(_PHONES).format(a=rnd.choice(_AREAS), n=i % 100) if not mess or rnd.random() < 0.9 else ""
    tags = rnd.choice(_TAG_SEPARATORS).join(rnd.sample(_TAGS, rnd.randint(0, 3))) if mess else "vip"
    notes = _MULTILINE_NOTE if mess and i > _CLEAN_START and rnd.random() < 0.1 else rnd.choice(_NOTES)
    values = {
        "external_id": pad(external_id),
        "first_name": pad(first),
        "last_name": pad(last),
        "email": pad(email),
        "phone": pad(phone),
        "tags": tags,
        "unsubscribed": rnd.choice(_BOOLS) if mess else "no",
        "timezone": rnd.choice(_ZONES) if mess else "America/New_York",
        "Notes": notes,
        "Account Manager": rnd.choice(_FIRST)[0],
    }
    if kind == "invalid_email":
        values["email"] = rnd.choice(("not-an-email", "ann@", "bob@@example.com", "carol example.com"))
    elif kind == "invalid_phone":
        values["phone"] = rnd.choice(("12345", "call me", "555-01"))
    elif kind == "invalid_timezone":
        values["timezone"] = "Mars/Olympus_Mons"
    elif kind == "invalid_unsubscribed":
        values["unsubscribed"] = "maybe"
    elif kind == "missing_identity":
        values["external_id"] = values["email"] = values["phone"] = ""
    # Only the columns the file has count: a field left out is empty for the importer.
    present = {k: v for k, v in values.items() if k in chosen or k in _ATTRIBUTE_COLUMNS}
    if kind in _BAD_KINDS:
        return MessyRow(kind, present, None)
    if kind == "good" and present.get("external_id", "").strip():
        good_ids.append(i)
    identity = (
        present.get("external_id", "").strip()
        or present.get("email", "").strip().lower()
        or _e164(present.get("phone", ""))
    )
    if not identity:  # every identity column was left out or empty: the built-in validator rejects it
        return MessyRow("missing_identity", present, None)
    return MessyRow(kind, present, identity)


def _e164(phone: str) -> str:
    from truagents_import.fields.contact import normalise_phone

    return normalise_phone(phone, "US") if phone.strip() else ""


# -- files in an export layout ---------------------------------------------------------------------


def write_export(
    folder: Path,
    name: str,
    layout: Layout,
    rows: Sequence[Mapping[str, str]],
    *,
    header: Sequence[str] | None = None,
    preamble: Sequence[str] = (),
) -> Path:
    """Write ``rows`` as ``layout``'s system exports them and return the file's path.

    The header is ``header``, or the layout's distinctive columns followed by its other columns.
    Each row maps a column name, or a target (``"email"``, ``"phone"``, ``"tags"``...), to its
    value: a target fills the first of the layout's columns for it. The file is written in the
    layout's encoding (UTF-16 with its BOM for ``"utf-16"``), delimiter and line endings, after
    the ``preamble`` lines (as LinkedIn writes its ``Notes:``); cells are quoted as needed.
    """
    columns = list(header) if header is not None else _export_header(layout)
    first_of: dict[str, str] = {}
    for column, target in layout.columns:
        if column in columns:
            first_of.setdefault(target, column)
    out = io.StringIO()
    writer = csv.writer(out, delimiter=layout.delimiter, lineterminator=layout.line_ending)
    for line in preamble:
        out.write(line + layout.line_ending)
    writer.writerow(columns)
    for row in rows:
        cells = {first_of.get(key, key): value for key, value in row.items()}
        unknown = set(cells) - set(columns)
        if unknown:
            msg = f"write_export: {sorted(unknown)} are neither columns of the header nor targets of {layout.name!r}"
            raise ValueError(msg)
        writer.writerow([cells.get(column, "") for column in columns])
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    encoding = layout.encoding or "utf-8"
    path.write_bytes(out.getvalue().encode("utf-16" if encoding.lower().replace("-", "") == "utf16" else encoding))
    return path


def _export_header(layout: Layout) -> list[str]:
    return list(dict.fromkeys([*layout.distinctive, *(column for column, _ in layout.columns)]))
