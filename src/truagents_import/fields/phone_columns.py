"""Phone numbers a column at a time (SPEC 3, 9): the phone fast path on whole Arrow arrays.

:func:`read_phones` gives, for a column of cells and the region each row's country names, what
:func:`~truagents_import.fields.several.read_phone` gives for each cell: its E.164 form or its
refusal, the same text. Plain cells (digits, spaces, ``().-`` and at most a leading ``+``, as
:mod:`~truagents_import.fields.phone`'s fast path takes them) are read over the whole column at
once: phonenumbers' own metadata (general and type patterns per length, leading digits, national
and international prefixes) runs as RE2 patterns in Arrow's compute kernels. A cell whose reading is
not certain (an international prefix, a national number that starts with its own country code, a
prefix transform rule, a leading zero that stays, anything not plain) is handed to ``read_phone``
itself, so every verdict and message stays the library's; ``tests/test_differential.py`` holds the
two to each other on the whole benchmark file.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Sequence

import attrs
import phonenumbers
import pyarrow as pa
import pyarrow.compute as pc

from truagents_import._arrow import falses, mask_at
from truagents_import.errors import FieldError
from truagents_import.fields import phone as _phone
from truagents_import.fields.several import read_phone

__all__ = ["Phones", "read_phones"]

#: A plain cell, as ``phone._plain_phone`` takes them (its length and digit count are checked apart).
_PLAIN = r"^\+?[0-9 ().\-]+$"
#: An extension as spreadsheets and CRMs write it, which phonenumbers strips before reading the number.
_EXTENSION = r" x[0-9]{1,9}$"
_MIN_CELL, _MAX_CELL = _phone._PLAIN_LENGTH.start, _phone._PLAIN_LENGTH.stop - 1
#: The most rows read per call to the compute kernels (bounds the arrays they make).
_SLICE = 1 << 16


def _on(mask: pa.BooleanArray, values: pa.Array, judge: Callable[[pa.Array], pa.BooleanArray]) -> pa.BooleanArray:
    """``judge`` applied to the values under ``mask``; False elsewhere."""
    if not pc.any(mask).as_py():
        return falses(len(values))
    return pc.replace_with_mask(falses(len(values)), mask, judge(pc.filter(values, mask)))


def _fullmatch(values: pa.Array, pattern: str) -> pa.BooleanArray:
    return pc.match_substring_regex(values, f"^(?:{pattern})$")


def _starts(values: pa.Array, patterns: Sequence[str]) -> pa.BooleanArray:
    return pc.match_substring_regex(values, "^(?:" + "|".join(f"(?:{p})" for p in patterns) + ")")


class _Unsure(Exception):
    """A pattern RE2 may read otherwise than Python's ``re`` (those rows go to phonenumbers)."""


def _known(patterns: _phone._NumberPatterns, nsn: pa.Array) -> pa.BooleanArray:
    """``patterns.known(n)`` for every national significant number ``n`` of ``nsn``."""
    lengths = pc.utf8_length(nsn)
    result = falses(len(nsn))
    for length in pc.unique(lengths).to_pylist():
        found = patterns.patterns(length)
        if found is None:
            continue
        general, types = found
        if any(_phone._NOT_JOINABLE.search(p) for p in (general, *types)):
            raise _Unsure
        mask = pc.equal(lengths, length)
        sub = pc.filter(nsn, mask)
        ok = pc.and_(_fullmatch(sub, general), _fullmatch(sub, "|".join(f"(?:{p})" for p in types)))
        result = pc.replace_with_mask(result, mask, ok)
    return result


#: Numbers left for a country's later regions that are asked one by one (``_CountryCode.valid``)
#: rather than through one column operation per region (a country code such as +1 has 25 regions).
_FEW = 512


