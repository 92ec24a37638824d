"""Contact: one normalised contact, and the fields a column can map to (SPEC 3).

The normalisers of each field live beside it: :mod:`~truagents_import.fields.email_address`,
:mod:`~truagents_import.fields.phone` and :mod:`~truagents_import.fields.normalise` (time
zones, tags, booleans, names); they are re-exported here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from truagents_import.errors import FieldError
from truagents_import.fields.email_address import normalise_email
from truagents_import.fields.normalise import (
    infer_timezone,
    normalise_bool,
    normalise_tags,
    normalise_timezone,
    split_full_name,
)
from truagents_import.fields.phone import normalise_phone, normalise_region, prepare_phone_parsing

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
