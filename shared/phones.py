"""Phone numbers to E.164 with `phonenumbers`; anything that is not a valid number is dropped (never logged).

`PhoneNormaliser` is what the relay uses per request: numbers already in international form
(`+49 151 2345678`, `+33 1 60 09 93 83`, `+4915123456789`), and national numbers of the tenant's region
where its national prefix is a plain `0` (`0151 23456789`, `030/1234567` in DE), take a fast path that
skips `phonenumbers.parse` (the costly step) and checks validity with phonenumbers' own matchers; whenever
the fast path could differ from `to_e164` (a national prefix after the country code, an extension,
letters, a non-geographic or shared country code) it steps aside and `to_e164` decides.
tests/shared/test_phones.py checks both agree on a corpus of formats.
"""
from __future__ import annotations

import re
from typing import cast

import phonenumbers
from phonenumbers import (
    COUNTRY_CODE_TO_REGION_CODE,
    NumberParseException,
    PhoneMetadata,
    PhoneNumber,
    PhoneNumberFormat,
)

# The two matchers is_valid_number itself uses (phonenumbers is pinned; tests/shared/test_phones.py checks
# the fast path against to_e164 on a corpus, so a change of these internals fails there first).
from phonenumbers.phonenumberutil import _is_number_matching_desc, _match_national_number


def to_e164(raw: object, default_region: str | None) -> str | None:
    if not isinstance(raw, str) or not raw.strip() or len(raw) > 64:
        return None
    try:
        number = phonenumbers.parse(raw, default_region)
    except NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, PhoneNumberFormat.E164)


_SEPARATORS = str.maketrans("", "", " -./()\u00a0\t")
_UNDECIDED = object()
_Country = tuple["re.Pattern[str] | None", "PhoneMetadata | None"]
_COUNTRIES: dict[int, _Country] = {}


def _country(country_code: int) -> _Country:
    """(national-prefix-for-parsing pattern or None, metadata when the code has one region, else None)."""
    if country_code not in _COUNTRIES:
        regions = COUNTRY_CODE_TO_REGION_CODE[country_code]
        metadata = PhoneMetadata.metadata_for_region(regions[0])
        prefix = metadata.national_prefix_for_parsing if metadata is not None else None
        single = metadata if len(regions) == 1 and metadata is not None else None
        _COUNTRIES[country_code] = (re.compile(prefix) if prefix else None, single)
    return _COUNTRIES[country_code]


def _valid_in(national: str, metadata: PhoneMetadata) -> bool:
    """`is_valid_number` for a code with one region: the general pattern, then any number type (mobile and
    fixed line first, the common ones; validity does not depend on the order)."""
    if not _match_national_number(national, metadata.general_desc, False):
        return False
    return any(_is_number_matching_desc(national, desc) for desc in (
        metadata.mobile, metadata.fixed_line, metadata.toll_free, metadata.premium_rate, metadata.shared_cost,
        metadata.voip, metadata.personal_number, metadata.pager, metadata.uan, metadata.voicemail))


def international_e164(raw: str) -> object:
    """The E.164 form of a valid number written internationally, or `_UNDECIDED` (let `to_e164` decide).

    Never claims a number `to_e164` would normalise differently: it answers only when `parse` would take
    the same country code and national number (no national prefix to strip, no leading zero, digits and
    separators only), and then `is_valid_number` of that same number decides, as in `to_e164`."""
    text = raw.strip()
    if not text.startswith("+"):
        return _UNDECIDED
    digits = text[1:].translate(_SEPARATORS)
    if not (7 <= len(digits) <= 15 and digits.isascii() and digits.isdigit()):
        return _UNDECIDED
    for length in (1, 2, 3):
        country_code = int(digits[:length])
        if country_code in COUNTRY_CODE_TO_REGION_CODE:
            break
    else:
        return _UNDECIDED
    national = digits[length:]
    if national.startswith("0") or COUNTRY_CODE_TO_REGION_CODE[country_code][0] == "001":
        return _UNDECIDED
    prefix, metadata = _country(country_code)
    if prefix is not None and prefix.match(national):
        return _UNDECIDED
    if metadata is not None:
        valid = _valid_in(national, metadata)
    else:  # a code shared by several regions (+1, +44, +7 …): phonenumbers picks the region
        valid = phonenumbers.is_valid_number(PhoneNumber(country_code=country_code, national_number=int(national)))
    if not valid:
        return _UNDECIDED  # to_e164 says the final word on what looks invalid here
    return f"+{country_code}{national}"


_Home = tuple[str, "re.Pattern[str]", int, PhoneMetadata]
_REGIONS: dict[str, _Home | None] = {}


def _home(region: str) -> _Home | None:
    """(national prefix, international-prefix pattern, country code, metadata) of a region whose national
    prefix is a plain literal parsed as such (DE, FR, AT, CH, NL, …) and whose code has no other region;
    None where national numbers need phonenumbers' full rules."""
    if region not in _REGIONS:
        metadata = PhoneMetadata.metadata_for_region(region)
        home: _Home | None = None
        if (metadata is not None and metadata.country_code is not None and metadata.national_prefix
                and metadata.national_prefix.isdigit() and metadata.international_prefix
                and metadata.national_prefix_for_parsing == metadata.national_prefix
                and metadata.national_prefix_transform_rule is None
                and len(COUNTRY_CODE_TO_REGION_CODE.get(metadata.country_code, ())) == 1):
            home = (metadata.national_prefix, re.compile(metadata.international_prefix), metadata.country_code,
                    metadata)
        _REGIONS[region] = home
    return _REGIONS[region]


def national_e164(raw: str, region: str | None) -> object:
    """The E.164 form of a valid number written nationally for `region` (`0151 23456789`, `030/1234567`,
    `(030) 1234567` in DE), or `_UNDECIDED`. Answers only where `parse` would strip the same national
    prefix and nothing else (no international prefix, no country code, digits and separators only)."""
    home = _home(region) if region else None
    if home is None:
        return _UNDECIDED
    prefix, international, country_code, metadata = home
    digits = raw.strip().translate(_SEPARATORS)
    if not (7 <= len(digits) <= 16 and digits.isascii() and digits.isdigit() and digits.startswith(prefix)):
        return _UNDECIDED
    if international.match(digits):
        return _UNDECIDED  # "0049…": an international call prefix, parse reads a country code
    national = digits[len(prefix):]
    if national.startswith("0") or not _valid_in(national, metadata):
        return _UNDECIDED
    return f"+{country_code}{national}"


class PhoneNormaliser:
    """`to_e164` for one request: the international fast path first, and each distinct number parsed once
    (switchboard numbers repeat across a directory). The cache is bounded and lives only as long as the
    request's relay does."""

    MAX_ENTRIES = 4096

    def __init__(self, default_region: str | None):
        self._region = default_region
        self._cache: dict[str, str | None] = {}  # E.164 or None (not a valid number)

    def e164(self, raw: object) -> str | None:
        if not isinstance(raw, str):
            return None
        cached = self._cache.get(raw, _MISSING)
        if cached is not _MISSING:
            return cast("str | None", cached)
        value: object = international_e164(raw) if len(raw) <= 64 else _UNDECIDED
        if value is _UNDECIDED and len(raw) <= 64:
            value = national_e164(raw, self._region)
        if value is _UNDECIDED:
            value = to_e164(raw, self._region)
        if len(self._cache) >= self.MAX_ENTRIES:
            self._cache.clear()
        e164 = cast("str | None", value)  # to_e164 decides whatever the fast paths left undecided
        self._cache[raw] = e164
        return e164


_MISSING = object()
