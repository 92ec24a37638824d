"""Contact and the field normalisers of SPEC 3.

Each normaliser is a small pure function: it takes one cell's text and returns the
normalised value, or raises :class:`FieldError` whose ``code`` is the problem code
(``invalid_<field>``). The importer decides what an error means (reject the row, or drop
the field). The email and phone normalisers are defined as exactly what email-validator and
phonenumbers say; ``tests/test_differential.py`` holds them to it on a large generated file,
so a faster path added here later must give the same verdicts and values.
"""

from __future__ import annotations

import difflib
import functools
import re
import zoneinfo
from collections.abc import Mapping
from typing import Any

import attrs
import email_validator
import phonenumbers
from phonenumbers import timezone as phone_timezone

__all__ = [
    "FIELDS",
    "IDENTITY_FIELDS",
    "Contact",
    "FieldError",
    "infer_timezone",
    "normalise_bool",
    "normalise_email",
    "normalise_phone",
    "normalise_region",
    "normalise_tags",
    "normalise_timezone",
    "prepare_phone_parsing",
    "split_full_name",
]

#: The contact fields a column can map to, in the order of SPEC 3.
FIELDS: tuple[str, ...] = (
    "external_id",
    "email",
    "phone",
    "first_name",
    "last_name",
    "timezone",
    "tags",
    "unsubscribed",
)

#: The fields a contact's identity comes from, in order of preference.
IDENTITY_FIELDS: tuple[str, ...] = ("external_id", "email", "phone")


@attrs.frozen
class Contact:
    """One normalised contact.

    Fields are those of SPEC 3; ``source``, ``source_file`` and ``source_row`` say where the
    contact came from (the importer fills them in).
    """

    external_id: str | None = None
    email: str | None = None
    phone: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    timezone: str | None = None
    tags: tuple[str, ...] = ()
    unsubscribed: bool | None = None
    attributes: Mapping[str, str] = attrs.field(factory=dict, hash=False)
    source: str | None = None
    source_file: str | None = None
    source_row: int | None = None

    @property
    def identity(self) -> str | None:
        """The key contacts are merged on: ``external_id``, else ``email``, else ``phone``."""
        return self.external_id or self.email or self.phone

    def to_dict(self) -> dict[str, Any]:
        """The contact as a plain dict (tags as a list, attributes as a dict)."""
        return {
            "external_id": self.external_id,
            "email": self.email,
            "phone": self.phone,
            "first_name": self.first_name,
            "last_name": self.last_name,
            "timezone": self.timezone,
            "tags": list(self.tags),
            "unsubscribed": self.unsubscribed,
            "attributes": dict(self.attributes),
            "source": self.source,
            "source_file": self.source_file,
            "source_row": self.source_row,
        }