def _valid(country: _phone._CountryCode, nsn: pa.Array) -> pa.BooleanArray:
    """``country.valid(n)`` for every ``n`` of ``nsn``: the region is found as phonenumbers finds it."""
    if country.single:
        if not country.regions or not country.regions[0][3]:
            return falses(len(nsn))
        return _known(country.regions[0][2], nsn)
    size = len(nsn)
    result = falses(size)
    where: pa.Array | None = None  # the positions in nsn of the numbers no region has taken yet
    rest = nsn
    for _region, leading, patterns, ok in country.regions:
        if len(rest) <= _FEW:
            break
        if leading is not None:
            taken = _starts(rest, [leading.pattern])
            good = _on(taken, rest, functools.partial(_known, patterns)) if ok else None
        else:
            taken = _known(patterns, rest)
            good = taken if ok else None
        if good is not None:
            result = pc.or_(result, _scatter(size, where, good))
        keep = pc.invert(taken)
        kept = pc.indices_nonzero(keep)
        where = kept if where is None else where.take(kept)
        rest = rest.filter(keep)
    if len(rest):  # a region search of its own for each of the few left: the same verdicts
        few = pa.array([country.valid(n) for n in rest.to_pylist()], pa.bool_())
        result = pc.or_(result, _scatter(size, where, few))
    return result


def _scatter(size: int, where: pa.Array | None, flags: pa.BooleanArray) -> pa.BooleanArray:
    """A mask of ``size`` rows, true at the positions ``where`` (all: None) whose flag is true."""
    return flags if where is None else mask_at(size, where.filter(flags))


def _null_where(mask: pa.BooleanArray, codes: pa.Array) -> pa.Array:
    return pc.if_else(mask, pa.scalar(None, codes.type), codes)


def _read_plus(digits: pa.Array) -> tuple[pa.Array, pa.Array]:
    """How phonenumbers reads ``+<digits>``: each number's country code (null where the reading is
    not certain) and national significant number. Country codes are prefix-free, at most three digits."""
    heads = pc.utf8_slice_codeunits(digits, 0, 3)
    known = pc.unique(heads)
    found = [_phone._country_after_plus(head) for head in known.to_pylist()]
    at = pc.index_in(heads, value_set=known)
    size = pc.take(pa.array([0 if f is None else f[1] for f in found], pa.int8()), at)
    codes = pc.take(pa.array([None if f is None else f[0].code for f in found], pa.int32()), at)
    nsn = pc.if_else(
        pc.equal(size, 1),
        pc.utf8_slice_codeunits(digits, 1),
        pc.if_else(pc.equal(size, 2), pc.utf8_slice_codeunits(digits, 2), pc.utf8_slice_codeunits(digits, 3)),
    )
    refused = _bad_length(nsn)
    for code in pc.unique(codes).drop_null().to_pylist():
        country = _phone._country(code)
        mine = pc.fill_null(pc.equal(codes, code), False)
        if not country.trusted:
            refused = pc.or_(refused, mine)
        else:
            refused = pc.or_(refused, _on(mine, nsn, functools.partial(_starts, patterns=country.refuse_patterns)))
    return _null_where(refused, codes), nsn


@functools.cache
def _length_is(region: str, length: int, results: tuple[object, ...]) -> bool:
    """Whether phonenumbers' length test of a ``length``-digit number in ``region`` gives one of ``results``."""
    metadata = phonenumbers.PhoneMetadata.metadata_for_region(region, None)
    return _phone._TEST_LENGTH("0" * length, metadata) in results  # type: ignore[misc]


def _lengths_are(numbers: pa.Array, region: str, results: tuple[object, ...]) -> pa.BooleanArray:
    """:func:`_length_is` of each number, asked once per distinct length."""
    lengths = pc.utf8_length(numbers)
    distinct = pc.unique(lengths)
    answers = pa.array([_length_is(region, n, results) for n in distinct.to_pylist()], pa.bool_())
    return answers.take(pc.index_in(lengths, value_set=distinct))


def _general(numbers: pa.Array, metadata: object) -> pa.BooleanArray:
    """phonenumbers' ``_match_national_number(n, general_desc, False)`` for each ``n``."""
    desc = metadata.general_desc  # type: ignore[attr-defined]
    if desc is None or not desc.national_number_pattern:
        return falses(len(numbers))
    return _fullmatch(numbers, desc.national_number_pattern)


