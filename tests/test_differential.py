# ruff: noqa: RUF001  (confusable characters are the point of these test values)
"""Differential test: our email and phone verdicts are exactly the libraries' (SPEC 3).

A generated file of more than 100,000 rows (fixed seed) mixes valid and invalid addresses
(Unicode, quoted local parts, IDNA, display names, special-use domains, ...) and phone numbers
in many formats from every region phonenumbers knows. It is imported from a local folder
into a MemorySink, and every row's email and phone must come out exactly as
``email_validator.validate_email(cell.lower(), check_deliverability=False).normalized`` and
``phonenumbers.format_number(parse(cell, region), E164)`` (when ``is_valid_number``) say,
or be judged invalid exactly when the library refuses them. Cells are stripped first, as
the importer does with every cell.

This is the safety net for fast paths in the normalisers: a fast path may only accept what
the libraries certainly accept, and must hand everything else to them.
"""

from __future__ import annotations

import csv
import functools
import os
import random
import sqlite3
import subprocess
import sys
import unicodedata
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import attrs
import email_validator
import phonenumbers
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from truagents_import import Contact, DataSource, Importer, MemorySink, Problem, SQLiteSink, hookimpl
from truagents_import.fields import email_address
from truagents_import.fields import phone as phone_module
from truagents_import.fields.contact import FieldError, normalise_email, normalise_phone
from truagents_import.pipeline import parallel as parallel_module
from truagents_import.report import FileResult

SEED = 20261124
ROWS = 100_000

# --- emails ---------------------------------------------------------------------------------

_LOCALS = [
    "john.doe", "Jane_Smith", "a+tag", "o'brien", "x-y", "first.m.last", "ALLCAPS", "1234", "a", "user%host",
    "josé", "Zoë", "用户", "пользователь", "ünïcödé", "Ω", "İnfo", "KELVIN\u212a", "straße", "ΣΑΣ", "ｆｕｌｌ",
    "e\u0301cole",  # NFD: e + combining acute
    '"john doe"', '"a\\"b"', '""', '"ok"', '"a@b"',
    ".lead", "trail.", "dou..ble", "sp ace", "com,ma", "br[ack]et", "semi;colon", "a@b", "",
    "x" * 64, "y" * 65, "😀", "zero\u200bwidth", "tab\tin", "nbsp\u00a0in",
]
_DOMAINS = [
    "example.com", "Example.COM", "sub.example.co.uk", "mail.example.org", "example.io", "xn--mnchen-3ya.de",
    "münchen.de", "例え.jp", "bücher.example", "ＥＸＡＭＰＬＥ.com", "παράδειγμα.δοκιμή", "пример.рф",
    "localhost", "host.test", "box.local", "printer.invalid", "-x.com", "x-.com", "x_y.com", "1.2.3.4",
    "[1.2.3.4]", "[IPv6:::1]", "x..com", ".x.com", "x.com.", "xn--zz.com", "ex ample.com", "x.c0m", "x.123",
    "☃.net", ("a" * 63) + ".com", ("b" * 64) + ".com", ".".join(["c" * 60] * 5) + ".com", "example",
    "co.uk", "EXAMPLE.MUSEUM", "ｅｘａｍｐｌｅ．ｃｏｍ",
]
_NOISE = [" ", "\u00a0", "\t", "@", ".", "<", ">", "\u200b", "é", "\u0301", "Ü", '"', "\\", "'", ",", "İ", "ß"]


_FIRST = ["ann", "bob", "chloé", "dmitri", "eve", "fatima", "george", "hana", "ivan", "jürgen", "kim", "li"]
_LAST = ["smith", "o'neil", "garcía", "nguyen", "müller", "kowalski", "ivanov", "tanaka", "dubois", "rossi"]
_COMMON = ["gmail.com", "example.com", "Example.org", "mail.co.uk", "company.io", "EXAMPLE.NET", "web.de"]


def _email(rnd: random.Random) -> str:
    kind = rnd.random()
    if kind < 0.02:
        return ""
    if kind < 0.55:
        # What most files hold: name-like local parts at common domains, in any case.
        local = rnd.choice(_FIRST) + rnd.choice([".", "_", "", "+"]) + rnd.choice(_LAST) + str(rnd.randrange(1000))
        value = f"{local}@{rnd.choice(_COMMON)}"
        return value.upper() if rnd.random() < 0.1 else value
    local = rnd.choice(_LOCALS)
    if rnd.random() < 0.5 and local and not local.startswith('"'):
        local += str(rnd.randrange(100_000))  # mostly distinct values, as in real files
    value = f"{local}@{rnd.choice(_DOMAINS)}"
    if kind < 0.58:
        value = value.replace("@", "", 1)  # no @ at all
    elif kind < 0.60:
        value = f"Ann Example <{value}>"
    elif kind < 0.61:
        value = "mailto:" + value
    elif kind < 0.63:
        value = value + "@" + rnd.choice(_DOMAINS)
    if rnd.random() < 0.15:
        value = value.upper() if rnd.random() < 0.5 else value.title()
    if rnd.random() < 0.05:
        value = unicodedata.normalize(rnd.choice(["NFD", "NFKC", "NFKD"]), value)
    if rnd.random() < 0.08:
        at = rnd.randrange(len(value) + 1)
        value = value[:at] + rnd.choice(_NOISE) + value[at:]
    if rnd.random() < 0.05:
        value = " " + value + rnd.choice([" ", "\t", "\u00a0", "\u3000"])
    return value


