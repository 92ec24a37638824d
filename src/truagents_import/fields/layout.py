"""Export layouts (SPEC 9): how other systems write contacts, and how a header is recognised as one.

A :class:`Layout` names a system's columns and what each becomes, in its order of preference.
:func:`recognise` finds the layout whose distinctive columns a header has; :func:`near_misses`
says when a header *almost* is one (a renamed or missing column). :func:`structured_targets`
gives the columns a layout maps, and :func:`generic_targets` the columns the generic rules of
SPEC 9 map in any file: entity prefixes (``Person - Email``), numbered and labelled email and
phone columns (``Email 2``, ``Phone 1 - Value``, ``Work Phone``), opt-out and consent columns,
tag columns and country columns. Both feed :func:`~truagents_import.fields.mapping.resolve_mapping`,
whose rules make several columns of one field *one* field that takes the first valid value.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Sequence
from typing import Final

import attrs

__all__ = [
    "LAYOUT_TARGETS",
    "Layout",
    "LayoutNearMiss",
    "fold_column",
    "generic_targets",
    "near_misses",
    "recognise",
    "structured_targets",
]

#: What a layout column can map to: the contact fields, ``full_name`` (split at the last space),
#: ``subscribed`` (a consent column: its truth means *not* unsubscribed) and ``country`` (read
#: for the phone region of the row; its value also stays in attributes).
LAYOUT_TARGETS: Final[tuple[str, ...]] = (
    "external_id",
    "email",
    "phone",
    "first_name",
    "last_name",
    "full_name",
    "timezone",
    "tags",
    "unsubscribed",
    "subscribed",
    "country",
)

_FOLD = re.compile(r"[\s_\-]+")


def fold_column(name: str) -> str:
    """Compare column names as SPEC 3 compares aliases: case-, space-, ``_``- and ``-``-insensitively."""
    return _FOLD.sub("", name).casefold()


def _check_targets(
    _: object, attribute: attrs.Attribute[tuple[tuple[str, str], ...]], value: tuple[tuple[str, str], ...]
) -> None:
    for column, target in value:
        if target not in LAYOUT_TARGETS:
            msg = f"{attribute.name}: column {column!r} maps to {target!r}, which is not one of {LAYOUT_TARGETS}"
            raise ValueError(msg)


def _check_patterns(
    _: object, attribute: attrs.Attribute[tuple[tuple[str, str], ...]], value: tuple[tuple[str, str], ...]
) -> None:
    _check_targets(_, attribute, value)
    for pattern, _target in value:
        try:
            re.compile(pattern)
        except re.error as exc:
            msg = f"patterns: {pattern!r} is not a regular expression: {exc}"
            raise ValueError(msg) from None


@attrs.frozen
class Layout:
    """How one system writes contacts (SPEC 9); plugins register their own with ``register_layouts``."""

    #: The layout's name, as a source's ``layout = "<name>"`` names it (``"google_contacts"``).
    name: str
    #: What reports call it (``"Google Contacts export"``).
    title: str
    #: Where its header comes from (a documentation page or a public repository file).
    source: str
    #: ``(column, target)`` pairs as the system writes the columns, in its order of preference
    #: (mobile before landline, primary address first); targets are :data:`LAYOUT_TARGETS`.
    columns: tuple[tuple[str, str], ...] = attrs.field(validator=_check_targets)
    #: ``(regex, target)`` for numbered or labelled columns (``E-mail \d+ - Value``), matched with
    #: ``re.fullmatch(pattern, column, re.IGNORECASE)``; they follow ``columns`` in column order.
    patterns: tuple[tuple[str, str], ...] = attrs.field(default=(), validator=_check_patterns)
    #: Columns that must all be present for a header to be recognised as this layout.
    distinctive: tuple[str, ...] = ()
    #: The first cell of the header line, when the system writes lines before it.
    header_line: str | None = None
    #: How the system writes the file (for the docs and :func:`truagents_import.testing.write_export`);
    #: reading detects the encoding and delimiter anyway.
    encoding: str | None = None
    delimiter: str = ","
    line_ending: str = "\n"

    def matches(self, header: Sequence[str]) -> bool:
        """Whether ``header`` has every distinctive column of this layout (and it has some)."""
        have = {fold_column(c) for c in header}
        wanted = self._wanted()
        return bool(wanted) and all(w in have for w in wanted)

    def _wanted(self) -> tuple[str, ...]:
        return tuple(fold_column(c) for c in (self.distinctive or tuple(c for c, _ in self.columns)))


@attrs.frozen
class LayoutNearMiss:
    """A header that looks like a layout's but lacks some of its distinctive columns."""

    layout: Layout
    missing: tuple[str, ...]
    #: For each missing column, the header's column that most resembles it, if any (a rename).
    renamed: tuple[tuple[str, str], ...] = ()

    def describe(self) -> str:
        """``looks like a Google Contacts export, but ...``, naming the columns that differ."""
        parts = []
        renamed = dict(self.renamed)
        for column in self.missing:
            near = renamed.get(column)
            parts.append(f"{column!r} is missing" + (f" ({near!r} instead?)" if near else ""))
        return (
            f"looks like a {self.layout.title} ({self.layout.name}), but {'; '.join(parts)}: "
            f"rename the column, or set layout = {self.layout.name!r} on the source"
        )


