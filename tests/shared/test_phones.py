"""The relay's phone normaliser: its international fast path agrees with `to_e164` (phonenumbers) on a corpus
of formats, and the per-request cache is bounded."""
from __future__ import annotations

import random

import phonenumbers
import pytest

from local.fake_microsoft.phones import INVALID_NUMBERS, PHONES
from shared.phones import _UNDECIDED, PhoneNormaliser, international_e164, national_e164, to_e164

REGIONS = (None, "DE", "US", "GB", "FR", "AT", "CH", "NL", "IT", "PL", "SE")


def _corpus() -> list[str]:
    rng = random.Random(12)
    numbers = list(INVALID_NUMBERS)
    for mobile, business in PHONES.values():  # every country's habits of the synthetic directory
        numbers += [mobile(rng) for _ in range(150)] + [business(rng) for _ in range(150)]
    # International forms of example numbers of every region phonenumbers knows, written several ways.
    for region in sorted(phonenumbers.SUPPORTED_REGIONS):
        for kind in (phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE,
                     phonenumbers.PhoneNumberType.TOLL_FREE):
            example = phonenumbers.example_number_for_type(region, kind)
            if example is None:
                continue
            e164 = phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.E164)
            spaced = phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.INTERNATIONAL)
            numbers += [e164, spaced, spaced.replace(" ", "-"), spaced.replace(" ", "."), f" {spaced} ",
                        e164[:-1], e164 + "9", e164 + "99", spaced + " ext. 12", spaced + " x12"]
            national = phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.NATIONAL)
            numbers += [national, national.replace(" ", ""), national.replace(" ", "/", 1), "00" + e164[1:],
                        national[:-1], national + "1"]
    numbers += ["+49 (0)30 1234567", "+39 06 6982 1234", "+39 312 345 6789", "+1 (650) 253-0000", "+1 650 2530000",
                "+44 (0)20 7946 0958", "+54 9 11 1234 5678", "+54 11 1234 5678", "+52 1 55 1234 5678", "+800 1234 5678",
                "+882 3456 7890", "+49 151 2345 6789", "\uff0b49 151 23456789",
                "+49 １５１ 23456789", "+49\u00a0151\u00a023456789",
                "+7 912 345 67 89", "+7 727 250 00 00", "+358 40 1234567", "+262 692 12 34 56", "+590 690 00 12 34",
                "+", "+0 123 4567", "++49 151 23456789", "+49/151/23456789", "+49 151 23456789 ", "tel:+4915123456789",
                "+1 800 FLOWERS", "+999 1234567", "+49 151 2345678901234567", "0049 151 23456789",
                "0151 23456789", "0151-23456789", "(030) 1234567", "030/1234567", "030 1234567-12", "00 49 30 1234567",
                "0 151 23456789", "00151 23456789", "0800 1234567", "0900 1234567", "01 23 45 67 89", "06 12 34 56 78",
                "0612345678", "020 7946 0958", "0207 946 0958", "0 20 7946 0958", "01 2345 6789", "0676 1234567"]
    return numbers


CORPUS = _corpus()


def test_the_corpus_exercises_every_path():
    decided = [n for n in CORPUS if international_e164(n) is not _UNDECIDED]
    assert len(CORPUS) > 3000 and len(decided) > 1000 and len(CORPUS) - len(decided) > 1000
    assert sum(national_e164(n, "DE") is not _UNDECIDED for n in CORPUS) > 100


@pytest.mark.parametrize("region", REGIONS)
def test_fast_path_agrees_with_phonenumbers_on_every_format(region):
    mismatches = []
    normaliser = PhoneNormaliser(region)
    for number in CORPUS:
        expected = to_e164(number, region)
        for fast in (international_e164(number), national_e164(number, region)):
            if fast is not _UNDECIDED and fast != expected:
                mismatches.append((number, fast, expected))
        if normaliser.e164(number) != expected:
            mismatches.append((number, "normaliser", expected))
    assert mismatches == []


def test_cache_is_bounded_and_answers_the_same_twice():
    normaliser = PhoneNormaliser("DE")
    first = [normaliser.e164(n) for n in CORPUS]
    assert [normaliser.e164(n) for n in CORPUS] == first
    assert len(normaliser._cache) <= PhoneNormaliser.MAX_ENTRIES
    assert normaliser.e164(None) is None and normaliser.e164(42) is None
