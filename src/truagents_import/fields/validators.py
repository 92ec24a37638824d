"""The built-in contact validators, registered as a plugin like any other (``validate_contacts``).

Field values are normalised and checked while rows become contacts (see
:mod:`truagents_import.fields.contact`); this plugin adds the rules that need the whole contact.
Its problems reject rows exactly as a third-party plugin's do.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from truagents_import.hookspecs import hookimpl
from truagents_import.report import Problem

if TYPE_CHECKING:
    from truagents_import.fields.contact import Contact
    from truagents_import.source import DataSource

__all__ = ["MISSING_IDENTITY", "missing_identity", "validate_contacts"]


#: Why a row without external_id, email and phone is rejected (``missing_identity``).
MISSING_IDENTITY = (
    "external_id, email and phone are all empty: a contact needs at least one of them; "
    "fill one in upstream or remove the row"
)


def missing_identity(row: int | None) -> Problem:
    """The problem of a contact with no identity (the rule of SPEC 3, written once)."""
    return Problem(code="missing_identity", message=MISSING_IDENTITY, row=row)


@hookimpl
def validate_contacts(contacts: list[Contact], source: DataSource) -> Iterator[tuple[int, Problem]]:
    """Reject contacts with no identity: no external_id, email or phone (``missing_identity``).

    The row builder applies the same rule to the rows it builds, so that no contact object is made
    for a row unless a plugin asks for contacts; this plugin holds contacts from anywhere to it.
    """
    for index, contact in enumerate(contacts):
        if contact.identity is None:
            yield index, missing_identity(contact.source_row)
