"""Several values for one field (SPEC 9): the first valid one wins, the rest stay in attributes.

A field may have several columns (``E-mail 1 - Value``, ``E-mail 2 - Value``; Outlook's
``Mobile Phone``, ``Business Phone``) and a cell several values (Google's ``a ::: b``). The field
takes the first non-empty value that passes its check, in the columns' order of preference and
then in value order; every value it does not take stays in attributes under its column's header.
Also here: the spreadsheet text marker (a leading ``'``), opt-out and consent values, and the
phone read in the row's country first, then in the source's ``default_region``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from truagents_import.errors import FieldError
from truagents_import.fields.normalise import read_flag
from truagents_import.fields.phone import normalise_phone

__all__ = [
    "SEPARATOR",
    "Choice",
    "cell_values",
    "choose",
    "normalise_consent",
    "normalise_opt_out",
    "read_phone",
    "strip_text_marker",
]

#: How Google Contacts writes several values in one cell.
SEPARATOR = " ::: "

#: What :func:`choose` found: the value taken (or None), the first refusal ``(column, value,
#: error)`` when nothing passed, and the values left for attributes ``(column, text)``.
Choice = tuple[object, tuple[int, str, FieldError] | None, list[tuple[int, str]]]


def strip_text_marker(value: str) -> str:
    """Remove the ``'`` a spreadsheet writes before a number to keep it as text (``'7210448301122``)."""
    return value[1:].lstrip() if value.startswith("'") else value


def cell_values(cell: str) -> list[str]:
    """The values of one cell: split on ``' ::: '``, stripped, empties dropped."""
    if SEPARATOR not in cell:
        value = cell.strip()
        return [value] if value else []
    return [v for v in (part.strip() for part in cell.split(SEPARATOR)) if v]


def choose(row: Sequence[str], columns: Sequence[int], normalise: Callable[[str], object]) -> Choice:
    """The first value of ``columns`` (in order, then in value order) that ``normalise`` accepts."""
    taken: object = None
    refused: tuple[int, str, FieldError] | None = None
    left: list[tuple[int, str]] = []
    for index in columns:
        values = cell_values(row[index])
        if not values:
            continue
        unused = []
        for value in values:
            if taken is not None:
                unused.append(value)
                continue
            try:
                taken = normalise(value)
            except FieldError as exc:
                if refused is None:
                    refused = (index, value, exc)
                unused.append(value)
        if unused:
            left.append((index, SEPARATOR.join(unused)))
    return taken, (None if taken is not None else refused), left


def read_phone(value: str, regions: Sequence[str | None]) -> str:
    """A phone number as E.164, read in each region in turn until one reading is valid.

    A number written with ``+`` is read once (its country code decides). When no reading is
    valid, the first region's refusal is raised: it names the country the row said.
    """
    value = strip_text_marker(value)
    if value.startswith("+") or len(regions) < 2:
        return normalise_phone(value, regions[0] if regions else None)
    first: FieldError | None = None
    for region in regions:
        try:
            return normalise_phone(value, region)
        except FieldError as exc:
            first = first or exc
    assert first is not None
    raise first


_OPT_OUT_TRUE = frozenset(
    {"true", "yes", "y", "1", "unsubscribed", "opted out", "opted_out", "opt out", "opt-out", "optout", "cleaned",
     "suppressed", "blocked", "blacklisted", "do not email", "do not contact"}
)  # fmt: skip
_OPT_OUT_FALSE = frozenset(
    {"false", "no", "n", "0", "subscribed", "opted in", "opted_in", "opt in", "opt-in", "optin", "active"}
)  # fmt: skip
_CONSENT_TRUE = frozenset(
    {"true", "yes", "y", "1", "subscribed", "opted in", "opted_in", "opt in", "opt-in", "optin", "granted",
     "confirmed", "single_opt_in", "double_opt_in", "active", "consented"}
)  # fmt: skip
_CONSENT_FALSE = frozenset(
    {"false", "no", "n", "0", "unsubscribed", "cleaned", "never_subscribed", "never subscribed", "not subscribed",
     "suppressed", "opted out", "opted_out", "opt out", "opt-out", "optout", "denied", "revoked", "pending",
     "non_subscribed", "not_subscribed", "bounced"}
)  # fmt: skip
_EXPECTED = "expected true/false, yes/no, y/n, 1/0, subscribed/unsubscribed (any case), or empty for unknown"


def normalise_opt_out(value: str) -> bool | None:
    """An opt-out column's value: True means unsubscribed (``TRUE``, ``yes``, ``unsubscribed``, ``cleaned``...)."""
    return read_flag(value, _OPT_OUT_TRUE, _OPT_OUT_FALSE, _EXPECTED)


def normalise_consent(value: str) -> bool | None:
    """A consent column's value, as ``unsubscribed``: consent given (``yes``, ``subscribed``) is False."""
    return read_flag(value, _CONSENT_FALSE, _CONSENT_TRUE, _EXPECTED)  # consent given is not unsubscribed