def expected_email(cell: str) -> str | None:
    """What email-validator says about a cell, called directly: its normalised form, or None."""
    value = cell.strip()
    if not value:
        return None
    try:
        return email_validator.validate_email(value.lower(), check_deliverability=False).normalized
    except email_validator.EmailNotValidError:
        return None


# --- phones ---------------------------------------------------------------------------------

_REGIONS = sorted(phonenumbers.SUPPORTED_REGIONS)
_TYPES = [
    phonenumbers.PhoneNumberType.MOBILE,
    phonenumbers.PhoneNumberType.FIXED_LINE,
    phonenumbers.PhoneNumberType.TOLL_FREE,
    phonenumbers.PhoneNumberType.PREMIUM_RATE,
    phonenumbers.PhoneNumberType.SHARED_COST,
    phonenumbers.PhoneNumberType.VOIP,
    phonenumbers.PhoneNumberType.PERSONAL_NUMBER,
    phonenumbers.PhoneNumberType.PAGER,
    phonenumbers.PhoneNumberType.UAN,
    phonenumbers.PhoneNumberType.VOICEMAIL,
]
_FORMATS = [
    phonenumbers.PhoneNumberFormat.E164,
    phonenumbers.PhoneNumberFormat.INTERNATIONAL,
    phonenumbers.PhoneNumberFormat.NATIONAL,
    phonenumbers.PhoneNumberFormat.RFC3966,
]
_GARBAGE = ["N/A", "-", "0", "+", "++1 212 555 0123", "call me", "123", "+999 123", "1" * 30, "(555)", "+1", "x" * 300]


@functools.cache
def _examples() -> list[tuple[int, str]]:
    """(country code, national number) of phonenumbers' example numbers, every region and type."""
    found = []
    for region in _REGIONS:
        for kind in _TYPES:
            number = phonenumbers.example_number_for_type(region, kind)
            if number is not None and number.country_code and number.national_number:
                found.append((number.country_code, str(number.national_number)))
    return found


def _example(rnd: random.Random) -> phonenumbers.PhoneNumber:
    country_code, digits = rnd.choice(_examples())
    keep = max(1, len(digits) - rnd.randint(2, 6))
    # Random trailing digits: often still valid; sometimes a digit more or less.
    tail = "".join(str(rnd.randrange(10)) for _ in range(len(digits) - keep + rnd.choice([0, 0, 0, 0, -1, 1])))
    return phonenumbers.PhoneNumber(country_code=country_code, national_number=int(digits[:keep] + tail))


def _us_national(rnd: random.Random) -> str:
    area = f"{rnd.randint(200, 999)}"
    exchange = f"{rnd.randint(100, 999)}"
    line = f"{rnd.randrange(10_000):04d}"
    shape = rnd.randrange(9)
    if shape == 0:
        return f"({area}) {exchange}-{line}"
    if shape == 1:
        return f"{area}.{exchange}.{line}"
    if shape == 2:
        return f"1-{area}-{exchange}-{line}"
    if shape == 3:
        return f"+1 {area} {exchange} {line}"
    if shape == 4:
        return f"{area}{exchange}{line} ext. {rnd.randint(1, 9999)}"
    if shape == 5:
        return f"{area}-{exchange}-{line}".translate(str.maketrans("0123456789", "０１２３４５６７８９"))
    if shape == 6:
        return f"1-800-{rnd.choice(['FLOWERS', 'CONTACTS', 'GOTJUNK'])}"
    if shape == 7:
        return f"tel:+1-{area}-{exchange}-{line}"
    return f"{area} {exchange} {line}"


def _phone(rnd: random.Random) -> str:
    kind = rnd.random()
    if kind < 0.02:
        return ""
    if kind < 0.30:
        return _us_national(rnd)
    if kind < 0.35:
        return rnd.choice(_GARBAGE)
    if kind < 0.40:
        return "".join(str(rnd.randrange(10)) for _ in range(rnd.randint(1, 18)))
    text = phonenumbers.format_number(_example(rnd), rnd.choice(_FORMATS))
    if kind < 0.45 and text.startswith("+"):
        text = rnd.choice(["00", "011 ", "00 "]) + text[1:]  # international prefixes
    if rnd.random() < 0.05:
        text = f" {text} "
    return text