def recognise(header: Sequence[str], layouts: Iterable[Layout]) -> Layout | None:
    """The layout ``header`` is written in: the one with the most distinctive columns, all present."""
    best: Layout | None = None
    for layout in layouts:
        if layout.matches(header) and (best is None or len(layout._wanted()) > len(best._wanted())):
            best = layout
    return best


def near_misses(header: Sequence[str], layouts: Iterable[Layout]) -> list[LayoutNearMiss]:
    """Layouts of which ``header`` has all distinctive columns but one (of three or more)."""
    have = {fold_column(c): c for c in header}
    found = []
    for layout in layouts:
        wanted = list(layout.distinctive or [c for c, _ in layout.columns])
        if len(wanted) < 3:
            continue
        missing = [c for c in wanted if fold_column(c) not in have]
        if len(missing) != 1:
            continue
        renamed = []
        for column in missing:
            close = difflib.get_close_matches(fold_column(column), list(have), n=1, cutoff=0.75)
            if close:
                renamed.append((column, have[close[0]]))
        found.append(LayoutNearMiss(layout, tuple(missing), tuple(renamed)))
    return found


def structured_targets(layout: Layout, header: Sequence[str]) -> list[tuple[int, str]]:
    """``(column index, target)`` for each column of ``header`` the layout maps, in its order of preference."""
    index: dict[str, int] = {}
    for i, column in enumerate(header):
        index.setdefault(fold_column(column), i)
    found: list[tuple[int, str]] = []
    taken: set[int] = set()
    for column, target in layout.columns:
        at = index.get(fold_column(column))
        if at is not None and at not in taken:
            found.append((at, target))
            taken.add(at)
    for i, column in enumerate(header):
        if i in taken:
            continue
        for pattern, target in layout.patterns:
            if re.fullmatch(pattern, column.strip(), re.IGNORECASE):
                found.append((i, target))
                taken.add(i)
                break
    return found


# -- the generic rules of SPEC 9 -------------------------------------------------------------

#: Entity prefixes systems put before column names (Pipedrive's ``Person - Email``).
_ENTITY_PREFIX = re.compile(r"^\s*(?:person|contact|lead|customer|subscriber|member|profile|people)\s*-\s*", re.I)
#: ... and after them (HubSpot's ``Record ID - Contact``).
_ENTITY_SUFFIX = re.compile(r"\s*-\s*(?:person|contact|lead|customer|subscriber|member|profile)\s*$", re.I)
_EMAIL_BASE = r"(?:e[\s_-]*mail|mail)(?:[\s_-]*address)?"
_PHONE_BASE = (
    r"(?:phone(?:[\s_-]*number)?|mobile(?:[\s_-]*phone)?|cell(?:[\s_-]*phone)?|telephone|tel|"
    r"whats[\s_-]*app(?:[\s_-]*number)?|landline(?:[\s_-]*number)?|sms[\s_-]*(?:number|phone))"
)
#: Labels of one person's own addresses and numbers (not a fax, a pager or an assistant's).
_LABEL = (
    r"(?:work|home|business|mobile|other|personal|primary|main|office|private|secondary|alternate|alt|cell|"
    r"direct|company|landline|iphone|whatsapp|car|radio|billing|shipping|mailing|(?:default[\s_-]*)?address)"
)
_NUMBERED = r"[\s_-]*(?:\d+|#\d+)"
_SEP = r"[\s_:/-]*"


def _labelled(base: str) -> re.Pattern[str]:
    return re.compile(
        rf"^(?:{base}{_NUMBERED}(?:{_SEP}(?:value|address))?"  # Email 2, E-mail 1 - Value, E-mail 2 Address
        rf"|{base}{_SEP}\(?{_LABEL}\)?"  # Phone - Work, Email (Home)
        rf"|{_LABEL}{_SEP}{base}(?:{_NUMBERED})?)$",  # Work Phone, Other Email 2
        re.IGNORECASE,
    )


_LABELLED = (("email", _labelled(_EMAIL_BASE)), ("phone", _labelled(_PHONE_BASE)))