class FieldError(ValueError):
    """A cell's value is not valid for its field; ``code`` is the problem code (``invalid_<field>``)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def normalise_email(value: str) -> str:
    """Strip and lower-case an address, check its syntax with email-validator (no DNS look-up).

    Returns email-validator's normalised form of the lower-cased address: Unicode in NFC,
    an internationalised domain in its Unicode form (``a@xn--ber-goa.de`` -> ``a@über.de``).
    email-validator's defaults apply: quoted local parts, IP-address domains, display names
    (``Ann <ann@example.com>``) and special-use domains (``.test``, ``.local``) are invalid.
    """
    try:
        return str(email_validator.validate_email(value.strip().lower(), check_deliverability=False).normalized)
    except email_validator.EmailNotValidError as exc:
        raise FieldError("invalid_email", f"not a valid email address: {exc}") from None


_PARSE_ERRORS = {
    phonenumbers.NumberParseException.INVALID_COUNTRY_CODE: "no valid country code",
    phonenumbers.NumberParseException.NOT_A_NUMBER: "not a phone number",
    phonenumbers.NumberParseException.TOO_SHORT_AFTER_IDD: "too short after the international prefix",
    phonenumbers.NumberParseException.TOO_SHORT_NSN: "too short",
    phonenumbers.NumberParseException.TOO_LONG: "too long",
}

_LENGTH_ERRORS = {
    phonenumbers.ValidationResult.TOO_SHORT: "too short",
    phonenumbers.ValidationResult.TOO_LONG: "too long",
    phonenumbers.ValidationResult.INVALID_LENGTH: "the wrong length",
    phonenumbers.ValidationResult.INVALID_COUNTRY_CODE: "an unknown country code",
    phonenumbers.ValidationResult.IS_POSSIBLE_LOCAL_ONLY: "a local number without its area code",
}


def normalise_phone(value: str, region: str | None) -> str:
    """Parse a phone number with phonenumbers and return it as E.164 (``+12125550123``).

    ``region`` (the source's ``default_region``, an ISO 3166 code such as ``US``) is how a
    number written without ``+<country code>`` is read. The number must be valid
    (``phonenumbers.is_valid_number``), not merely possible. An extension is not part of
    E.164 and is not kept.
    """
    try:
        number = phonenumbers.parse(value, region)
    except phonenumbers.NumberParseException as exc:
        reason = _PARSE_ERRORS.get(exc.error_type, "not a phone number")
        hint = ""
        if exc.error_type == phonenumbers.NumberParseException.INVALID_COUNTRY_CODE:
            if not region:
                hint = "; write it as +<country code> <number>, or set the source's default_region (e.g. 'US')"
            elif region not in phonenumbers.SUPPORTED_REGIONS:
                hint = f"; default_region {region!r} is not a region code phonenumbers knows (e.g. 'US', 'GB')"
        raise FieldError("invalid_phone", f"not a valid phone number: {reason}{hint}") from None
    if not phonenumbers.is_valid_number(number):
        code = number.country_code or 0
        main_region = phonenumbers.region_code_for_country_code(code)
        where = f"+{code}" + (f" ({main_region})" if main_region != phonenumbers.UNKNOWN_REGION else "")
        reason = _LENGTH_ERRORS.get(phonenumbers.is_possible_number_with_reason(number), "no such numbers are in use")
        hint = ""
        if region and not value.lstrip().startswith("+"):
            hint = f" (read as a {region} number; numbers from elsewhere need +<country code>)"
        raise FieldError("invalid_phone", f"not a valid {where} phone number: {reason}{hint}")
    return str(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))


def prepare_phone_parsing() -> None:
    """Let phonenumbers keep every regex it compiles (call once before parsing many numbers).

    phonenumbers compiles its per-region patterns through ``re``, whose cache holds 512
    patterns: a file with numbers from many countries overflows it and every number then
    recompiles patterns (measured 3 to 4 times slower). phonenumbers offers a cache of its
    own; this turns it on, for the whole process. It holds about 2,000 patterns at most.
    """
    enable = getattr(phonenumbers, "enable_pattern_cache", None)  # absent from older phonenumbers
    if enable is not None:
        enable()


def normalise_region(value: str) -> str:
    """Check a ``default_region`` (``"us"`` -> ``"US"``); raise ``ValueError`` naming the fix if unknown."""
    region = value.strip().upper()
    if region not in phonenumbers.SUPPORTED_REGIONS:
        msg = f"{value!r} is not a region code phonenumbers knows; use an ISO 3166 alpha-2 code such as 'US' or 'GB'"
        raise ValueError(msg)
    return region


#: Names in the zoneinfo folder that are not IANA time zones for people (``localtime`` is the
#: machine's own setting, ``Factory`` means "not set").
_NOT_ZONES = frozenset({"localtime", "posixrules", "Factory"})


@functools.cache
def _zones_by_folded_name() -> dict[str, str]:
    return {name.casefold(): name for name in zoneinfo.available_timezones() if name not in _NOT_ZONES}


@functools.lru_cache(maxsize=1024)
def _timezone_error(value: str) -> FieldError:
    zones = _zones_by_folded_name()
    close = difflib.get_close_matches(value.casefold(), list(zones), n=1, cutoff=0.8)
    hint = f"did you mean {zones[close[0]]}?" if close else "for example America/New_York or Europe/Paris"
    return FieldError("invalid_timezone", f"not an IANA time zone name: {hint}")


def normalise_timezone(value: str) -> str:
    """Match an IANA time zone name case-insensitively and return its canonical spelling.

    ``america/new_york`` -> ``America/New_York``. Names are those of the machine's time zone
    database (``zoneinfo.available_timezones()``); a link such as ``US/Eastern`` is kept as
    written, not resolved.
    """
    name = _zones_by_folded_name().get(value.strip().casefold())
    if name is None:
        error = _timezone_error(value.strip())
        raise FieldError(error.code, error.message)
    return name


def infer_timezone(phone_e164: str) -> str | None:
    """The single time zone phonenumbers gives for a number, or ``None`` when it gives none or several."""
    number = phonenumbers.parse(phone_e164, None)
    zones = phone_timezone.time_zones_for_number(number)
    if len(zones) != 1:
        return None
    return _zones_by_folded_name().get(str(zones[0]).casefold())


_TAG_SPLIT = re.compile(r"[;,|]")


def normalise_tags(value: str) -> tuple[str, ...]:
    """Split tags on ``;``, ``,`` and ``|``; strip them, drop empties and duplicates, keep order."""
    return tuple(dict.fromkeys(t for t in (p.strip() for p in _TAG_SPLIT.split(value)) if t))


_TRUE = frozenset({"true", "yes", "y", "1"})
_FALSE = frozenset({"false", "no", "n", "0"})


def normalise_bool(value: str) -> bool | None:
    """true/false, yes/no, y/n, 1/0 in any case; empty means unknown (``None``).

    Raises :class:`FieldError` with code ``invalid_unsubscribed`` (the only boolean field).
    """
    v = value.strip().lower()
    if not v:
        return None
    if v in _TRUE:
        return True
    if v in _FALSE:
        return False
    raise FieldError("invalid_unsubscribed", "expected true/false, yes/no, y/n or 1/0 (any case), or empty for unknown")


def split_full_name(value: str) -> tuple[str | None, str | None]:
    """Split a full name at its last space: ``"Mary Ann Smith"`` -> ``("Mary Ann", "Smith")``.

    Runs of whitespace count as one space; a single word is a first name only.
    """
    name = " ".join(value.split())
    if not name:
        return None, None
    first, _, last = name.rpartition(" ")
    if not first:
        return last, None
    return first, last
