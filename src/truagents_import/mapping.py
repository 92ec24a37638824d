"""Header -> field mapping.

The built-in aliases of SPEC 3 are an ordinary plugin (:data:`BuiltinAliases`); the source's
explicit mapping wins over every plugin, and later-registered plugins win over earlier ones.
Columns mapped to nothing are kept verbatim in ``attributes``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

import attrs

from truagents_import.contact import FIELDS
from truagents_import.hookspecs import hookimpl

if TYPE_CHECKING:
    from truagents_import.source import DataSource

__all__ = ["ALIASES", "ColumnMapping", "fold_header", "resolve_mapping"]

#: Pseudo-field for a lone full-name column, split at its last space into first and last name.
FULL_NAME = "full_name"

#: Built-in header aliases per field (SPEC 3), compared through :func:`fold_header`.
ALIASES: dict[str, tuple[str, ...]] = {
    "external_id": ("external id", "id", "contact id", "customer id", "record id"),
    "email": ("email", "e-mail", "email address", "e-mail address", "mail"),
    "phone": ("phone", "phone number", "mobile", "mobile phone", "cell", "telephone", "tel"),
    "first_name": ("first name", "first", "given name", "fname"),
    "last_name": ("last name", "last", "surname", "family name", "lname"),
    "timezone": ("timezone", "time zone", "tz"),
    "tags": ("tags", "labels", "segments"),
    "unsubscribed": ("unsubscribed", "opt out", "opted out", "do not contact"),
    FULL_NAME: ("name", "full name"),
}

_FOLD = re.compile(r"[\s_\-]+")


def fold_header(name: str) -> str:
    """Compare headers case-, space-, ``_``- and ``-``-insensitively: ``"E-Mail_Address"`` -> ``"emailaddress"``."""
    return _FOLD.sub("", name).casefold()


_BY_FOLDED: dict[str, str] = {fold_header(a): field for field, aliases in ALIASES.items() for a in aliases}


def valid_target(target: str) -> bool:
    """Whether ``target`` is something a column can map to."""
    return target in FIELDS or target == FULL_NAME or (target.startswith("attributes.") and len(target) > 11)


class BuiltinAliases:
    """The built-in aliases of SPEC 3, registered as a plugin like any other."""

    @hookimpl
    def map_columns(self, header: list[str], source: DataSource) -> dict[str, str]:
        """Map every header that is a known alias to its field."""
        found = {}
        for column in header:
            field = _BY_FOLDED.get(fold_header(column))
            if field is not None:
                found[column] = field
        return found


@attrs.frozen
class ColumnMapping:
    """The resolved mapping of one file's header: which column index feeds which field."""

    #: field -> column index, for the contact fields (and ``full_name``) that are mapped.
    fields: dict[str, int]
    #: (attribute name, column index) for every column kept in ``attributes``.
    attributes: tuple[tuple[str, int], ...]
    #: column header -> target, for display (``preview``, reports).
    by_column: dict[str, str]
    #: Things worth telling the operator (two columns for one field, ...).
    warnings: tuple[str, ...] = ()

    @property
    def has_identity(self) -> bool:
        """Whether a column feeds ``external_id``, ``email`` or ``phone``."""
        return any(f in self.fields for f in ("external_id", "email", "phone"))


def resolve_mapping(
    header: list[str], plugin_results: Iterable[Mapping[str, str]], explicit: Mapping[str, str]
) -> ColumnMapping:
    """Merge plugin mappings (in registration order, later wins) and the explicit one (wins over all)."""
    merged: dict[str, str] = {}
    for result in plugin_results:
        merged.update(result)
    folded_explicit = {fold_header(k): v for k, v in explicit.items()}
    explicit_columns: set[str] = set()
    for column in header:
        target = explicit.get(column, folded_explicit.get(fold_header(column)))
        if target is not None:
            merged[column] = target
            explicit_columns.add(column)
    # A field the explicit mapping assigns is taken from that column, whatever plugins said.
    claimed = {merged[c] for c in explicit_columns if not merged[c].startswith("attributes.")}
    for column in header:
        if column not in explicit_columns and merged.get(column) in claimed:
            del merged[column]

    fields: dict[str, int] = {}
    attributes: list[tuple[str, int]] = []
    by_column: dict[str, str] = {}
    warnings: list[str] = []
    for index, column in enumerate(header):
        target = merged.get(column)
        if target is not None and not valid_target(target):
            warnings.append(f"column {column!r}: unknown target {target!r}, kept in attributes")
            target = None
        if target is None or target.startswith("attributes."):
            name = column if target is None else target.removeprefix("attributes.")
            attributes.append((name, index))
            by_column[column] = f"attributes.{name}"
        elif target in fields:
            first = header[fields[target]]
            warnings.append(
                f"columns {first!r} and {column!r} both map to {target}; {column!r} kept in attributes"
            )
            attributes.append((column, index))
            by_column[column] = f"attributes.{column}"
        else:
            fields[target] = index
            by_column[column] = target
    if FULL_NAME in fields and ("first_name" in fields or "last_name" in fields):
        index = fields.pop(FULL_NAME)
        attributes.append((header[index], index))
        by_column[header[index]] = f"attributes.{header[index]}"
    return ColumnMapping(
        fields=fields, attributes=tuple(attributes), by_column=by_column, warnings=tuple(warnings)
    )
