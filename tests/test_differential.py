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
import random
import unicodedata
from collections.abc import Iterator
from pathlib import Path

import email_validator
import phonenumbers
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from truagents_import import Contact, DataSource, Importer, MemorySink
from truagents_import.contact import FieldError, normalise_email, normalise_phone
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


def run(folder: Path, region: str | None, on_invalid: str) -> tuple[FileResult, dict[int, Contact]]:
    """Import the folder's one file into a MemorySink: its result and its contacts by row."""
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


def test_verdicts_equal_the_libraries(tmp_path: Path) -> None:
    """100,000 rows read as US numbers: every verdict and value is the libraries' own."""
    data = make_file(tmp_path / "inbox", "US", ROWS)
    # drop_field keeps every row (each has a unique ID), so every verdict can be read back.
    result, contacts = run(tmp_path / "inbox", "US", "drop_field")
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


@settings(max_examples=600, deadline=None)
@given(_PHONES, _REGION)
def test_phone_property(value: str, region: str | None) -> None:
    cell = value.strip()
    if not cell:
        return
    want = expected_phone(cell, region)
    if want is None:
        with pytest.raises(FieldError):
            normalise_phone(cell, region)
    else:
        assert normalise_phone(cell, region) == want