#: Column names (folded) of opt-out and consent columns, tag columns and country columns.
OPT_OUT_COLUMNS: Final[frozenset[str]] = frozenset(
    fold_column(c)
    for c in (
        "HasOptedOutOfEmail", "Email Opt Out", "Email Opt-Out", "Do Not Email", "Opt Out", "Opted Out",
        "Unsubscribed", "Do Not Contact", "Email Unsubscribed", "Is Unsubscribed", "Unsubscribe",
        "Email Opted Out", "Global Unsubscribe", "Opt-Out", "Blacklisted", "Email Blacklisted",
    )
)  # fmt: skip
CONSENT_COLUMNS: Final[frozenset[str]] = frozenset(
    fold_column(c)
    for c in (
        "Accepts Email Marketing", "Accepts Marketing", "Email Marketing Consent", "Marketing Consent",
        "Email Consent", "Subscribed", "Email Subscribed", "Email Opt In", "Email Opt-In", "Opted In",
        "Opt In", "Marketing Opt In", "Email Subscription Status", "Subscription Status", "Consent",
    )
)  # fmt: skip
TAG_COLUMNS: Final[frozenset[str]] = frozenset(
    fold_column(c)
    for c in (
        "Tags", "Labels", "Segments", "Categories", "Category", "Tag", "Label", "Group Membership", "Groups",
        "Lists", "Contact Tags", "List Names",
    )
)  # fmt: skip
COUNTRY_COLUMNS: Final[frozenset[str]] = frozenset(
    fold_column(c)
    for c in (
        "Country", "Country Code", "Country/Region", "Country Name", "Country or Region", "Address Country",
        "Billing Country", "Mailing Country", "Default Address Country Code", "Home Country/Region",
        "Business Country/Region", "Other Country/Region", "Country ISO", "Country ISO Code",
    )
)  # fmt: skip


#: Identifier columns systems write besides the aliases of SPEC 3 (folded).
ID_COLUMNS: Final[frozenset[str]] = frozenset(fold_column(c) for c in ("User ID", "EXT_ID", "External Reference"))
#: A country column, however a system labels or places it: ``Address 1 - Country``,
#: ``MailingCountryCode``, ``Card Address Country``, ``Country - Home``, ``Country/Region`` (the word
#: ``country`` on its own, in a name that is not a phone's or an email's).
_COUNTRY_WORD = re.compile(r"(?:^|[\s_/-])country(?:[\s_/-]|$)")
_CAMEL = re.compile(r"(?<=[a-z])(?=[A-Z])")
_NOT_COUNTRY = re.compile(r"phone|e-?mail|mobile|code\s*name", re.IGNORECASE)
#: Phone columns named after a kind of line (SPEC 9's labelled variants: Zoho's ``Mobile`` next to
#: its ``Phone``, Salesforce's ``MobilePhone``), or after the service alone (Brevo's ``WHATSAPP``).
_PHONE_NAMES: Final[frozenset[str]] = frozenset(
    fold_column(c)
    for c in (
        "Mobile", "Mobile Phone", "Mobile Number", "Cell", "Cell Phone", "Cell Number", "WhatsApp",
        "WhatsApp Number", "Landline", "Landline Number",
    )
)  # fmt: skip


def _is_country(bare: str) -> bool:
    words = _CAMEL.sub(" ", bare).lower()
    return bool(_COUNTRY_WORD.search(words)) and not _NOT_COUNTRY.search(words)


#: Opt-out columns named as a sentence: ``Unsubscribed from all email``, ``Opted out of emails``.
_OPT_OUT_SENTENCE = re.compile(r"^(?:unsubscribedfrom|optedoutof|hasoptedoutof|donot(?:email|contact|mail))")


def _generic_target(column: str, is_alias: dict[str, str]) -> str | None:
    """What the generic rules make of one column name (without an entity prefix or suffix), or None."""
    bare = _ENTITY_SUFFIX.sub("", _ENTITY_PREFIX.sub("", column)).strip()
    folded = fold_column(bare)
    if bare != column.strip() and folded in is_alias:
        return is_alias[folded]  # "Person - Email" is an alias without its prefix
    if folded in ID_COLUMNS:
        return "external_id"
    if folded in OPT_OUT_COLUMNS or _OPT_OUT_SENTENCE.match(folded):
        return "unsubscribed"
    if folded in CONSENT_COLUMNS:
        return "subscribed"
    if folded in TAG_COLUMNS:
        return "tags"
    if folded in COUNTRY_COLUMNS or _is_country(bare):
        return "country"
    if folded in _PHONE_NAMES:
        return "phone"
    for field, pattern in _LABELLED:
        if pattern.match(bare):
            return field
    return None


def generic_targets(header: Sequence[str], aliases: dict[str, str]) -> list[tuple[int, str]]:
    """``(column index, target)`` for each column the generic rules of SPEC 9 map, in column order.

    ``aliases`` maps folded alias names to their fields (SPEC 3), for columns such as
    ``Person - Email`` whose name without its entity prefix is an alias.
    """
    found = []
    for i, column in enumerate(header):
        target = _generic_target(column, aliases)
        if target is not None:
            found.append((i, target))
    return found