def _strip_national_prefix(numbers: pa.Array, metadata: object) -> tuple[pa.Array, pa.BooleanArray]:
    """What phonenumbers' national prefix step leaves of each number, and where that is not certain
    (a prefix transform rule that applies: phonenumbers reads those)."""
    prefix = metadata.national_prefix_for_parsing  # type: ignore[attr-defined]
    if not prefix or len(numbers) == 0:
        return numbers, falses(len(numbers))
    matched = _starts(numbers, [prefix])
    if _phone._STRIP_NATIONAL_PREFIX is None or _phone._TEST_LENGTH is None:
        return numbers, matched
    unsure = falses(len(numbers))
    if metadata.national_prefix_transform_rule:  # type: ignore[attr-defined]
        # It applies when the pattern's last group took part in the match: Python's re says (few rows).
        pattern = re.compile(prefix)

        def transforms(number: str) -> bool:
            found = pattern.match(number)
            return found is not None and (not found.groups() or found.groups()[-1] is not None)

        unsure = _on(matched, numbers, lambda sub: pa.array(map(transforms, sub.to_pylist()), pa.bool_()))
    stripped = pc.replace_substring_regex(numbers, f"^(?:{prefix})", "", max_replacements=1)
    # The prefix stays when the number was viable with it and is not without it.
    kept = pc.and_(_general(numbers, metadata), pc.invert(_general(stripped, metadata)))
    return pc.if_else(pc.and_(matched, pc.invert(kept)), stripped, numbers), unsure


_KEEP = tuple(_phone._KEEP_PREFIX)
_TOO_LONG = (phonenumbers.ValidationResult.TOO_LONG,)


def _national_number(numbers: pa.Array, region: str, metadata: object) -> tuple[pa.Array, pa.BooleanArray]:
    """parse's national number for numbers read without a country code: the national prefix is
    stripped unless what is left has a length that may be a short number."""
    stripped, unsure = _strip_national_prefix(numbers, metadata)
    return pc.if_else(_lengths_are(stripped, region, _KEEP), numbers, stripped), unsure


def _read_national(digits: pa.Array, region: str) -> tuple[pa.Array, pa.Array]:
    """How phonenumbers reads ``digits`` (no ``+``) in ``region``, where that is certain."""
    reading = _phone._national_reading(region)
    if reading is None or not reading.country.trusted or _phone._TEST_LENGTH is None:
        return pa.nulls(len(digits), pa.int32()), digits
    md = reading.metadata
    size = len(digits)
    unsure = falses(size)
    nsn = digits
    # An international prefix: the rest reads as after "+" (unless a zero follows: phonenumbers then keeps it).
    idd = falses(size) if md.international_prefix is None else _starts(digits, [md.international_prefix])
    after_idd = pc.replace_substring_regex(digits, f"^(?:{md.international_prefix})", "", max_replacements=1)
    idd_unsure = pc.and_(idd, pc.or_(pc.starts_with(after_idd, "0"), pc.less(pc.utf8_length(after_idd), 3)))
    # Its own country code: parse drops it when the number reads better without it.
    code = reading.country.prefix
    own = pc.and_(pc.invert(idd), pc.starts_with(digits, code))
    if pc.any(own).as_py():
        rest, rest_unsure = _strip_national_prefix(pc.utf8_slice_codeunits(digits, len(code)), md)
        better = pc.or_(
            pc.and_(pc.invert(_general(digits, md)), _general(rest, md)), _lengths_are(digits, region, _TOO_LONG)
        )
        take = pc.and_(own, better)
        nsn = pc.if_else(take, rest, nsn)
        unsure = pc.or_(unsure, pc.and_(take, rest_unsure))
    nsn, strip_unsure = _national_number(nsn, region, md)
    unsure = pc.or_(unsure, strip_unsure)
    # A leading zero that stays is part of the national significant number (phonenumbers' "Italian
    # leading zero"): validity and E.164 take the digits as they are.
    unsure = pc.or_(unsure, _bad_length(nsn))
    codes = _null_where(pc.or_(unsure, idd), pa.array([reading.country.code] * size, pa.int32()))
    mask = pc.and_(idd, pc.invert(idd_unsure))
    if pc.any(mask).as_py():  # read as after "+"
        plus_codes, plus_nsn = _read_plus(pc.filter(after_idd, mask))
        codes = pc.replace_with_mask(codes, mask, plus_codes)
        nsn = pc.replace_with_mask(nsn, mask, plus_nsn)
    return codes, nsn


