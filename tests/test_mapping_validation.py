# ruff: noqa: RUF001  (fullwidth and other confusable characters are the point of some values)
"""Mapping columns and validating contacts (SPEC 3, issue 5), table by table.

Every built-in alias, every normaliser branch, every problem code the importer can produce,
identity and duplicates, ``on_invalid``, the ``validate_contacts`` hook, and a dry run that
writes nothing anywhere.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import re
import sqlite3
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from truagents_import import (
    Contact,
    DataSource,
    FileResult,
    Importer,
    MemorySink,
    Problem,
    SQLiteSink,
    StateStore,
    hookimpl,
)
from truagents_import.fields.contact import (
    FIELDS,
    FieldError,
    normalise_bool,
    normalise_email,
    normalise_phone,
    normalise_region,
    normalise_tags,
    normalise_timezone,
    split_full_name,
)
from truagents_import.fields.mapping import (
    ALIASES,
    BuiltinAliases,
    closest_alias,
    describe_missing_identity,
    fold_header,
    resolve_mapping,
)
from truagents_import.plugins import Plugins
from truagents_import.report import MAX_PROBLEMS

SRC = Path(__file__).parent.parent / "src" / "truagents_import"
DOCS = Path(__file__).parent.parent / "docs" / "mapping.md"


# --- helpers --------------------------------------------------------------------------------


def _source(tmp_path: Path, **kw: Any) -> DataSource:
    inbox = tmp_path / "inbox"
    inbox.mkdir(exist_ok=True)
    return DataSource(name="t", path=str(inbox), min_age=0, **kw)


def _import(
    tmp_path: Path,
    content: str | bytes,
    *,
    name: str = "f.csv",
    plugins: Iterable[object] = (),
    rejects: bool = False,
    state: Path | None = None,
    batch_size: int = 5000,
    **kw: Any,
) -> tuple[FileResult, MemorySink]:
    """Import one file from a local folder into a MemorySink."""
    source = _source(tmp_path, **kw)
    data = content.encode("utf-8") if isinstance(content, str) else content
    Path(source.path, name).write_bytes(data)
    sink = MemorySink()
    rejects_dir = tmp_path / "rejects" if rejects else None
    options: dict[str, Any] = {"rejects_dir": rejects_dir, "state": state, "batch_size": batch_size}
    with Importer(source, sink, plugins=list(plugins), entry_points=False, **options) as imp:
        report = imp.run()
    [result] = [f for f in report.files if f.path.endswith("/" + name)]
    assert result.rows == result.imported + result.rejected + result.duplicates
    return result, sink


def _one(tmp_path: Path, content: str, **kw: Any) -> Contact:
    result, sink = _import(tmp_path, content, **kw)
    assert result.status == "imported", result
    [contact] = sink.contacts
    return contact


# --- aliases and mapping --------------------------------------------------------------------

#: SPEC 3's alias column, verbatim: a change to ALIASES must be a change to the SPEC.
SPEC_ALIASES = {
    "external_id": ["external id", "id", "contact id", "customer id", "record id"],
    "email": ["email", "e-mail", "email address", "e-mail address", "mail"],
    "phone": ["phone", "phone number", "mobile", "mobile phone", "cell", "telephone", "tel"],
    "first_name": ["first name", "first", "given name", "fname"],
    "last_name": ["last name", "last", "surname", "family name", "lname"],
    "timezone": ["timezone", "time zone", "tz"],
    "tags": ["tags", "labels", "segments"],
    "unsubscribed": ["unsubscribed", "opt out", "opted out", "do not contact"],
    "full_name": ["name", "full name"],
}

ALIAS_CASES = [(field, alias) for field, aliases in SPEC_ALIASES.items() for alias in aliases]


def test_aliases_are_the_specs() -> None:
    assert {f: list(a) for f, a in ALIASES.items()} == SPEC_ALIASES


def _variants(alias: str) -> list[str]:
    """The ways a header can spell an alias: case, spaces, '_' and '-' do not matter."""
    return [
        alias,
        alias.upper(),
        alias.title(),
        alias.replace(" ", "_"),
        alias.replace(" ", "-").upper(),
        alias.replace(" ", "").replace("-", ""),
        " _".join(alias.split(" ")),
    ]


@pytest.mark.parametrize(("field", "alias"), ALIAS_CASES, ids=[f"{f}:{a}" for f, a in ALIAS_CASES])
def test_every_alias_and_its_spellings_map_to_the_field(field: str, alias: str) -> None:
    source = DataSource(name="s", path=".")
    for spelling in _variants(alias):
        assert BuiltinAliases().map_columns([spelling, "Other"], source) == {spelling: field}, spelling
        mapping = resolve_mapping([spelling, "Other"], [{spelling: field}], {})
        assert mapping.fields == {field: 0}
        assert mapping.attributes == (("Other", 1),)


@pytest.mark.parametrize(("field", "alias"), ALIAS_CASES, ids=[f"{f}:{a}" for f, a in ALIAS_CASES])
def test_every_alias_feeds_its_field_through_the_importer(tmp_path: Path, field: str, alias: str) -> None:
    values = {
        "external_id": ("  X-1 ", "X-1"),
        "email": (" Ann@Example.COM ", "ann@example.com"),
        "phone": ("(212) 555-0123", "+12125550123"),
        "first_name": ("  Ann ", "Ann"),
        "last_name": (" Smith  ", "Smith"),
        "timezone": ("europe/paris", "Europe/Paris"),
        "tags": ("a;b", ("a", "b")),
        "unsubscribed": ("Yes", True),
        "full_name": ("Mary Ann Smith", None),
    }
    raw, want = values[field]
    identity = "" if field in ("external_id", "email", "phone") else ",Record ID"
    identity_value = "" if identity == "" else ",r1"
    header = alias.upper().replace(" ", "_")
    contact = _one(tmp_path, f'"{header}"{identity}\n"{raw}"{identity_value}\n', default_region="US")
    if field == "full_name":
        assert (contact.first_name, contact.last_name) == ("Mary Ann", "Smith")
    else:
        assert getattr(contact, field) == want
    assert header not in contact.attributes


def test_fold_header() -> None:
    assert fold_header("E-Mail_Address") == fold_header(" e mail  address") == "emailaddress"
    assert fold_header("ÉMAIL") == "émail"  # letters are kept: only case, spaces, _ and - fold


MappingCase = tuple[
    str, list[str], list[dict[str, str]], dict[str, str], dict[str, int], list[tuple[str, int]], list[str]
]
MAPPING_CASES: list[MappingCase] = [
    # (id, header, plugin results, explicit mapping, expected fields, expected attributes, warning fragments)
    ("aliases", ["Email", "Plan"], [{"Email": "email"}], {}, {"email": 0}, [("Plan", 1)], []),
    ("explicit wins over a plugin for its column",
     ["Mail", "Phone"], [{"Mail": "email", "Phone": "phone"}], {"Mail": "attributes.mail_alias"},
     {"phone": 1}, [("mail_alias", 0)], []),
    ("explicit wins over a plugin for its field",
     ["Mail", "E-mail Addr"], [{"Mail": "email"}], {"E-mail Addr": "email"}, {"email": 1}, [("Mail", 0)], []),
    ("explicit keys match headers as aliases do",
     ["E_MAIL ADDR"], [], {"e-mail addr": "email"}, {"email": 0}, [], []),
    ("later plugin wins", ["X"], [{"X": "email"}, {"X": "phone"}], {}, {"phone": 0}, [], []),
    ("attributes target", ["Email", "Plan"], [{"Email": "email"}], {"Plan": "attributes.plan"},
     {"email": 0}, [("plan", 1)], []),
    ("two columns for one field", ["Mail", "Email"], [{"Mail": "email", "Email": "email"}], {},
     {"email": 0}, [("Email", 1)], ["both map to email"]),
    ("unknown target from a plugin", ["Email", "X"], [{"Email": "email", "X": "colour"}], {},
     {"email": 0}, [("X", 1)], ["unknown target 'colour'"]),
    ("lone full name", ["Email", "Full Name"], [{"Email": "email", "Full Name": "full_name"}], {},
     {"email": 0, "full_name": 1}, [], []),
    ("full name next to first name is kept",
     ["Email", "Name", "First"], [{"Email": "email", "Name": "full_name", "First": "first_name"}], {},
     {"email": 0, "first_name": 2}, [("Name", 1)], []),
    ("attribute name already a header",
     ["Email", "Plan", "P"], [{"Email": "email"}], {"P": "attributes.Plan"},
     {"email": 0}, [("Plan", 1), ("P", 2)], ["attribute name 'Plan' is already used"]),
    ("two columns for one attribute name",
     ["Email", "A", "B"], [{"Email": "email"}], {"A": "attributes.x", "B": "attributes.x"},
     {"email": 0}, [("x", 1), ("B", 2)], ["attribute name 'x' is already used"]),
    ("explicit column missing from the file", ["Email"], [{"Email": "email"}], {"Mobile No": "phone"},
     {"email": 0}, [], ["names column 'Mobile No', which this file does not have"]),
]


@pytest.mark.parametrize(
    ("header", "plugins", "explicit", "fields", "attributes", "warnings"),
    [c[1:] for c in MAPPING_CASES],
    ids=[c[0] for c in MAPPING_CASES],
)
def test_resolve_mapping(
    header: list[str],
    plugins: list[dict[str, str]],
    explicit: dict[str, str],
    fields: dict[str, int],
    attributes: list[tuple[str, int]],
    warnings: list[str],
) -> None:
    mapping = resolve_mapping(header, plugins, explicit)
    assert mapping.fields == fields
    assert list(mapping.attributes) == attributes
    assert len(mapping.warnings) == len(warnings)
    for fragment, warning in zip(warnings, mapping.warnings, strict=True):
        assert fragment in warning
    # Every column is accounted for exactly once, and attribute names never clash.
    used = set(fields.values()) | {i for _, i in attributes}
    assert used == set(range(len(header))) and len(used) == len(fields) + len(attributes)
    assert len({n for n, _ in attributes}) == len(attributes)
    assert set(mapping.by_column) == set(header)


_HEADER_NAMES = st.sampled_from(["Email", "Mail", "Phone", "Name", "First", "Plan", "plan", "x", "Tags", "ID", "TZ"])
_TARGETS = st.sampled_from(
    ["email", "phone", "external_id", "full_name", "first_name", "tags", "attributes.plan", "attributes.x", "colour"]
)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(_HEADER_NAMES, min_size=1, max_size=8, unique=True),
    st.lists(st.dictionaries(_HEADER_NAMES, _TARGETS, max_size=4), max_size=3),
    st.dictionaries(_HEADER_NAMES, _TARGETS, max_size=3),
)
def test_resolve_mapping_invariants(header: list[str], plugins: list[dict[str, str]], explicit: dict[str, str]) -> None:
    """Whatever plugins and the source say: every column is used once, attribute names never
    clash, a field comes from one column, and an explicit field mapping is obeyed."""
    mapping = resolve_mapping(header, plugins, explicit)
    fed = list(mapping.fields.values())
    kept = [i for _, i in mapping.attributes]
    assert sorted(fed + kept) == list(range(len(header)))
    assert len({n for n, _ in mapping.attributes}) == len(mapping.attributes)
    folded = {fold_header(k): v for k, v in explicit.items()}
    asked = {i: explicit.get(c, folded.get(fold_header(c))) for i, c in enumerate(header)}
    for target in set(asked.values()) & set(FIELDS):
        assert mapping.fields[target] == min(i for i, t in asked.items() if t == target)


def test_unmapped_columns_are_kept_verbatim(tmp_path: Path) -> None:
    text = 'Email,Plan,Notes,Sign-up Date\na@example.com,"  Gold ","line 1\nline 2",=1+1\n'
    contact = _one(tmp_path, text, mapping={"Plan": "attributes.plan"})
    assert dict(contact.attributes) == {"plan": "  Gold ", "Notes": "line 1\nline 2", "Sign-up Date": "=1+1"}


def test_a_plugin_maps_columns(tmp_path: Path) -> None:
    class Vendor:
        @hookimpl
        def map_columns(self, header: list[str], source: DataSource) -> dict[str, str]:
            return {"EMAIL_ADDR_1": "email", "CELL_NO": "phone", "SEG": "attributes.segment"}

    contact = _one(tmp_path, "EMAIL_ADDR_1,CELL_NO,SEG\na@example.com,+12125550123,vip\n", plugins=[Vendor()])
    assert (contact.email, contact.phone) == ("a@example.com", "+12125550123")
    assert dict(contact.attributes) == {"segment": "vip"}


CLOSEST = [
    ("EMAIL_ADDR_1", ("email", "email")),
    ("E-mail Addr", ("email", "email")),
    ("Customer Email", ("email", "email")),
    ("Mobile No", ("mobile", "phone")),
    ("Cust ID", ("customer id", "external_id")),
    ("Opt-Out Flag", ("opt out", "unsubscribed")),
    ("email", ("email", "email")),
    ("Plan", None),
    ("colour", None),
    ("", None),
]


@pytest.mark.parametrize(("column", "expected"), CLOSEST)
def test_closest_alias(column: str, expected: tuple[str, str] | None) -> None:
    assert closest_alias(column) == expected


def test_no_identity_column_says_what_was_seen_and_what_to_call_it(tmp_path: Path) -> None:
    result, sink = _import(tmp_path, "EMAIL_ADDR_1,Mobile No,First,Plan\na@example.com,2125550123,Ann,Gold\n")
    assert result.status == "rejected" and sink.contacts == []
    assert result.problems[0].code == "no_identity_column"
    reason = str(result.reason)
    assert "columns seen: EMAIL_ADDR_1, Mobile No, First, Plan" in reason
    assert "'EMAIL_ADDR_1' would need to be called 'email' to be email" in reason
    assert "'Mobile No' would need to be called 'mobile' to be phone" in reason
    assert "'First' is first_name" in reason
    assert "'customer id'" in reason and "'telephone'" in reason  # the identity aliases are listed
    assert '[sources.mapping] "EMAIL_ADDR_1" = "email"' in reason
    # A long header is listed in part, a control character escaped.
    header = ["bad\x1bname"] + [f"c{i}" for i in range(40)]
    text = describe_missing_identity(header, resolve_mapping(header, [], {}))
    assert "\x1b" not in text and "bad\\x1bname" in text and "and 11 more" in text


# --- normalisers ----------------------------------------------------------------------------

EMAILS_OK = [
    ("Ann@Example.COM", "ann@example.com"),
    ("  ann@example.com\t", "ann@example.com"),
    ("ANN.SMITH+TAG@SUB.EXAMPLE.CO.UK", "ann.smith+tag@sub.example.co.uk"),
    ("o'neil@example.com", "o'neil@example.com"),
    ("JOSÉ@Example.com", "josé@example.com"),
    ("e\u0301cole@example.com", "\u00e9cole@example.com"),  # NFC
    ("a@xn--mnchen-3ya.de", "a@münchen.de"),  # IDNA A-label -> Unicode
    ("a@MÜNCHEN.DE", "a@münchen.de"),
    ("ann@ＥＸＡＭＰＬＥ.com", "ann@example.com"),  # fullwidth domain
    ("用户@例え.jp", "用户@例え.jp"),
]

EMAILS_BAD = [
    ("ann@", "There must be something after the @-sign"),
    ("ann.example.com", "must have an @-sign"),
    ('"john doe"@example.com', "Quoting the part before the @-sign"),
    ("Ann <ann@example.com>", "display name"),
    ("a@[192.0.2.1]", "bracketed IP address"),
    ("a@localhost", "should have a period"),
    ("a@host.test", "special-use or reserved name"),
    ("a..b@example.com", "two periods in a row"),
    ("a\u200b@example.com", "unsafe characters"),
    ("a@x_y.com", "invalid characters"),
    ("a@b@example.com", "@"),
]


@pytest.mark.parametrize(("raw", "expected"), EMAILS_OK)
def test_email_valid(raw: str, expected: str) -> None:
    assert normalise_email(raw) == expected


@pytest.mark.parametrize(("raw", "fragment"), EMAILS_BAD)
def test_email_invalid(raw: str, fragment: str) -> None:
    with pytest.raises(FieldError) as e:
        normalise_email(raw)
    assert e.value.code == "invalid_email"
    assert e.value.message.startswith("not a valid email address: ") and fragment in e.value.message


PHONES_OK = [
    ("(212) 555-0123", "US", "+12125550123"),
    ("212.555.0123", "US", "+12125550123"),
    ("1-212-555-0123", "US", "+12125550123"),
    ("+1 212 555 0123", None, "+12125550123"),
    ("+44 20 7946 0958", "US", "+442079460958"),
    ("020 7946 0958", "GB", "+442079460958"),
    ("011 44 20 7946 0958", "US", "+442079460958"),  # the US international prefix
    ("00 49 30 901820", "GB", "+4930901820"),
    ("030 901820", "DE", "+4930901820"),
    ("1-800-FLOWERS", "US", "+18003569377"),
    ("(212) 555-0123 ext. 45", "US", "+12125550123"),  # E.164 has no extension
    ("tel:+1-212-555-0123", "US", "+12125550123"),
    ("２１２５５５０１２３", "US", "+12125550123"),
]

PHONES_BAD = [
    ("212 555 0123", None, "write it as +<country code> <number>, or set the source's default_region"),
    ("(212) 555-0123", "XX", "default_region 'XX' is not a region code phonenumbers knows"),
    ("123", "US", "not a valid +1 (US) phone number: too short (read as a US number"),
    ("555-0123", "US", "a local number without its area code"),
    ("+1 200 555 0123", "US", "not a valid +1 (US) phone number: no such numbers are in use"),
    ("020 7946 0958", "US", "read as a US number; numbers from elsewhere need +<country code>"),
    ("call me", "US", "not a valid phone number: not a phone number"),
    ("+999 123", "US", "no valid country code"),
    ("212 555 0123 0000 0000", "US", "too long"),
    ("+", "US", "not a phone number"),
]


@pytest.mark.parametrize(("raw", "region", "expected"), PHONES_OK)
def test_phone_valid(raw: str, region: str | None, expected: str) -> None:
    assert normalise_phone(raw, region) == expected


@pytest.mark.parametrize(("raw", "region", "fragment"), PHONES_BAD)
def test_phone_invalid(raw: str, region: str | None, fragment: str) -> None:
    with pytest.raises(FieldError) as e:
        normalise_phone(raw, region)
    assert e.value.code == "invalid_phone"
    assert fragment in e.value.message


def test_region() -> None:
    assert normalise_region(" gb ") == "GB"
    with pytest.raises(ValueError, match="'XX' is not a region code phonenumbers knows"):
        normalise_region("XX")


def test_a_lower_case_default_region_works(tmp_path: Path) -> None:
    assert _one(tmp_path, "phone\n(212) 555-0123\n", default_region="us").phone == "+12125550123"


TIMEZONES_OK = [
    ("America/New_York", "America/New_York"),
    ("america/new_york", "America/New_York"),
    ("  EUROPE/PARIS ", "Europe/Paris"),
    ("utc", "UTC"),
    ("etc/gmt+5", "Etc/GMT+5"),
    ("us/eastern", "US/Eastern"),  # a link is an IANA name too, kept as written
]

TIMEZONES_BAD = [
    ("Mars/Olympus", "for example America/New_York"),
    ("America/NewYork", "did you mean America/New_York?"),
    ("europe/pariss", "did you mean Europe/Paris?"),
    ("localtime", "not an IANA time zone name"),  # the machine's own setting, not a zone
    ("Factory", "not an IANA time zone name"),
    ("+02:00", "not an IANA time zone name"),
]


@pytest.mark.parametrize(("raw", "expected"), TIMEZONES_OK)
def test_timezone_valid(raw: str, expected: str) -> None:
    assert normalise_timezone(raw) == expected


@pytest.mark.parametrize(("raw", "fragment"), TIMEZONES_BAD)
def test_timezone_invalid(raw: str, fragment: str) -> None:
    with pytest.raises(FieldError) as e:
        normalise_timezone(raw)
    assert e.value.code == "invalid_timezone" and fragment in e.value.message


TIMEZONE_DEFAULTS = [
    # (id, header, row, source options, expected timezone)
    ("no column: default", "email", "a@example.com", {"default_timezone": "Europe/Paris"}, "Europe/Paris"),
    ("empty cell: default", "email,tz", "a@example.com, ", {"default_timezone": "Europe/Paris"}, "Europe/Paris"),
    ("no default: unknown", "email,tz", "a@example.com,", {}, None),
    ("default canonicalised", "email", "a@example.com", {"default_timezone": "europe/paris"}, "Europe/Paris"),
    ("given wins over default", "email,tz", "a@example.com,asia/tokyo", {"default_timezone": "UTC"}, "Asia/Tokyo"),
    ("infer: one zone", "email,phone", "a@example.com,+12125550123",
     {"infer_timezone": True, "default_timezone": "UTC"}, "America/New_York"),
    ("infer: one zone abroad", "phone,tz", "+61 2 9374 4000,", {"infer_timezone": True}, "Australia/Sydney"),
    ("infer: many zones -> default", "phone", "+1 800 356 9377",
     {"infer_timezone": True, "default_timezone": "UTC"}, "UTC"),
    ("infer: no phone -> default", "email,phone", "a@example.com,", {"infer_timezone": True, "default_timezone": "UTC"},
     "UTC"),
    ("infer: given wins", "phone,tz", "+12125550123,Europe/Paris", {"infer_timezone": True}, "Europe/Paris"),
    ("infer off: default", "phone", "+12125550123", {"default_timezone": "UTC"}, "UTC"),
    ("dropped invalid: default", "email,tz", "a@example.com,Mars/Olympus",
     {"default_timezone": "UTC", "on_invalid": "drop_field"}, "UTC"),
    ("dropped invalid: inferred", "phone,tz", "+12125550123,nowhere",
     {"infer_timezone": True, "on_invalid": "drop_field"}, "America/New_York"),
    ("dropped phone: default", "email,phone,tz", "a@example.com,123,",
     {"infer_timezone": True, "default_timezone": "UTC", "on_invalid": "drop_field", "default_region": "US"}, "UTC"),
]


@pytest.mark.parametrize(
    ("header", "row", "options", "expected"), [c[1:] for c in TIMEZONE_DEFAULTS], ids=[c[0] for c in TIMEZONE_DEFAULTS]
)
def test_timezone_defaults(
    tmp_path: Path, header: str, row: str, options: dict[str, Any], expected: str | None
) -> None:
    assert _one(tmp_path, f"{header}\n{row}\n", **options).timezone == expected


TAGS = [
    (" a; b,|a | c ,", ("a", "b", "c")),
    ("", ()),
    ("; ,|", ()),
    ("vip", ("vip",)),
    ("VIP,vip", ("VIP", "vip")),  # duplicates are exact duplicates
    ("b|a;b", ("b", "a")),  # order kept
    ("two words, x", ("two words", "x")),
]


@pytest.mark.parametrize(("raw", "expected"), TAGS)
def test_tags(raw: str, expected: tuple[str, ...]) -> None:
    assert normalise_tags(raw) == expected


BOOLS = [
    *[(v, True) for v in ("true", "TRUE", "True", "yes", "YES", "Yes", "y", "Y", "1", " 1 ")],
    *[(v, False) for v in ("false", "FALSE", "False", "no", "NO", "No", "n", "N", "0", " no ")],
    ("", None),
    ("   ", None),
]


@pytest.mark.parametrize(("raw", "expected"), BOOLS)
def test_bool(raw: str, expected: bool | None) -> None:
    assert normalise_bool(raw) is expected


@pytest.mark.parametrize("raw", ["maybe", "2", "on", "off", "t", "f", "unsubscribed", "-1"])
def test_bool_invalid(raw: str) -> None:
    with pytest.raises(FieldError) as e:
        normalise_bool(raw)
    assert e.value.code == "invalid_unsubscribed" and "true/false, yes/no, y/n or 1/0" in e.value.message


NAMES = [
    ("Mary Ann Smith", ("Mary Ann", "Smith")),
    ("  Mary   Ann  Smith ", ("Mary Ann", "Smith")),
    ("Jean-Luc Picard", ("Jean-Luc", "Picard")),
    ("Smith\tJohn", ("Smith", "John")),
    ("Cher", ("Cher", None)),
    ("", (None, None)),
    ("   ", (None, None)),
]


@pytest.mark.parametrize(("raw", "expected"), NAMES)
def test_split_full_name(raw: str, expected: tuple[str | None, str | None]) -> None:
    assert split_full_name(raw) == expected


NAME_COLUMNS = [
    ("lone name", "email,Name", "a@example.com,Mary Ann Smith", ("Mary Ann", "Smith"), {}),
    ("lone full name", "email,Full_Name", "a@example.com, Cher ", ("Cher", None), {}),
    ("first and last", "email,First Name,Last Name", "a@example.com,  Ann , Smith ", ("Ann", "Smith"), {}),
    ("name next to first", "email,Name,First", "a@example.com,Ann Smith,Ann", ("Ann", None), {"Name": "Ann Smith"}),
    ("name next to last", "email,Name,Surname", "a@example.com,Ann Smith,Smith", (None, "Smith"),
     {"Name": "Ann Smith"}),
]


@pytest.mark.parametrize(
    ("header", "row", "expected", "attributes"), [c[1:] for c in NAME_COLUMNS], ids=[c[0] for c in NAME_COLUMNS]
)
def test_name_columns(
    tmp_path: Path, header: str, row: str, expected: tuple[str | None, str | None], attributes: dict[str, str]
) -> None:
    contact = _one(tmp_path, f"{header}\n{row}\n")
    assert (contact.first_name, contact.last_name) == expected
    assert dict(contact.attributes) == attributes


def test_a_whole_contact(tmp_path: Path) -> None:
    text = (
        "Customer ID,E-Mail,Mobile,First Name,Surname,Time Zone,Labels,Opt-Out,Plan\n"
        " c-1 , Ann@Example.COM ,(212) 555-0123, Ann , Smith ,america/chicago,vip; new |vip,Y,Gold\n"
    )
    contact = _one(tmp_path, text, default_region="US")
    assert contact.to_dict() == {
        "external_id": "c-1",
        "email": "ann@example.com",
        "phone": "+12125550123",
        "first_name": "Ann",
        "last_name": "Smith",
        "timezone": "America/Chicago",
        "tags": ["vip", "new"],
        "unsubscribed": True,
        "attributes": {"Plan": "Gold"},
        "source": "t",
        "source_file": contact.source_file,
        "source_row": 1,
    }


def test_unsubscribed_empty_is_unknown(tmp_path: Path) -> None:
    _, sink = _import(tmp_path, "email,unsubscribed\na@example.com,\nb@example.com,no\nc@example.com,1\n")
    assert [c.unsubscribed for c in sink.contacts] == [None, False, True]


# --- identity and duplicates ----------------------------------------------------------------

IDENTITIES = [
    ("external_id first", "id,email,phone", "X1,a@example.com,+12125550123", "X1"),
    ("then email", "id,email,phone", ",A@example.com,+12125550123", "a@example.com"),
    ("then phone", "id,email,phone", ",,(212) 555-0123", "+12125550123"),
    ("blank id is no id", "id,email", "   ,a@example.com", "a@example.com"),
]


@pytest.mark.parametrize(("header", "row", "identity"), [c[1:] for c in IDENTITIES], ids=[c[0] for c in IDENTITIES])
def test_identity(tmp_path: Path, header: str, row: str, identity: str) -> None:
    assert _one(tmp_path, f"{header}\n{row}\n", default_region="US").identity == identity


def test_duplicates_later_row_wins(tmp_path: Path) -> None:
    text = (
        "email,first name,phone\n"
        "a@example.com,Ann,\n"  # 1: replaced by 3 and then by 5
        "b@example.com,Bob,\n"  # 2
        "A@EXAMPLE.COM,Anne,\n"  # 3: the same identity once normalised
        "c@example.com,Cy,not a phone\n"  # 4: rejected, so not a duplicate
        " a@example.com ,Annie,\n"  # 5: wins
        ",,+1 212 555 0123\n"  # 6
        ",,(212) 555-0123\n"  # 7: wins over 6
    )
    result, sink = _import(tmp_path, text, default_region="US")
    assert (result.rows, result.imported, result.rejected, result.duplicates) == (7, 3, 1, 3)
    got = {c.identity: (c.first_name, c.source_row) for c in sink.contacts}
    assert got == {"a@example.com": ("Annie", 5), "b@example.com": ("Bob", 2), "+12125550123": (None, 7)}


# --- on_invalid and problems ----------------------------------------------------------------

BAD_ROW = "id,email,phone,tz,unsubscribed\nr1,not-an-email,123,Mars/Base,maybe\n"


def test_reject_reports_every_bad_value(tmp_path: Path) -> None:
    result, sink = _import(tmp_path, BAD_ROW, default_region="US", rejects=True)
    assert (result.imported, result.rejected) == (0, 1) and sink.contacts == []
    assert [(p.code, p.row, p.column, p.value) for p in result.problems] == [
        ("invalid_email", 1, "email", "not-an-email"),
        ("invalid_phone", 1, "phone", "123"),
        ("invalid_timezone", 1, "tz", "Mars/Base"),
        ("invalid_unsubscribed", 1, "unsubscribed", "maybe"),
    ]
    assert all(p.message for p in result.problems)
    # The original row is kept in the rejects file, with the first problem.
    assert result.rejects_file is not None
    with open(result.rejects_file, encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[1][:5] == ["r1", "not-an-email", "123", "Mars/Base", "maybe"]
    assert rows[1][5:8] == ["1", "invalid_email", "email"]


def test_drop_field_keeps_the_row_without_the_bad_values(tmp_path: Path) -> None:
    result, sink = _import(tmp_path, BAD_ROW, default_region="US", on_invalid="drop_field", default_timezone="UTC")
    assert (result.imported, result.rejected, result.problems) == (1, 0, [])
    [c] = sink.contacts
    assert (c.external_id, c.email, c.phone, c.timezone, c.unsubscribed) == ("r1", None, None, "UTC", None)
    assert any("4 invalid values dropped" in w for w in result.warnings)


def test_drop_field_that_leaves_no_identity_rejects_the_row(tmp_path: Path) -> None:
    text = "email,phone,first name\nnot-an-email,123,Ann\nok@example.com,123,Bob\n"
    result, sink = _import(tmp_path, text, default_region="US", on_invalid="drop_field", rejects=True)
    assert (result.imported, result.rejected) == (1, 1)
    [problem] = result.problems
    assert (problem.code, problem.row) == ("missing_identity", 1)
    assert (problem.column, problem.value) == ("email", "not-an-email")
    assert "'email'" in problem.message and "'phone'" in problem.message and "drop_field" in problem.message
    assert [(c.email, c.phone) for c in sink.contacts] == [("ok@example.com", None)]
    assert any("1 invalid values dropped" in w for w in result.warnings)


def test_problem_values_are_truncated(tmp_path: Path) -> None:
    long = "x" * 500 + "@"
    result, _ = _import(tmp_path, f"email\n{long}\n")
    [problem] = result.problems
    assert problem.value is not None and len(problem.value) <= 80 and problem.value.endswith("…")
    assert problem.value[:-1] == long[: len(problem.value) - 1]


def test_problems_are_capped_counts_are_not(tmp_path: Path) -> None:
    rows = MAX_PROBLEMS * 3
    text = "email\n" + "".join(f"bad{i}\n" for i in range(rows)) + "good@example.com\n"
    result, sink = _import(tmp_path, text)
    assert (result.rows, result.rejected, result.imported) == (rows + 1, rows, 1)
    assert len(result.problems) == MAX_PROBLEMS
    assert len(sink.contacts) == 1


# --- the validate_contacts hook -------------------------------------------------------------


class RoleAddresses:
    """A plugin that rejects role addresses, and says nothing about the row (the importer fills it in)."""

    @hookimpl
    def validate_contacts(self, contacts: list[Contact], source: DataSource) -> Iterable[tuple[int, Problem]]:
        for i, c in enumerate(contacts):
            if c.email and c.email.split("@")[0] in ("info", "admin"):
                yield i, Problem(code="role_address", message="a role address", column="email", value=c.email)


def test_built_in_validators_are_plugins() -> None:
    names = [name for name, _ in Plugins.build(entry_points=False).pm.list_name_plugin()]
    assert "truagents_import.fields.validators" in names
    assert "truagents_import.fields.mapping.BuiltinAliases" in names


@pytest.mark.parametrize("on_invalid", ["reject", "drop_field"])
def test_a_plugins_problems_reject_rows_as_built_in_ones_do(tmp_path: Path, on_invalid: str) -> None:
    text = "email,phone\ninfo@example.com,\nann@example.com,\n,\nadmin@example.com,\nbad@,\n"
    result, sink = _import(
        tmp_path, text, plugins=[RoleAddresses()], rejects=True, on_invalid=on_invalid, batch_size=2
    )
    assert [c.email for c in sink.contacts] == ["ann@example.com"]
    assert result.rows == 5 and result.imported == 1
    codes = sorted((p.row, p.code) for p in result.problems)
    if on_invalid == "reject":
        assert result.rejected == 4
        assert codes == [(1, "role_address"), (3, "missing_identity"), (4, "role_address"), (5, "invalid_email")]
    else:  # the bad address is dropped, which leaves no identity
        assert result.rejected == 4
        assert codes == [(1, "role_address"), (3, "missing_identity"), (4, "role_address"), (5, "missing_identity")]
    assert all(p.row is not None for p in result.problems)
    assert result.rejects_file is not None
    with open(result.rejects_file, encoding="utf-8", newline="") as f:
        rejected = {(r[2], r[3]) for r in list(csv.reader(f))[1:]}
    assert ("1", "role_address") in rejected and ("4", "role_address") in rejected


# --- every problem code ---------------------------------------------------------------------


def _utf32(text: str) -> bytes:
    return text.encode("utf-32")


#: (code, file name, content, source options, "file" or the row the problem is on)
CODES: list[tuple[str, str, bytes, dict[str, Any], str | int]] = [
    ("empty", "f.csv", b"", {}, "file"),
    ("not_csv", "f.csv", b"PK\x03\x04\x14\x00\x06\x00", {}, "file"),
    ("unsupported_encoding", "f.csv", _utf32("email\na@example.com\n"), {}, "file"),
    ("undecodable", "f.csv", b"email\n\x81\x8d\x90 \xff\xfe", {}, "file"),
    ("no_header", "f.csv", b",,\na@example.com,x,y\n", {}, "file"),
    ("malformed_csv", "f.csv", b'email,note\na@example.com,"never closed\nb@example.com,x\n', {}, "file"),
    ("too_large", "f.csv.gz", gzip.compress(b"email\n" + b"a@example.com\n" * 1000),
     {"max_decompressed_size": 1000, "pattern": "*.gz"}, "file"),
    ("blank_header", "f.csv", b"email,,name\na@example.com,x,y\n", {}, "file"),
    ("duplicate_header", "f.csv", b"email,Note,Note\na@example.com,x,y\n", {}, "file"),
    ("no_identity_column", "f.csv", b"colour,size\nred,1\n", {}, "file"),
    ("too_many_columns", "f.csv", b"email," + b",".join(b"c%d" % i for i in range(20)) + b"\n", {"max_columns": 10},
     "file"),
    ("schema_drift", "f.csv", b"email,plan\na@example.com,x\n", {"on_drift": "reject"}, "file"),
    ("ragged_row", "f.csv", b"email,name\na@example.com,Ann\nb@example.com\n", {}, 2),
    ("field_too_large", "f.csv", b"email,note\na@example.com," + b"x" * 5000 + b"\n", {"max_field_size": 1000}, 1),
    ("invalid_email", "f.csv", b"email\nnot-an-email\n", {}, 1),
    ("invalid_phone", "f.csv", b"email,phone\na@example.com,12\n", {"default_region": "US"}, 1),
    ("invalid_timezone", "f.csv", b"email,tz\na@example.com,Mars/Olympus\n", {}, 1),
    ("invalid_unsubscribed", "f.csv", b"email,opt out\na@example.com,maybe\n", {}, 1),
    ("missing_identity", "f.csv", b"email,name\na@example.com,Ann\n,Bob\n", {}, 2),
]


@pytest.mark.parametrize(("code", "name", "content", "options", "where"), CODES, ids=[c[0] for c in CODES])
def test_every_problem_code(
    tmp_path: Path, code: str, name: str, content: bytes, options: dict[str, Any], where: str | int
) -> None:
    state = tmp_path / "state.db"
    if code == "schema_drift":  # an earlier file with another header
        first, _ = _import(tmp_path, "email,note\nz@example.com,n\n", name="earlier.csv", state=state)
        assert first.status == "imported"
    result, _ = _import(tmp_path, content, name=name, state=state, **options)
    problem = result.problems[0]
    assert problem.code == code
    assert problem.message
    if where == "file":
        assert result.status == "rejected" and result.reason and result.imported == 0
        assert result.rejected == result.rows
    else:
        assert result.status == "imported"
        assert problem.row == where and result.rejected == 1


def _codes_in_source() -> set[str]:
    found: set[str] = set()
    patterns = [r'FileRejected\(\s*"(\w+)"', r'FieldError\(\s*"(\w+)"', r'code="(\w+)"']
    for module in sorted(SRC.rglob("*.py")):
        text = module.read_text(encoding="utf-8")
        for pattern in patterns:
            found.update(re.findall(pattern, text))
    return found


def test_the_code_table_covers_every_code_in_the_source() -> None:
    in_source = _codes_in_source()
    assert len(in_source) >= 15  # the patterns still find them
    assert in_source <= {c[0] for c in CODES}, "a new problem code needs a row in CODES and in docs/mapping.md"


def test_docs_list_every_code_and_alias() -> None:
    text = DOCS.read_text(encoding="utf-8")
    for code in {c[0] for c in CODES} | _codes_in_source():
        assert f"`{code}`" in text, code
    for aliases in SPEC_ALIASES.values():
        for alias in aliases:
            assert f"`{alias}`" in text, alias


# --- dry run --------------------------------------------------------------------------------


def _snapshot(root: Path) -> dict[str, tuple[int, str]]:
    """Every file under root: its mtime (ns) and content hash."""
    return {
        str(p.relative_to(root)): (p.stat().st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest())
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _dump(db: Path) -> list[tuple[Any, ...]]:
    con = sqlite3.connect(db)
    try:
        rows: list[tuple[Any, ...]] = []
        for (table,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"):
            rows.extend((table, *r) for r in con.execute(f'SELECT * FROM "{table}"'))
        return rows
    finally:
        con.close()


def test_dry_run_writes_nothing_anywhere(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    state_db, sink_db = tmp_path / "state.db", tmp_path / "sink.db"

    def importer() -> Importer:
        source = DataSource(
            name="t", path=str(inbox), min_age=0, after_import="move:done", default_region="US", on_drift="warn"
        )
        return Importer(source, SQLiteSink(sink_db), state=StateStore(state_db), entry_points=False)

    # A real import first, so that the state and the sink hold something.
    (inbox / "a.csv").write_text("email,phone\nold@example.com,(212) 555-0123\n")
    with importer() as imp:
        assert imp.run().files[0].status == "imported"
    assert not (inbox / "a.csv").exists() and (inbox / "done" / "a.csv").exists()
    (inbox / "b.csv").write_text(
        "Email,Phone,Plan\nnew@example.com,(212) 555-0199,Gold\nbad,,x\nnew@example.com,,Silver\n,123,\n"
    )
    before = _snapshot(tmp_path)
    state_before, sink_before = _dump(state_db), _dump(sink_db)

    with importer() as imp:
        report = imp.run(dry_run=True)
    assert report.dry_run
    [f] = report.files
    assert f.path.endswith("/b.csv") and f.status == "imported"
    assert (f.rows, f.imported, f.rejected, f.duplicates) == (4, 1, 2, 1)
    assert [(p.code, p.row) for p in f.problems] == [("invalid_email", 2), ("invalid_phone", 4)]

    assert _snapshot(tmp_path) == before  # the remote folder, the state and the sink, byte for byte
    assert (_dump(state_db), _dump(sink_db)) == (state_before, sink_before)

    # The same run for real changes all three: the dry run was not a no-op by accident.
    with importer() as imp:
        assert imp.run().files[0].imported == 1
    after = _snapshot(tmp_path)
    assert "inbox/b.csv" not in after and "inbox/done/b.csv" in after
    assert _dump(state_db) != state_before and _dump(sink_db) != sink_before
