"""The phone normaliser (SPEC 3): exactly what phonenumbers says, with a fast path for plain numbers.

The fast path reads a number of digits, spaces and ``().-`` with at most a leading ``+``
against phonenumbers' own metadata and hands every other case, and every number it does not
find valid, to phonenumbers itself; ``tests/test_differential.py`` holds both paths to it.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import Any

import attrs
import phonenumbers

from truagents_import.errors import FieldError

__all__ = ["normalise_phone", "normalise_region", "prepare_phone_parsing"]

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


# -- the phone fast path --------------------------------------------------------------------
#
# phonenumbers.parse handles vanity letters, extensions, RFC 3966, international (IDD) and
# national prefixes, and more; is_valid_number then tries up to eleven number-type patterns, and
# for a shared country code (+1 has 25 regions) first finds the region the same way. Most cells
# are plainer than that. For a cell of digits, spaces and ``().-`` with at most a leading ``+``,
# what parse does reduces to: take the digits; with ``+``, split off the country code (country
# codes are prefix-free); without, use the default region's code, strip the region's national
# prefix (``020 7946 0958`` in GB) with phonenumbers' own step for it when one matches, and keep
# the rest when no international prefix or own country code starts it and no leading zero is
# left. _plain_phone does exactly that and hands every other case (an international prefix, a
# national number starting with its own country code, a prefix transform rule, a leading zero
# that stays, ...) to phonenumbers. Validity is phonenumbers' own test, on phonenumbers' own metadata (see
# _CountryCode), and a number it does not find valid also goes to phonenumbers, so every
# refusal and its message are the library's. tests/test_differential.py holds both paths to it.

#: The punctuation of a plain number: with it removed only ASCII digits may remain, and a ``+``
#: may only be the first character. So no letters (vanity numbers), no extension marks, no
#: second number, no RFC 3966 parameters, nothing that is not ASCII.
_PHONE_PUNCTUATION = b"+ ().-"
_PLAIN_LENGTH = range(3, 61)
#: phonenumbers' bounds on the length of a national significant number.
_NSN_MIN, _NSN_MAX = 2, 17
#: The number types ``is_valid_number`` accepts, as phonenumbers tries them (mobile comes last,
#: and only when its pattern differs from the fixed-line one).
_NUMBER_TYPES = (
    "premium_rate",
    "toll_free",
    "shared_cost",
    "voip",
    "personal_number",
    "pager",
    "uan",
    "voicemail",
    "fixed_line",
)
#: Pattern syntax that joining patterns into one alternation could change (back-references,
#: inline flags, named groups): such patterns are matched one by one instead.
_NOT_JOINABLE = re.compile(r"\\[1-9]|\(\?[^:]")

_Match = Callable[[str], object]


def _any_of(patterns: list[str]) -> _Match:
    """A function that says whether a string fully matches any of ``patterns``."""
    if any(_NOT_JOINABLE.search(p) for p in patterns):
        compiled = [re.compile(p) for p in patterns]
        return lambda text: any(c.fullmatch(text) for c in compiled) or None
    return re.compile("|".join(f"(?:{p})" for p in patterns)).fullmatch


def _starts_with_any(patterns: list[str]) -> _Match:
    """A function that says whether any of ``patterns`` matches at the start of a string."""
    if any(_NOT_JOINABLE.search(p) for p in patterns):
        compiled = [re.compile(p) for p in patterns]
        return lambda text: any(c.match(text) for c in compiled) or None
    return re.compile("|".join(f"(?:{p})" for p in patterns)).match


class _NumberPatterns:
    """Whether a national significant number is of a known type under one region's metadata.

    The same test as phonenumbers' ``_number_type_helper(nsn, metadata) != UNKNOWN``: the
    general description must match (length, then pattern), then one of the number types
    must. Per length, the general pattern (as a lookahead) and the type patterns that allow the
    length (as one alternation) make one regular expression: one match instead of up to eleven.
    """

    def __init__(self, metadata: Any) -> None:
        self._metadata = metadata
        self._by_length: dict[int, _Match | None] = {}

    def patterns(self, length: int) -> tuple[str, list[str]] | None:
        """The general pattern and the type patterns a number of ``length`` digits may match
        (``None``: no number of that length has a known type)."""
        md = self._metadata
        general = md.general_desc
        if general is None or not general.national_number_pattern:
            return None
        if general.possible_length and length not in general.possible_length:
            return None
        names = [*_NUMBER_TYPES] if md.same_mobile_and_fixed_line_pattern else [*_NUMBER_TYPES, "mobile"]
        patterns = []
        for name in names:
            desc = getattr(md, name)
            if desc is None or not desc.national_number_pattern:
                continue
            if desc.possible_length and length not in desc.possible_length:
                continue
            patterns.append(desc.national_number_pattern)
        return (general.national_number_pattern, patterns) if patterns else None

    def _for_length(self, length: int) -> _Match | None:
        found = self.patterns(length)
        if found is None:
            return None
        general_pattern, patterns = found
        whole = [general_pattern, *patterns]
        if any(_NOT_JOINABLE.search(p) for p in whole):
            general_match, type_match = _any_of(whole[:1]), _any_of(patterns)
            return lambda nsn: (general_match(nsn) is not None and type_match(nsn) is not None) or None
        types = "|".join(f"(?:{p})" for p in patterns)
        return re.compile(f"(?=(?:{general_pattern})\\Z)(?:{types})").fullmatch

    def known(self, nsn: str) -> bool:
        """``_number_type_helper(nsn, metadata) != PhoneNumberType.UNKNOWN``."""
        length = len(nsn)
        try:
            match = self._by_length[length]
        except KeyError:
            match = self._by_length[length] = self._for_length(length)
        return match is not None and match(nsn) is not None


class _CountryCode:
    """``phonenumbers.is_valid_number`` for numbers of one country calling code without a leading zero.

    It follows phonenumbers: the region is the first of the code's regions whose leading
    digits match, or (for a region without leading digits) under whose metadata the number has
    a known type; the number is valid when it has a known type under that region's metadata.
    On construction it checks itself against phonenumbers on the example numbers of every
    region and type of the code and a few variations of each; if they ever disagree (a
    phonenumbers release that judges differently), ``trusted`` is False and numbers of this
    code all go to phonenumbers.
    """

    def __init__(self, code: int) -> None:
        self.code = code
        self.prefix = str(code)
        main = phonenumbers.region_code_for_country_code(code)
        parsing = phonenumbers.PhoneMetadata.metadata_for_region_or_calling_code(code, main)
        national = None if parsing is None else parsing.national_prefix_for_parsing
        #: After ``+<code>``, the starts that need phonenumbers: a leading zero, or the national
        #: prefix phonenumbers would strip.
        self.refuse_patterns = ["0", national] if national else ["0"]
        self.refuse = _starts_with_any(self.refuse_patterns)
        regions = phonenumbers.COUNTRY_CODE_TO_REGION_CODE.get(code, ())
        self.single = len(regions) == 1
        #: (region, its leading-digits pattern, its patterns, whether it may be the answer).
        self.regions: list[tuple[str, re.Pattern[str] | None, _NumberPatterns, bool]] = []
        for region in regions:
            md = phonenumbers.PhoneMetadata.metadata_for_region_or_calling_code(code, region.upper())
            if self.single:
                if md is not None:
                    ok = region == phonenumbers.REGION_CODE_FOR_NON_GEO_ENTITY or md.country_code == code
                    self.regions.append((region, None, _NumberPatterns(md), ok))
                break
            if md is None:
                continue
            leading = None if md.leading_digits is None else re.compile(md.leading_digits)
            self.regions.append((region, leading, _NumberPatterns(md), md.country_code == code))
        #: Whether this agrees with phonenumbers on the samples (else numbers of this code go to phonenumbers).
        self.trusted = self._agrees_with_phonenumbers()

    def valid(self, nsn: str) -> bool:
        """Whether ``+<code><nsn>`` is valid (``nsn`` has no leading zero)."""
        if self.single:
            return bool(self.regions) and self.regions[0][3] and self.regions[0][2].known(nsn)
        for _region, leading, patterns, ok in self.regions:
            if leading is not None:
                if leading.match(nsn):
                    return ok and patterns.known(nsn)
            elif patterns.known(nsn):
                return ok
        return False

    def _agrees_with_phonenumbers(self) -> bool:
        samples: set[str] = set()
        types = [getattr(phonenumbers.PhoneNumberType, name.upper()) for name in (*_NUMBER_TYPES, "mobile")]
        for region in phonenumbers.COUNTRY_CODE_TO_REGION_CODE.get(self.code, ()):
            if region == phonenumbers.REGION_CODE_FOR_NON_GEO_ENTITY:
                examples = [phonenumbers.example_number_for_non_geo_entity(self.code)]
            else:
                examples = [phonenumbers.example_number_for_type(region, kind) for kind in types]
            for example in examples:
                if example is None or example.national_number is None:
                    continue
                nsn = str(example.national_number)
                last = int(nsn[-1])
                samples.update((nsn, nsn[:-1], nsn + "5", nsn[:-1] + str((last + 1) % 10), nsn[:-1] + str(9 - last)))
        for nsn in samples:
            if not _NSN_MIN <= len(nsn) <= _NSN_MAX or nsn[0] == "0":
                continue
            number = phonenumbers.PhoneNumber(country_code=self.code, national_number=int(nsn))
            if self.valid(nsn) != phonenumbers.is_valid_number(number):
                return False
        return True


@functools.cache
def _country(code: int) -> _CountryCode:
    return _CountryCode(code)


@functools.cache
def _country_after_plus(head: str) -> tuple[_CountryCode, int] | None:
    """The country code the first three digits after ``+`` start with, and its length (as phonenumbers reads it)."""
    if head[0] == "0":
        return None
    for size in (1, 2, 3):
        if int(head[:size]) in phonenumbers.COUNTRY_CODE_TO_REGION_CODE:
            return _country(int(head[:size])), size
    return None


#: phonenumbers' own steps for a national prefix (``0`` in ``020 7946 0958``), called as parse calls
#: them; absent from a phonenumbers release that renamed them (numbers with a prefix then go to parse).
_STRIP_NATIONAL_PREFIX = getattr(phonenumbers.phonenumberutil, "_maybe_strip_national_prefix_carrier_code", None)
_TEST_LENGTH = getattr(phonenumbers.phonenumberutil, "_test_number_length", None)
#: Lengths after which parse keeps the national prefix on (the number may be a valid short one).
_KEEP_PREFIX = (
    phonenumbers.ValidationResult.TOO_SHORT,
    phonenumbers.ValidationResult.IS_POSSIBLE_LOCAL_ONLY,
    phonenumbers.ValidationResult.INVALID_LENGTH,
)


@attrs.frozen
class _NationalReading:
    """How numbers without ``+`` are read in one region: its country code, the starts that need
    phonenumbers (its own country code and its international prefix: parse may read either as a
    country code), and its metadata for the national prefix."""

    country: _CountryCode
    refuse: _Match
    metadata: Any
    national_prefix: _Match | None

    def nsn(self, digits: str) -> str | None:
        """The national significant number parse finds in ``digits``, when this is certain; else None."""
        if self.refuse(digits):
            return None
        if self.national_prefix is None or not self.national_prefix(digits):
            return None if digits[0] == "0" else digits
        if _STRIP_NATIONAL_PREFIX is None or _TEST_LENGTH is None or self.metadata.national_prefix_transform_rule:
            return None
        _carrier, stripped, _ = _STRIP_NATIONAL_PREFIX(digits, self.metadata)
        if _TEST_LENGTH(stripped, self.metadata) in _KEEP_PREFIX:
            stripped = digits
        return None if not stripped or stripped[0] == "0" else stripped


@functools.cache
def _national_reading(region: str) -> _NationalReading | None:
    """For numbers without ``+`` in ``region``: how parse reads them (see :class:`_NationalReading`)."""
    md = phonenumbers.PhoneMetadata.metadata_for_region(region, None)
    if md is None:
        return None
    country = _country(md.country_code)
    starts = [re.escape(country.prefix)]
    if md.international_prefix is not None:
        starts.append(md.international_prefix)
    national = re.compile(md.national_prefix_for_parsing).match if md.national_prefix_for_parsing else None
    return _NationalReading(country, _starts_with_any(starts), md, national)


def _plain_phone(value: str, region: str | None) -> str | None:
    """E.164 for a plainly written number phonenumbers certainly reads and accepts so; else ``None``."""
    try:
        ascii_value = value.encode("ascii")
    except UnicodeEncodeError:
        return None
    plain_digits = ascii_value.translate(None, _PHONE_PUNCTUATION)  # bytes: much faster than str.translate
    if not (plain_digits.isdigit() and len(value) in _PLAIN_LENGTH and value.find("+", 1) < 0):
        return None
    digits = plain_digits.decode("ascii")
    if value[0] == "+":
        if len(digits) < 4 or (region is not None and region not in phonenumbers.SUPPORTED_REGIONS):
            return None
        found = _country_after_plus(digits[:3])
        if found is None:
            return None
        country, size = found
        nsn = digits[size:]
        if country.refuse(nsn):
            return None
    else:
        reading = _national_reading(region) if region in phonenumbers.SUPPORTED_REGIONS else None
        if reading is None or len(digits) < 4:
            return None
        found_nsn = reading.nsn(digits)
        if found_nsn is None:
            return None
        country, nsn = reading.country, found_nsn
    if _NSN_MIN <= len(nsn) <= _NSN_MAX and country.trusted and country.valid(nsn):
        return "+" + country.prefix + nsn
    return None


def normalise_phone(value: str, region: str | None) -> str:
    """Parse a phone number with phonenumbers and return it as E.164 (``+12125550123``).

    ``region`` (the source's ``default_region``, an ISO 3166 code such as ``US``) is how a
    number written without ``+<country code>`` is read. The number must be valid
    (``phonenumbers.is_valid_number``), not merely possible. An extension is not part of
    E.164 and is not kept.

    Fast path: a number written with digits, spaces, ``().-`` and at most a leading ``+``,
    whose reading involves no international or national prefix, is read and checked
    without phonenumbers' parser (see :func:`_plain_phone`); everything else, and every
    number that fast path does not find valid, goes to phonenumbers itself.
    """
    fast = _plain_phone(value, region)
    if fast is not None:
        return fast
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
        raise invalid_phone(number, value, region)
    return str(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))


def invalid_phone(number: phonenumbers.PhoneNumber, value: str, region: str | None) -> FieldError:
    """The refusal of ``value``, read in ``region`` as ``number``, which is not a valid number."""
    code = number.country_code or 0
    main_region = phonenumbers.region_code_for_country_code(code)
    where = f"+{code}" + (f" ({main_region})" if main_region != phonenumbers.UNKNOWN_REGION else "")
    reason = _LENGTH_ERRORS.get(phonenumbers.is_possible_number_with_reason(number), "no such numbers are in use")
    hint = ""
    if region and not value.lstrip().startswith("+"):
        hint = f" (read as a {region} number; numbers from elsewhere need +<country code>)"
    return FieldError("invalid_phone", f"not a valid {where} phone number: {reason}{hint}")


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