def _bad_length(nsn: pa.Array) -> pa.BooleanArray:
    lengths = pc.utf8_length(nsn)
    return pc.or_(pc.less(lengths, _phone._NSN_MIN), pc.greater(lengths, _phone._NSN_MAX))


def _judge(codes: pa.Array, nsn: pa.Array) -> pa.BooleanArray:
    """Whether each certain reading is a valid number (null where the reading is not certain)."""
    valid = pa.nulls(len(codes), pa.bool_())
    for code in pc.unique(codes).drop_null().to_pylist():
        mine = pc.fill_null(pc.equal(codes, code), False)
        try:
            judged = _valid(_phone._country(code), pc.filter(nsn, mine))
        except _Unsure:
            continue
        valid = pc.replace_with_mask(valid, mine, judged)
    return valid


@attrs.frozen
class Phones:
    """A column of phone cells read: :attr:`e164` (null for an empty or refused cell) and the refusals."""

    e164: pa.StringArray
    #: The refusal of each refused cell, by its position in the column.
    errors: dict[int, FieldError]


def read_phones(cells: pa.Array, primary: pa.Array | None, default: str | None) -> Phones:
    """For each stripped cell, what ``read_phone(cell, regions)`` gives, where ``regions`` is the row's
    ``primary`` region and then ``default`` (SPEC 9), or ``default`` alone where the row names none
    (null, or no ``primary`` at all) or the same."""
    if primary is None:
        firsts = pa.array([default] * len(cells), pa.string())
    else:
        firsts = primary if default is None else pc.fill_null(primary, default)
    parts = [_read_slice(cells[i : i + _SLICE], firsts[i : i + _SLICE], default) for i in range(0, len(cells), _SLICE)]
    if len(parts) == 1:
        return parts[0]
    errors: dict[int, FieldError] = {}
    for n, part in enumerate(parts):
        errors.update((n * _SLICE + i, e) for i, e in part.errors.items())
    return Phones(pa.concat_arrays([part.e164 for part in parts]), errors)


def _read_slice(cells: pa.Array, firsts: pa.Array, default: str | None) -> Phones:
    size = len(cells)
    if size == 0 or (default is not None and default not in phonenumbers.SUPPORTED_REGIONS):
        return _fallback(cells, firsts, default, pa.nulls(size, pa.string()), {}, range(size))
    # An extension (" x123") is not part of E.164: phonenumbers reads the number before it alone.
    original = cells
    extension = pc.match_substring(cells, " x")
    if pc.any(extension).as_py():
        cells = pc.if_else(extension, pc.replace_substring_regex(cells, _EXTENSION, ""), cells)
    lengths = pc.utf8_length(cells)
    digits = cells
    for mark in _phone._PHONE_PUNCTUATION.decode("ascii"):  # only digits are left of a plain cell
        digits = pc.replace_substring(digits, mark, "")
    plus = pc.starts_with(cells, "+")
    eligible = pc.and_(
        pc.and_(pc.match_substring_regex(cells, _PLAIN), pc.greater_equal(pc.binary_length(digits), 4)),
        pc.and_(pc.greater_equal(lengths, _MIN_CELL), pc.less_equal(lengths, _MAX_CELL)),
    )
    eligible = pc.and_(eligible, pc.or_(pc.is_null(firsts), pc.is_in(firsts, value_set=_SUPPORTED)))
    keys = pc.if_else(plus, "+", firsts)
    codes, nsn = pa.nulls(size, pa.int32()), digits
    for key in pc.unique(pc.filter(keys, eligible)).drop_null().to_pylist():
        mask = pc.fill_null(pc.and_(eligible, pc.equal(keys, key)), False)
        sub = pc.filter(digits, mask)
        found, numbers = _read_plus(sub) if key == "+" else _read_national(sub, key)
        codes, nsn = pc.replace_with_mask(codes, mask, found), pc.replace_with_mask(nsn, mask, numbers)
    valid = _judge(codes, nsn)
    e164 = _e164(pc.fill_null(valid, False), codes, nsn)
    errors: dict[int, FieldError] = {}
    refused = pc.fill_null(pc.invert(valid), False)
    if pc.any(refused).as_py():
        where = pc.indices_nonzero(refused)
        texts, regions = cells.take(where).to_pylist(), firsts.take(where).to_pylist()
        found_codes, lengths_ = codes.take(where).to_pylist(), pc.utf8_length(nsn.take(where)).to_pylist()
        for i, text, region, code, length in zip(where.to_pylist(), texts, regions, found_codes, lengths_, strict=True):
            errors[i] = _refusal(code, length, None if text.startswith("+") else region)
        valid, e164 = _read_again(digits, firsts, default, pc.and_(refused, pc.invert(plus)), valid, e164, errors)
    undecided = pc.and_(pc.is_null(valid), pc.not_equal(cells, ""))
    return _fallback(original, firsts, default, e164, errors, pc.indices_nonzero(undecided).to_pylist())


