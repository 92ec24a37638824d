"""Contact and the field normalisers of SPEC 3.

Each normaliser takes the stripped cell text and returns the normalised value or raises
:class:`FieldError`. They are pure functions: the importer decides what an error means
(reject the row, or drop the field).
"""

from __future__ import annotations

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
    "Contact",
    "FieldError",
    "normalise_bool",
    "normalise_email",
    "normalise_phone",
    "normalise_tags",
    "normalise_timezone",
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
    """Strip and lower-case an address; its syntax is checked by email-validator, without DNS."""
    email = value.strip().lower()
    try:
        email_validator.validate_email(email, check_deliverability=False)
    except email_validator.EmailNotValidError as exc:
        raise FieldError("invalid_email", f"not a valid email address: {exc}") from None
    return email


def normalise_phone(value: str, region: str | None) -> str:
    """Parse a phone number (with the source's default region) and return it as E.164."""
    try:
        number = phonenumbers.parse(value, region)
    except phonenumbers.NumberParseException as exc:
        hint = (
            ""
            if region or value.lstrip().startswith("+")
            else " (set default_region or write +<country code>)"
        )
        raise FieldError("invalid_phone", f"not a phone number: {exc._msg}{hint}") from None
    if not phonenumbers.is_valid_number(number):
        raise FieldError("invalid_phone", "not a valid phone number for its country")
    return str(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))


@functools.cache
def _zones_by_folded_name() -> dict[str, str]:
    return {name.casefold(): name for name in zoneinfo.available_timezones()}


def normalise_timezone(value: str) -> str:
    """Match an IANA time zone name case-insensitively and return its canonical spelling."""
    name = _zones_by_folded_name().get(value.strip().casefold())
    if name is None:
        raise FieldError("invalid_timezone", "not an IANA time zone name (for example America/New_York)")
    return name


def infer_timezone(phone_e164: str) -> str | None:
    """The single time zone phonenumbers gives for a number, or ``None`` when it gives none or several."""
    number = phonenumbers.parse(phone_e164, None)
    zones = phone_timezone.time_zones_for_number(number)
    if len(zones) == 1 and zones[0] != phone_timezone.UNKNOWN_TIMEZONE:
        return str(zones[0])
    return None


_TAG_SPLIT = re.compile(r"[;,|]")


def normalise_tags(value: str) -> tuple[str, ...]:
    """Split tags on ``;``, ``,`` and ``|``; strip them, drop empties and duplicates, keep order."""
    return tuple(dict.fromkeys(t for t in (p.strip() for p in _TAG_SPLIT.split(value)) if t))


_TRUE = frozenset({"true", "yes", "y", "1"})
_FALSE = frozenset({"false", "no", "n", "0"})


def normalise_bool(value: str, field: str = "unsubscribed") -> bool | None:
    """true/false, yes/no, y/n, 1/0 in any case; empty means unknown (``None``)."""
    v = value.strip().lower()
    if not v:
        return None
    if v in _TRUE:
        return True
    if v in _FALSE:
        return False
    raise FieldError(f"invalid_{field}", "expected true/false, yes/no, y/n or 1/0")


def split_full_name(value: str) -> tuple[str | None, str | None]:
    """Split a full name at its last space: ``"Mary Ann Smith"`` -> ``("Mary Ann", "Smith")``."""
    name = " ".join(value.split())
    if not name:
        return None, None
    first, _, last = name.rpartition(" ")
    if not first:
        return last, None
    return first, last
