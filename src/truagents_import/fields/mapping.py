"""Header -> field mapping.

The built-in aliases of SPEC 3 are an ordinary plugin (:class:`BuiltinAliases`); the source's
explicit mapping wins over every plugin, and later-registered plugins win over earlier ones.
Columns mapped to nothing are kept verbatim in ``attributes`` under their header.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

import attrs

from truagents_import._safety import escape_name
from truagents_import.fields.contact import FIELDS, IDENTITY_FIELDS
from truagents_import.fields.layout import Layout
from truagents_import.hookspecs import hookimpl

if TYPE_CHECKING:
    from truagents_import.source import DataSource

__all__ = [
    "ALIASES",
    "ALIAS_FIELDS",
    "FULL_NAME",
    "BuiltinAliases",
    "ColumnMapping",
    "closest_alias",
    "describe_missing_identity",
    "fold_header",
    "resolve_mapping",
    "valid_target",
]

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
_ATTRIBUTES = "attributes."


def fold_header(name: str) -> str:
    """Compare headers case-, space-, ``_``- and ``-``-insensitively: ``"E-Mail_Address"`` -> ``"emailaddress"``."""
    return _FOLD.sub("", name).casefold()


_BY_FOLDED: dict[str, str] = {fold_header(a): field for field, aliases in ALIASES.items() for a in aliases}
#: Folded alias -> its field, for the generic rules of SPEC 9 (``Person - Email`` is ``email``).
ALIAS_FIELDS: dict[str, str] = _BY_FOLDED
_ALIAS_BY_FOLDED: dict[str, str] = {}
for _aliases in ALIASES.values():
    for _alias in _aliases:
        _ALIAS_BY_FOLDED.setdefault(fold_header(_alias), _alias)  # "email" rather than "e-mail"


def valid_target(target: str) -> bool:
    """Whether ``target`` is something a column can map to: a field, ``full_name`` or ``attributes.<name>``."""
    if target.startswith(_ATTRIBUTES):
        return len(target) > len(_ATTRIBUTES)
    return target in FIELDS or target in PSEUDO_FIELDS


def closest_alias(column: str) -> tuple[str, str] | None:
    """The built-in alias a header most resembles and its field, or ``None`` when none is close.

    ``"EMAIL_ADDR_1"`` -> ``("email address", "email")``; an exact alias returns itself.
    """
    folded = fold_header(column)
    if not folded:
        return None
    best, best_score = "", 0.0
    for alias in _BY_FOLDED:
        score = difflib.SequenceMatcher(None, folded, alias).ratio()
        if len(alias) >= 4 and alias in folded:
            # "Customer Email" contains "email": a strong hint even when the ratio is low.
            score = max(score, 0.8 + len(alias) / (5 * len(folded)))
        if score > best_score:
            best, best_score = alias, score
    if best_score < 0.7:
        return None
    return _ALIAS_BY_FOLDED[best], _BY_FOLDED[best]


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

    #: field -> column index, for the contact fields (and ``full_name``, ``subscribed``,
    #: ``country``) that are mapped: the field's first column.
    fields: dict[str, int]
    #: (attribute name, column index) for every column kept in ``attributes``, in column order
    #: (``country`` columns too: their value is read for the phone region and kept).
    attributes: tuple[tuple[str, int], ...]
    #: column header -> target, for display (``preview``, reports).
    by_column: dict[str, str]
    #: Things worth telling the operator (two columns for one field, ...).
    warnings: tuple[str, ...] = ()
    #: field -> its further columns, in order of preference (SPEC 9: ``E-mail 2 - Value``,
    #: Outlook's ``Business Phone``...): the field takes the first valid value of all of them,
    #: and every value it does not take stays in attributes under its column's header.
    more: dict[str, tuple[int, ...]] = attrs.field(factory=dict)
    #: The export layout the header was read in (SPEC 9), if any.
    layout: Layout | None = None

    @property
    def has_identity(self) -> bool:
        """Whether a column feeds ``external_id``, ``email`` or ``phone``."""
        return any(f in self.fields for f in IDENTITY_FIELDS)


#: Targets a column can have besides the contact fields: ``full_name`` (split into first and
#: last name), ``subscribed`` (a consent column, the negation of ``unsubscribed``) and
#: ``country`` (the row's country, for its phone region; also kept in attributes).
PSEUDO_FIELDS: tuple[str, ...] = (FULL_NAME, "subscribed", "country")


def _merge_targets(
    header: list[str],
    plugin_results: Iterable[Mapping[str, str]],
    explicit: Mapping[str, str],
    structured: Sequence[tuple[int, str]],
    layout_ranks: int,
    warnings: list[str],
) -> tuple[dict[str, str], dict[int, int]]:
    """column -> target after plugins, then the layout's and generic rules, then the explicit mapping;
    and, for each column a layout or a generic rule mapped, its place in their order of preference."""
    merged: dict[str, str] = {}
    for result in plugin_results:
        merged.update(result)
    order: dict[int, int] = {}
    for rank, (index, target) in enumerate(structured):
        column = header[index]
        if rank < layout_ranks or merged.get(column) in (None, target):
            merged[column] = target
            order.setdefault(index, rank)
    folded_explicit = {fold_header(k): v for k, v in explicit.items()}
    explicit_columns: set[str] = set()
    for index, column in enumerate(header):
        wanted = explicit.get(column) or folded_explicit.get(fold_header(column))
        if wanted is not None:
            merged[column] = wanted
            explicit_columns.add(column)
            order.pop(index, None)
    folded_header = {fold_header(c) for c in header}
    for key in explicit:
        if key not in header and fold_header(key) not in folded_header:
            warnings.append(f"the source's mapping names column {key!r}, which this file does not have")
    # A field the explicit mapping assigns is taken from that column, whatever plugins said.
    claimed = {merged[c] for c in explicit_columns if not merged[c].startswith(_ATTRIBUTES)}
    for index, column in enumerate(header):
        if column not in explicit_columns and merged.get(column) in claimed:
            del merged[column]
            order.pop(index, None)
    return merged, order


def resolve_mapping(
    header: list[str],
    plugin_results: Iterable[Mapping[str, str]],
    explicit: Mapping[str, str],
    *,
    layout: Sequence[tuple[int, str]] = (),
    generic: Sequence[tuple[int, str]] = (),
) -> ColumnMapping:
    """Merge plugin mappings (in registration order, later wins), a layout's columns (which win
    over plugins), the generic rules of SPEC 9 (for columns nothing else mapped) and the explicit
    mapping (which wins over all).

    Explicit mapping keys match headers exactly or, failing that, as :func:`fold_header` does.
    A field the explicit mapping assigns is taken from that column only. Several columns of one
    field from a layout or a generic rule are that field's columns, in the layout's order (or
    column order); two plain columns for one field: the first feeds it, the other is kept in
    attributes (with a warning). A ``full_name`` column next to a first or last name column is
    kept in attributes. Every column not feeding a field is kept in attributes under its
    header, or under the name an ``attributes.<name>`` target gives it; no two columns ever
    share an attribute name.
    """
    warnings: list[str] = []
    structured = [*layout, *((i, t) for i, t in generic if i not in {j for j, _ in layout})]
    merged, order = _merge_targets(header, plugin_results, explicit, structured, len(layout), warnings)
    fields, more, named = _assign(header, merged, order, len(layout), warnings)
    if FULL_NAME in fields and ("first_name" in fields or "last_name" in fields):
        fields.pop(FULL_NAME)
        more.pop(FULL_NAME, None)
    names = _attribute_names(header, fields, more, named, warnings)
    by_column: dict[str, str] = {}
    target_of = {i: f for f, i in fields.items()}
    target_of.update({i: f for f, columns in more.items() for i in columns})
    for index, column in enumerate(header):
        by_column[column] = target_of[index] if index in target_of else _ATTRIBUTES + names[index]
    for i in (fields["country"], *more.get("country", ())) if "country" in fields else ():
        names.setdefault(i, header[i])  # the row's country is read, and kept
    attributes = tuple((names[i], i) for i in sorted(names))
    return ColumnMapping(fields=fields, attributes=attributes, by_column=by_column, warnings=tuple(warnings), more=more)


def _preference(index: int, order: dict[int, int], layout_ranks: int) -> tuple[int, int]:
    rank = order.get(index)
    return (0, rank) if rank is not None and rank < layout_ranks else (1, index)


def _assign(
    header: list[str], merged: dict[str, str], order: dict[int, int], ranks: int, warnings: list[str]
) -> tuple[dict[str, int], dict[str, tuple[int, ...]], dict[int, str]]:
    """The columns of each field (first choice, further ones), and the attribute names asked for."""
    candidates: dict[str, list[int]] = {}
    named: dict[int, str] = {}  # column index -> requested attribute name (attributes.<name>)
    for index, column in enumerate(header):
        target = merged.get(column)
        if target is None:
            continue
        if not valid_target(target):
            warnings.append(f"column {column!r}: unknown target {target!r}, kept in attributes")
        elif target.startswith(_ATTRIBUTES):
            named[index] = target.removeprefix(_ATTRIBUTES)
        else:
            candidates.setdefault(target, []).append(index)
    fields: dict[str, int] = {}
    more: dict[str, tuple[int, ...]] = {}
    for target, columns in candidates.items():
        plain = [i for i in columns if i not in order]
        # A layout's columns in its order of preference, then the others in column order.
        chosen = sorted([*plain[:1], *(i for i in columns if i in order)], key=lambda i: _preference(i, order, ranks))
        for extra in plain[1:]:
            first = header[chosen[0]]
            warnings.append(
                f"columns {first!r} and {header[extra]!r} both map to {target}; {header[extra]!r} kept in attributes"
            )
        fields[target] = chosen[0]
        if len(chosen) > 1:
            more[target] = tuple(chosen[1:])
    return fields, more, named


def _attribute_names(
    header: list[str],
    fields: dict[str, int],
    more: dict[str, tuple[int, ...]],
    named: dict[int, str],
    warnings: list[str],
) -> dict[int, str]:
    """column index -> attribute name for every column not feeding a field."""
    fed = set(fields.values()) | {i for columns in more.values() for i in columns}
    # Columns kept under their own header come first: headers are unique, so they never clash.
    names: dict[int, str] = {i: header[i] for i in range(len(header)) if i not in fed and i not in named}
    taken = set(names.values())
    for index, wanted in named.items():
        name = wanted
        if name in taken:
            name = header[index]
            n = 1
            while name in taken:
                n += 1
                name = f"{header[index]}#{n}"
            warnings.append(
                f"column {header[index]!r}: attribute name {wanted!r} is already used by another column; "
                f"kept as attributes.{name}"
            )
        taken.add(name)
        names[index] = name
    return names


_MAX_LISTED = 30


def describe_missing_identity(header: list[str], mapping: ColumnMapping) -> str:
    """Why a header has no identity column: the columns seen, what each would need to be called,
    and how to map one instead."""
    listed = [escape_name(c) for c in header[:_MAX_LISTED]]
    more = f" and {len(header) - _MAX_LISTED} more" if len(header) > _MAX_LISTED else ""
    hints = []
    example: tuple[str, str] | None = None
    for column in header[:_MAX_LISTED]:
        target = mapping.by_column.get(column, "")
        if not target.startswith(_ATTRIBUTES):
            hints.append(f"{column!r} is {target}")
            continue
        near = closest_alias(column)
        if near is not None:
            alias, field = near
            hints.append(f"{column!r} would need to be called {alias!r} to be {field}")
            if example is None and field in IDENTITY_FIELDS:
                example = (column, field)
    wanted = "; ".join(f"{field}: {', '.join(repr(a) for a in ALIASES[field])}" for field in IDENTITY_FIELDS)
    column, field = example or (header[0] if header else "Column", "email")
    column = escape_name(column)
    return (
        "no column maps to external_id, email or phone, so no row could be identified; "
        f"columns seen: {', '.join(listed)}{more}. "
        + (f"{'; '.join(hints)}. " if hints else "None of them resembles a built-in alias. ")
        + f"Rename a column to one of these (case, spaces, '_' and '-' do not matter): {wanted}; "
        f'or map it in the source\'s mapping, e.g. [sources.mapping] "{column}" = "{field}"'
    )