_SUPPORTED = pa.array(sorted(phonenumbers.SUPPORTED_REGIONS), pa.string())


def _e164(valid: pa.BooleanArray, codes: pa.Array, nsn: pa.Array) -> pa.Array:
    text = pc.binary_join_element_wise(pa.scalar("+"), pc.cast(codes, pa.string()), nsn, "")
    return pc.if_else(valid, text, pa.scalar(None, pa.string()))


@functools.cache
def _refusal(code: int, length: int, region: str | None) -> FieldError:
    """The refusal of a ``length``-digit national number with country code ``code`` that is not valid,
    read in ``region`` (``None``: written with ``+``): phonenumbers' length test needs only the length."""
    number = phonenumbers.PhoneNumber(country_code=code, national_number=int("1" * length))
    return _phone.invalid_phone(number, "" if region is None else "0", region)


def _read_again(
    digits: pa.Array,
    firsts: pa.Array,
    default: str | None,
    refused: pa.BooleanArray,
    valid: pa.BooleanArray,
    e164: pa.Array,
    errors: dict[int, FieldError],
) -> tuple[pa.BooleanArray, pa.Array]:
    """Rows refused in their country's region read again in ``default`` (SPEC 9); the first refusal stays."""
    if default is None:
        return valid, e164
    again = pc.fill_null(pc.and_(refused, pc.not_equal(firsts, default)), False)
    if not pc.any(again).as_py():
        return valid, e164
    codes, nsn = _read_national(pc.filter(digits, again), default)
    second = _judge(codes, nsn)
    e164 = pc.replace_with_mask(e164, again, _e164(pc.fill_null(second, False), codes, nsn))
    valid = pc.replace_with_mask(valid, again, pc.if_else(pc.fill_null(second, True), second, pa.scalar(False)))
    for i, ok in zip(pc.indices_nonzero(again).to_pylist(), second.to_pylist(), strict=True):
        if ok is not False:
            del errors[i]  # valid in default_region, or phonenumbers decides
    return valid, e164


def _fallback(
    cells: pa.Array,
    firsts: pa.Array,
    default: str | None,
    e164: pa.Array,
    errors: dict[int, FieldError],
    rows: Sequence[int],
) -> Phones:
    """``read_phone`` itself for ``rows``."""
    if not rows:
        return Phones(e164, errors)
    where = pa.array(rows, pa.int64())
    at: list[int] = []
    found: list[str] = []
    for i, value, first in zip(rows, cells.take(where).to_pylist(), firsts.take(where).to_pylist(), strict=True):
        if not value:
            continue
        verdict = _read_one(value, first, default)
        if verdict.__class__ is str:
            found.append(verdict)
            at.append(i)
        else:
            errors[i] = verdict  # type: ignore[assignment]
    if found:
        e164 = pc.replace_with_mask(e164, mask_at(len(cells), at), pa.array(found, pa.string()))
    return Phones(e164, errors)


@functools.lru_cache(maxsize=4096)
def _read_one(value: str, first: str | None, default: str | None) -> str | FieldError:
    """``read_phone`` of one cell (remembered: cells such as ``n/a`` come again and again)."""
    many = first is not None and default is not None and first != default
    try:
        return read_phone(value, (first, default) if many else (first,))
    except FieldError as exc:
        # Remembered: without its traceback, whose frames would keep the arrays of a batch alive.
        return exc.kept()