def expected_phone(cell: str, region: str | None) -> str | None:
    """What phonenumbers says about a cell, called directly: E.164 when valid, else None."""
    value = cell.strip()
    if not value:
        return None
    try:
        number = phonenumbers.parse(value, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


# --- the file and the import ----------------------------------------------------------------


def generate(rnd: random.Random, rows: int) -> Iterator[tuple[str, str, str]]:
    """``rows`` (id, email, phone) rows."""
    for n in range(1, rows + 1):
        yield f"r{n}", _email(rnd), _phone(rnd)


def write_file(path: Path, rows: list[tuple[str, str, str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["ID", "Email", "Phone"])
        writer.writerows(rows)


def run(
    folder: Path, region: str | None, on_invalid: str, *, columns: bool = False
) -> tuple[FileResult, dict[int, Contact]]:
    """Import the folder's one file into a MemorySink: its result and its contacts by row. ``columns``:
    through the columnar path whatever the file's size (else row by row, whatever its size)."""
    source = DataSource(
        name="diff",
        path=str(folder),
        min_age=0,
        default_region=region,
        on_invalid=on_invalid,
        encoding="utf-8",
        delimiter=",",
    )
    sink = MemorySink()
    with Importer(source, sink, entry_points=False, batch_size=10_000) as importer:
        importer.columnar_min_bytes = 0 if columns else 1 << 62
        report = importer.run()
    [result] = report.files
    contacts = {c.source_row: c for c in sink.contacts if c.source_row is not None}
    return result, contacts


def check_verdicts(
    data: list[tuple[str, str, str]], region: str | None, contacts: dict[int, Contact]
) -> set[int]:
    """Every row's email and phone against the libraries; returns the rows holding an invalid value."""
    email_mismatches = []
    phone_mismatches = []
    invalid_rows = set()
    for n, (_, email, phone) in enumerate(data, start=1):
        contact = contacts[n]
        want_email = expected_email(email)
        want_phone = expected_phone(phone, region)
        if contact.email != want_email:
            email_mismatches.append((n, email, contact.email, want_email))
        if contact.phone != want_phone:
            phone_mismatches.append((n, phone, contact.phone, want_phone))
        if (email.strip() and want_email is None) or (phone.strip() and want_phone is None):
            invalid_rows.add(n)
    assert email_mismatches[:20] == []
    assert phone_mismatches[:20] == []
    return invalid_rows


def make_file(folder: Path, region: str | None, rows: int) -> list[tuple[str, str, str]]:
    data = list(generate(random.Random(f"{SEED}-{region}"), rows))
    write_file(folder / "contacts.csv", data)
    return data


@pytest.mark.parametrize("columns", [False, True], ids=["rows", "columns"])
def test_verdicts_equal_the_libraries(tmp_path: Path, columns: bool) -> None:
    """100,000 rows read as US numbers, row by row and in columns: every verdict and value is the libraries' own."""
    data = make_file(tmp_path / "inbox", "US", ROWS)
    # drop_field keeps every row (each has a unique ID), so every verdict can be read back.
    result, contacts = run(tmp_path / "inbox", "US", "drop_field", columns=columns)
    assert (result.status, result.rows, result.imported, result.rejected) == ("imported", ROWS, ROWS, 0)
    assert len(contacts) == ROWS
    invalid_rows = check_verdicts(data, "US", contacts)

    # The file really is a mix: plenty of both verdicts for both fields.
    valid_emails = sum(1 for c in contacts.values() if c.email)
    valid_phones = sum(1 for c in contacts.values() if c.phone)
    assert 0.4 * ROWS < valid_emails < 0.9 * ROWS
    assert 0.3 * ROWS < valid_phones < 0.9 * ROWS
    assert 0.2 * ROWS < len(invalid_rows) < 0.8 * ROWS


@pytest.mark.parametrize("region", [None, "GB", "IN", "DE"])
def test_other_regions_and_reject_mode(tmp_path: Path, region: str | None) -> None:
    """Other default regions (and none); with on_invalid = "reject", exactly the rows the
    libraries find an invalid value in are rejected, each under the right code."""
    rows = 4_000
    data = make_file(tmp_path / "inbox", region, rows)
    result, contacts = run(tmp_path / "inbox", region, "drop_field")
    assert result.imported == rows
    invalid_rows = check_verdicts(data, region, contacts)

    result, kept = run(tmp_path / "inbox", region, "reject")
    assert (result.rows, result.rejected, result.imported) == (rows, len(invalid_rows), rows - len(invalid_rows))
    assert set(kept) == set(contacts) - invalid_rows
    assert all(kept[n] == contacts[n] for n in kept)


# --- the same, property-based, straight on the normalisers -----------------------------------

_EMAIL_CHARS = st.sampled_from(list("abcXYZ019.+-_'\"\\ ()<>[],;:@éÜßΣ用İ\u0301\u200b\u00a0ｅ．K-"))
_LABEL = st.text(alphabet=st.sampled_from(list("abcxyzÜé用0-")), min_size=1, max_size=8)
_ADDRESSES = st.one_of(
    st.text(alphabet=_EMAIL_CHARS, max_size=30),
    st.builds(
        lambda local, labels, tld: f"{local}@{'.'.join(labels)}.{tld}",
        st.text(alphabet=_EMAIL_CHARS, min_size=1, max_size=15),
        st.lists(_LABEL, min_size=1, max_size=3),
        st.sampled_from(["com", "de", "test", "local", "xn--p1ai", "c0m", "Com", "рф"]),
    ),
)


@settings(max_examples=600, deadline=None)
@given(_ADDRESSES)
def test_email_property(value: str) -> None:
    cell = value.strip()
    if not cell:
        return
    want = expected_email(cell)
    if want is None:
        with pytest.raises(FieldError):
            normalise_email(cell)
    else:
        assert normalise_email(cell) == want


_PHONES = st.text(alphabet=st.sampled_from(list("0123456789 +-().xetTELFLOW#*/０１２")), max_size=25)
_REGION = st.sampled_from([None, "US", "GB", "DE", "IN", "BR", "AU", "JP", "XX", "us"])


def assert_phone_as_the_library_says(cell: str, region: str | None) -> None:
    """normalise_phone refuses ``cell`` exactly when phonenumbers does, else gives its E.164 form."""
    want = expected_phone(cell, region)
    if want is None:
        with pytest.raises(FieldError):
            normalise_phone(cell, region)
    else:
        assert normalise_phone(cell, region) == want


@settings(max_examples=600, deadline=None)
@given(_PHONES, _REGION)
def test_phone_property(value: str, region: str | None) -> None:
    cell = value.strip()
    if not cell:
        return
    assert_phone_as_the_library_says(cell, region)


# --- the fast paths: both paths exercised, every answer the libraries' own ----------------------
#
# contact.normalise_email and normalise_phone answer plain cells themselves (an ASCII dot-atom at an
# ASCII domain whose verdict is remembered; digits with spaces and "().-" and at most a leading
# "+", read without phonenumbers' parser and checked on its metadata) and hand everything else to
# the libraries. The tests below feed them the plain shapes in bulk, from every region, next to
# near misses that must take the slow path, and count which path answered so that both are
# known to have been exercised.

BENCH_DIR = Path(__file__).resolve().parent.parent / "benchmarks"


def _fast_email(cell: str) -> bool:
    """Whether normalise_email answers this cell on its fast path."""
    plain = email_address._PLAIN_ADDRESS.fullmatch(cell.strip().lower())
    return plain is not None and email_address._plain_domain(plain.group(2)) is not None


def _fast_phone(cell: str, region: str | None) -> bool:
    """Whether normalise_phone answers this cell on its fast path."""
    return phone_module._plain_phone(cell, region) is not None


def _check_emails(cells: list[str]) -> tuple[int, int]:
    """Every cell through normalise_email against email-validator; returns (fast, slow) counts."""
    mismatches = []
    fast = 0
    for cell in cells:
        want = expected_email(cell)
        try:
            got: str | None = normalise_email(cell.strip())
        except FieldError:
            got = None
        if got != want:
            mismatches.append((cell, got, want))
        fast += _fast_email(cell)
    assert mismatches[:20] == []
    return fast, len(cells) - fast


def _check_phones(cells: list[tuple[str, str | None]]) -> tuple[int, int]:
    """Every (cell, region) through normalise_phone against phonenumbers; returns (fast, slow) counts."""
    mismatches = []
    fast = 0
    for cell, region in cells:
        want = expected_phone(cell, region)
        try:
            got: str | None = normalise_phone(cell.strip(), region)
        except FieldError:
            got = None
        if got != want:
            mismatches.append((cell, region, got, want))
        fast += _fast_phone(cell.strip(), region)
    assert mismatches[:20] == []
    return fast, len(cells) - fast


def _plain_punctuation(rnd: random.Random, digits: str) -> str:
    """Digits grouped the ways people write them with spaces, dots, dashes and parentheses."""
    style = rnd.randrange(6)
    if style == 0:
        return digits
    cuts = sorted(rnd.sample(range(1, len(digits)), k=min(len(digits) - 1, rnd.randint(1, 4))))
    groups = [digits[i:j] for i, j in zip([0, *cuts], [*cuts, len(digits)], strict=True)]
    if style == 1:
        return " ".join(groups)
    if style == 2:
        return "-".join(groups)
    if style == 3:
        return ".".join(groups)
    if style == 4:
        return f"({groups[0]}) " + "-".join(groups[1:])
    return rnd.choice([" ", "  ", " - ", "", "."]).join(groups) + rnd.choice(["", " ", ")", "."])


def _plain_phones(rnd: random.Random, count: int) -> list[tuple[str, str | None]]:
    """Plain numbers of every region and type, with near misses, each with a default region to read it in."""
    cells: list[tuple[str, str | None]] = []
    for _ in range(count):
        number = _example(rnd)
        code = str(number.country_code)
        nsn = str(number.national_number)
        kind = rnd.random()
        if kind < 0.45:  # +<country code> <number>
            text = "+" + _plain_punctuation(rnd, code + nsn)
            region = rnd.choice([None, None, "US", "GB", rnd.choice(_REGIONS)])
        elif kind < 0.75:  # the national number, read in (mostly) its own region
            own = phonenumbers.region_codes_for_country_code(number.country_code)
            region = rnd.choice(own) if own and rnd.random() < 0.8 else rnd.choice(_REGIONS)
            national = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.NATIONAL)
            digits = "".join(c for c in national if c.isdigit()) or nsn
            text = _plain_punctuation(rnd, digits) if rnd.random() < 0.7 else national
        elif kind < 0.85:  # the country code written without "+": a national number that starts with it
            text = _plain_punctuation(rnd, code + nsn)
            region = rnd.choice(phonenumbers.region_codes_for_country_code(number.country_code) or ["US"])
        elif kind < 0.90:  # a leading zero or an international prefix
            text = _plain_punctuation(rnd, rnd.choice(["0", "00", "011", "0" + code, "00" + code]) + nsn)
            region = rnd.choice(_REGIONS)
        elif kind < 0.95:  # US shapes, some with invalid area codes or exchanges
            text = _us_national(rnd)
            region = "US"
        else:  # near misses of the plain shape
            text = rnd.choice(["+" + code + nsn + "x12", "++" + code + nsn, "+" + code + "/" + nsn, " +" + code + nsn])
            region = rnd.choice([None, "US"])
        cells.append((text, region))
    return cells


def test_plain_phones_from_every_region() -> None:
    """Plain numbers of every region and type: the fast path answers most, phonenumbers the rest, identically."""
    cells = _plain_phones(random.Random(f"{SEED}-plain-phones"), 30_000)
    fast, slow = _check_phones(cells)
    assert fast > 0.3 * len(cells)
    assert slow > 0.2 * len(cells)


def test_every_country_code_agrees_with_phonenumbers() -> None:
    """The validity test of the fast path is phonenumbers' own: on every country code's example
    numbers (the self-check each code runs) and on random numbers near them of every length."""
    rnd = random.Random(f"{SEED}-codes")
    by_code: dict[int, list[str]] = {}
    for code, nsn in _examples():
        by_code.setdefault(code, []).append(nsn)
    mismatches = []
    for code in phonenumbers.COUNTRY_CODE_TO_REGION_CODE:
        country = phone_module._country(code)
        assert country.trusted, code
        for _ in range(120):
            head = rnd.choice(by_code.get(code, ["1"]))[: rnd.randint(1, 5)]
            nsn = head + "".join(str(rnd.randrange(10)) for _ in range(rnd.randint(0, 12)))
            if nsn[0] == "0" or not 2 <= len(nsn) <= 17:
                continue
            want = phonenumbers.is_valid_number(phonenumbers.PhoneNumber(country_code=code, national_number=int(nsn)))
            if country.valid(nsn) != want:
                mismatches.append((code, nsn, want))
    assert mismatches[:20] == []


_ATEXT_CHARS = "abcxyz0189!#$%&'*+-/=?^_`{|}~"
_PLAIN_DOMAINS = [
    *_COMMON,
    "xn--mnchen-3ya.de",  # IDNA: normalised to its Unicode form
    "xn--bcher-kva.example",  # IDNA under a reserved name
    "xn--zz.com",  # not valid IDNA
    "xn--4dbc.1.com",  # right-to-left label next to a digit label
    "localhost", "host.test", "box.local", "printer.invalid", "x.arpa", "example", "x.123", "x.c0m",
    "-x.com", "x-.com", "x..com", ".x.com", "x.com.", "a.b-c.co", "1.2.3.4", "a" * 63 + ".com", "b" * 64 + ".com",
    ".".join(["c" * 60] * 4) + ".com",  # 249 characters
    ".".join(["d" * 61] * 4) + ".co",  # 250
    ".".join(["e" * 62] * 4) + ".c",  # 252, not within a top-level domain
    ".".join(["f" * 62] * 4) + ".io",  # 253, the longest a domain may be
    ".".join(["g" * 62] * 4) + ".com",  # 254, too long
    "xn--mnchen-3ya." + ".".join(["h" * 60] * 3) + ".com",  # long, and longer in UTF-8 once decoded
]  # fmt: skip
_MAILBOXES = ["Info", "POSTMASTER", "abuse", "Sales", "www"]  # compared case-insensitively by email-validator


def _plain_address(rnd: random.Random) -> str:
    kind = rnd.random()
    if kind < 0.5:
        separator = rnd.choice([".", "_", "", "+", "-"])
        local = rnd.choice(_FIRST) + separator + rnd.choice(_LAST) + str(rnd.randrange(10**6))
        local = "".join(c for c in local if c.isascii()) or "x"
    elif kind < 0.7:
        local = ".".join(
            "".join(rnd.choice(_ATEXT_CHARS) for _ in range(rnd.randint(1, 8))) for _ in range(rnd.randint(1, 3))
        )
    elif kind < 0.8:
        local = rnd.choice(_MAILBOXES)
    elif kind < 0.9:
        local = "l" * rnd.choice([1, 63, 64, 65, 66, 100, 180, 190, 200, 250])
    else:  # near misses: dots out of place, quotes, non-ASCII, brackets
        local = rnd.choice([".a", "a.", "a..b", '"a"', "é", "a b", "a(b)", "[a]", "a\\b", "a,b"])
    domain = rnd.choice(_PLAIN_DOMAINS)
    address = f"{local}@{domain}"
    if rnd.random() < 0.2:
        address = address.upper() if rnd.random() < 0.5 else address.title()
    if rnd.random() < 0.05:
        address = f" {address}\t"
    return address


def test_plain_addresses() -> None:
    """Plain ASCII addresses, including every length limit and domains email-validator refuses or
    rewrites: the fast path answers most, email-validator the rest, identically."""
    cells = [_plain_address(random.Random(f"{SEED}-{n}")) for n in range(20_000)]
    fast, slow = _check_emails(cells)
    assert fast > 0.3 * len(cells)
    assert slow > 0.2 * len(cells)


@settings(max_examples=1500, deadline=None)
@given(
    st.text(alphabet=st.sampled_from(list("0123456789 ().-")), min_size=3, max_size=24),
    st.booleans(),
    st.sampled_from([None, "US", "CA", "GB", "DE", "FR", "IN", "BR", "AU", "JP", "IT", "AR", "MX", "001", "us"]),
)
def test_plain_phone_property(digits: str, plus: bool, region: str | None) -> None:
    """Random cells of the fast path's alphabet: whatever path answers, it is phonenumbers' answer."""
    cell = ("+" + digits if plus else digits).strip()
    if not cell:
        return
    assert_phone_as_the_library_says(cell, region)


def test_the_benchmark_file(tmp_path: Path) -> None:
    """The benchmark generator's file (benchmarks/generate.py): every email and phone verdict of the
    import is the libraries' own, and the fast paths answered nearly all of them."""
    sys.path.insert(0, str(BENCH_DIR))
    try:
        from generate import generate as generate_benchmark  # type: ignore[import-not-found]
    finally:
        sys.path.remove(str(BENCH_DIR))
    rows = int(os.environ.get("TRUAGENTS_DIFFERENTIAL_ROWS", "20000"))
    inbox = tmp_path / "inbox"
    generate_benchmark(inbox / "contacts.csv", rows, seed=7)
    with (inbox / "contacts.csv").open(encoding="utf-8", newline="") as f:
        reader = csv.reader(f)
        header = next(reader)
        data = list(reader)
    email_at, phone_at = header.index("Email"), header.index("Phone")
    result, contacts = run(inbox, "US", "drop_field")
    assert result.rows == rows == result.imported + result.duplicates
    mismatches = []
    for n, row in enumerate(data, start=1):
        got = contacts.get(n)
        if got is None:  # an earlier row of a duplicated customer ID: the later one won
            continue
        want = (expected_email(row[email_at]), expected_phone(row[phone_at], "US"))
        if (got.email, got.phone) != want:
            mismatches.append((n, row[email_at], row[phone_at], got.email, got.phone, want))
    assert mismatches[:20] == []
    emails = [row[email_at] for row in data if row[email_at].strip()]
    phones = [row[phone_at] for row in data if row[phone_at].strip()]
    assert sum(map(_fast_email, emails)) > 0.95 * len(emails)
    assert sum(_fast_phone(p.strip(), "US") for p in phones) > 0.95 * len(phones)


SHARED_BENCH = Path(__file__).resolve().parents[2] / "shared" / "bench" / "gen_contacts.py"


def expected_phone_in_country(cell: str, country: str, default: str) -> str | None:
    """SPEC 9 with phonenumbers called directly: read in the row's country first, then in ``default``."""
    region = country.strip().upper()
    if region and region in phonenumbers.SUPPORTED_REGIONS and not cell.strip().startswith("+"):
        found = expected_phone(cell, region)
        if found is not None:
            return found
    return expected_phone(cell, default)


@pytest.mark.skipif(not SHARED_BENCH.exists(), reason="the shared benchmark generator is not beside the project")
@pytest.mark.parametrize("columns", [False, True], ids=["rows", "columns"])
def test_the_shared_benchmark_file_with_per_row_regions(tmp_path: Path, columns: bool) -> None:
    """The benchmark workload (14 countries, national formats), row by row and in columns: every phone
    is read in its row's ``Country`` first, then in default_region, exactly as phonenumbers says; every
    email as email-validator says. TRUAGENTS_DIFFERENTIAL_ROWS=1000000 (nox -s bench) runs the whole file."""
    rows = int(os.environ.get("TRUAGENTS_DIFFERENTIAL_ROWS", "20000"))
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    subprocess.run(
        [sys.executable, str(SHARED_BENCH), str(rows), "--seed", "20240601", "--out", str(inbox / "contacts.csv")],
        check=True,
        capture_output=True,
    )
    with (inbox / "contacts.csv").open(encoding="utf-8", newline="") as f:
        reader = csv.reader(f)
        header = next(reader)
        data = list(reader)
    email_at, phone_at, country_at = header.index("Email"), header.index("Phone"), header.index("Country")
    result, contacts = run(inbox, "US", "drop_field", columns=columns)
    assert result.rows == rows == result.imported + result.duplicates + result.rejected
    # drop_field keeps every row that still has an identity once its invalid values are dropped.
    assert {p.code for p in result.problems} <= {"missing_identity"} and result.rejected < rows // 1000
    mismatches = []
    regional = 0
    for n, row in enumerate(data, start=1):
        got = contacts.get(n)
        if got is None:  # rejected (no identity left), or a duplicated External ID whose later row won
            continue
        want_phone = expected_phone_in_country(row[phone_at], row[country_at], "US")
        want = (expected_email(row[email_at]), want_phone)
        regional += want_phone is not None and want_phone != expected_phone(row[phone_at], "US")
        if (got.email, got.phone) != want:
            mismatches.append((n, row[email_at], row[phone_at], row[country_at], got.email, got.phone, want))
        assert got.attributes.get("Country") == row[country_at]  # the country itself stays in attributes
    assert mismatches[:20] == []
    assert regional > rows // 10  # many phones are valid only in their row's country


# --- the worker process: the same import whichever process built the rows ----------------------
#
# Large files are built with the help of a worker process (a second CPU): rows go to it in chunks
# and come back in order. Nothing about the outcome may depend on that: the same contacts, counts,
# problems (in the same order), warnings and rejects file, with plugins rejecting rows, with a
# file that turns out malformed part-way, with rows too large to read, with a plugin that fails,
# and with a worker that dies. Each case runs the import twice, row by row and with the worker
# (which ordinary tests never start: their files are small), and compares everything.


class _RejectEvery:
    """A validate_contacts plugin that rejects every ``n``-th contact it sees, by its row number."""

    def __init__(self, n: int) -> None:
        self.n = n

    @hookimpl
    def validate_contacts(self, contacts: list[Contact], source: DataSource) -> Iterator[tuple[int, Problem]]:
        for index, c in enumerate(contacts):
            if c.source_row is not None and c.source_row % self.n == 0:
                yield index, Problem(code="every_nth", message=f"row {c.source_row} is a multiple of {self.n}")


class _FailOnBatch:
    """A validate_contacts plugin that raises on its ``n``-th batch."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.batches = 0

    @hookimpl
    def validate_contacts(self, contacts: list[Contact], source: DataSource) -> None:
        self.batches += 1
        if self.batches == self.n:
            raise RuntimeError("plugin broke")


def _import_twice(
    folder: Path,
    tmp: Path,
    monkeypatch: pytest.MonkeyPatch,
    make_plugins: Any = list,
    *,
    worker_answers: bool = True,
    **options: Any,
) -> tuple[FileResult, list[Contact], str | None]:
    """Import ``folder``'s one file row by row and with the worker; assert the outcomes are equal; return one."""
    received = 0
    receive = parallel_module.Worker.receive

    def counting_receive(self: Any) -> Any:
        nonlocal received
        answer = receive(self)
        received += 1
        return answer

    monkeypatch.setattr(parallel_module.Worker, "receive", counting_receive)
    start = parallel_module.Worker.__init__

    def started(self: Any) -> None:
        start(self)
        self.usable(wait=30)  # these files are small: let the worker start before the first chunk

    monkeypatch.setattr(parallel_module.Worker, "__init__", started)
    outcomes = []
    for parallel in (False, True):
        source = DataSource(name="diff", path=str(folder), min_age=0, encoding="utf-8", delimiter=",", **options)
        sink = MemorySink()
        rejects_dir = tmp / f"rejects-{parallel}"
        plugins = make_plugins()
        importer_options = {"plugins": plugins, "entry_points": False, "rejects_dir": rejects_dir, "batch_size": 700}
        with Importer(source, sink, **importer_options) as imp:
            if parallel:
                imp._parallel_min_bytes = 0
            report = imp.run()
        [result] = report.files
        rejects = Path(result.rejects_file).read_text(encoding="utf-8") if result.rejects_file else None
        outcomes.append((attrs.evolve(result, rejects_file=None), sink.contacts, rejects, sink.commits))
    assert outcomes[0] == outcomes[1]
    assert (received > 0) == worker_answers  # the second import really was built by the worker (or not)
    return outcomes[1][0], outcomes[1][1], outcomes[1][2]


def test_the_sqlite_sink_gets_the_same_rows_every_way(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """SQLite takes the staging file in SQL, built by the helper process or here; a sink that only
    writes Contact batches gets the same rows: the same contacts, columns and JSON text."""
    started: list[object] = []
    start = parallel_module.Worker.__init__

    def ready(self: Any) -> None:
        started.append(self)
        start(self)
        self.usable(wait=30)  # a small file: let the helper start before the first chunk

    monkeypatch.setattr(parallel_module.Worker, "__init__", ready)

    class Writing(SQLiteSink):
        def write(self, contacts: Sequence[Contact]) -> None:
            super().write(contacts)

    make_file(tmp_path / "inbox", "US", 6000)
    tables = []
    for name, kind, parallel in (("sql", SQLiteSink, False), ("sql-helper", SQLiteSink, True),
                                 ("write", Writing, False)):  # fmt: skip
        source = DataSource(name="s", path=str(tmp_path / "inbox"), min_age=0, default_region="US",
                            on_invalid="drop_field")
        db = tmp_path / f"{name}.db"
        with Importer(source, kind(db), plugins=[_RejectEvery(41)], entry_points=False, parallel=parallel) as imp:
            imp._parallel_min_bytes = 0
            [result] = imp.run().files
        assert result.status == "imported" and result.imported > 5000, result.imported
        with sqlite3.connect(db) as conn:
            tables.append(conn.execute(
                "SELECT identity, external_id, email, phone, first_name, last_name, timezone, tags, unsubscribed,"
                " attributes, source, source_file, source_row FROM contacts ORDER BY identity"
            ).fetchall())  # fmt: skip
    assert tables[0] == tables[1] == tables[2]
    assert len(started) == (1 if parallel_module.usable_cpus() >= 2 else 0)


def test_parallel_false_starts_no_helper_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    started: list[object] = []
    start = parallel_module.Worker.__init__

    def recording(self: Any) -> None:
        started.append(self)
        start(self)

    monkeypatch.setattr(parallel_module.Worker, "__init__", recording)
    make_file(tmp_path / "inbox", "US", 3000)
    results = []
    for parallel in (False, True):
        source = DataSource(name="p", path=str(tmp_path / "inbox"), min_age=0, default_region="US")
        with Importer(source, MemorySink(), entry_points=False, parallel=parallel) as imp:
            imp._parallel_min_bytes = 0  # every file counts as large
            results.append(imp.run().files[0])
        assert len(started) == (0 if not parallel or parallel_module.usable_cpus() < 2 else 1)
    assert results[0] == results[1]


@pytest.mark.parametrize("on_invalid", ["drop_field", "reject"])
def test_the_worker_imports_the_same(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, on_invalid: str) -> None:
    rows = 12_345
    data = make_file(tmp_path / "inbox", "US", rows)
    result, contacts, rejects = _import_twice(
        tmp_path / "inbox",
        tmp_path,
        monkeypatch,
        lambda: [_RejectEvery(97)],
        default_region="US",
        on_invalid=on_invalid,
    )
    assert result.status == "imported" and result.rows == rows
    assert result.rejected >= rows // 97 and rejects is not None
    if on_invalid == "drop_field":
        by_row = {c.source_row: c for c in contacts if c.source_row is not None}
        kept = [row for n, row in enumerate(data, start=1) if n in by_row]
        check_verdicts(kept, "US", {i: by_row[n] for i, n in enumerate(sorted(by_row), start=1)})
        assert any("invalid values dropped" in w for w in result.warnings)


def test_the_worker_and_a_file_malformed_part_way(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Rows read before the file turns out malformed are accounted for the same way."""
    inbox = tmp_path / "inbox"
    data = make_file(inbox, "US", 4_321)
    with (inbox / "contacts.csv").open("a", encoding="utf-8", newline="") as f:
        f.write('r-last,"never closed,+1 212 555 0123\n' + "more,rows,after\n" * 3)
    result, contacts, _ = _import_twice(inbox, tmp_path, monkeypatch, default_region="US")
    assert result.status == "rejected" and result.rows >= len(data) and contacts == []
    assert result.problems[0].code == "malformed_csv"


def test_the_worker_and_fields_too_large(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rows = [(f"r{n}", f"u{n}@example.com", "x" * 300 if n % 501 == 0 else "+1 212 555 0123") for n in range(1, 3_001)]
    write_file(tmp_path / "inbox" / "contacts.csv", rows)
    result, _, rejects = _import_twice(
        tmp_path / "inbox", tmp_path, monkeypatch, default_region="US", max_field_size=200
    )
    assert result.status == "imported" and result.rows == 3_000 and result.rejected == 5
    assert [p.code for p in result.problems] == ["field_too_large"] * 5 and rejects is not None


def test_the_worker_and_a_failing_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A plugin failing on its third batch stops the count at the same row, and the run still ends."""
    make_file(tmp_path / "inbox", "US", 9_000)
    result, contacts, _ = _import_twice(
        tmp_path / "inbox", tmp_path, monkeypatch, lambda: [_FailOnBatch(3)], default_region="US"
    )
    assert result.status == "failed" and "plugin broke" in (result.reason or "")
    assert result.rows < 9_000 and contacts == []


def test_a_worker_that_dies_changes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """If the worker process cannot run, the importer builds every row itself."""
    monkeypatch.setattr(parallel_module, "_WORKER_CODE", "import sys; sys.exit(3)")
    make_file(tmp_path / "inbox", "GB", 5_000)
    result, contacts, _ = _import_twice(
        tmp_path / "inbox", tmp_path, monkeypatch, worker_answers=False, default_region="GB"
    )
    assert result.status == "imported" and len(contacts) == 5_000 - result.rejected
