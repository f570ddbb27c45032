"""Phone numbers in national habits for the synthetic directories.

`PHONES[country]` is a (mobile, business) pair of generators, each drawing from the `random.Random` it is
given; most numbers are valid numbers of their country written as people write them (`0151 23456789`,
`+49 30 1234567`, `030/1234567`, `+44 7911 123456`, `425-555-0100`, …). `INVALID_NUMBERS` are the
deliberately broken entries a real directory also holds.
"""

from __future__ import annotations

import random

INVALID_NUMBERS = ("12345", "+49 123", "0000 000000", "n/a", "tbd", "+49 30", "ext. 4711",
                   "0800-CALL-NOW", "+1 (555) 012", "+44 20 7946 09585 99", "-", "+33 0")


def _digits(rng: random.Random, count: int) -> str:
    return str(rng.randrange(10**count)).zfill(count)


def _de_mobile(rng: random.Random) -> str:
    prefix = rng.choice(("151", "152", "157", "159", "160", "162", "170", "171", "172", "175", "176",
                         "177", "178", "179"))
    rest = _digits(rng, 8 if prefix.startswith("15") else rng.choice((7, 8)))
    rest = str(rng.randint(1, 9)) + rest[1:]
    return rng.choice((
        f"0{prefix} {rest}", f"+49 {prefix} {rest}", f"+49 (0){prefix} {rest}", f"0{prefix}-{rest}",
        f"+49{prefix}{rest}", f"0{prefix} {rest[:3]} {rest[3:]}",
    ))


def _de_business(rng: random.Random) -> str:
    area = rng.choice(("30", "30", "89", "89", "40", "69", "221", "711", "211", "341"))
    sub = str(rng.randint(2, 9)) + _digits(rng, 6 if len(area) == 2 else 5)
    ext = str(rng.randint(10, 99))
    return rng.choice((
        f"+49 {area} {sub}", f"0{area}/{sub}", f"0{area} {sub}-{ext}", f"(0{area}) {sub}",
        f"+49 (0){area} {sub[:4]} {sub[4:]}", f"+49 {area} {sub}-0", f"0{area} {sub}",
    ))


def _gb_mobile(rng: random.Random) -> str:
    rest = str(rng.randint(4, 9)) + _digits(rng, 8)
    return rng.choice((f"07{rest[:3]} {rest[3:]}", f"+44 7{rest[:3]} {rest[3:]}", f"+447{rest}"))


def _gb_business(rng: random.Random) -> str:
    city = rng.choice(("20 7", "20 3", "161 4", "131 2"))
    if city.startswith("20"):
        sub = _digits(rng, 3) + " " + _digits(rng, 4)
        return rng.choice((f"+44 {city}{sub}", f"0{city}{sub}"))
    sub = _digits(rng, 2) + " " + _digits(rng, 4)
    return rng.choice((f"+44 {city}{sub}", f"0{city}{sub}"))


def _pairs(rng: random.Random, count: int) -> str:
    return " ".join(_digits(rng, 2) for _ in range(count))


def _fr_mobile(rng: random.Random) -> str:
    lead = rng.choice(("6", "7"))
    body = _pairs(rng, 4)
    return rng.choice((f"0{lead} {body}", f"+33 {lead} {body}", f"0{lead}.{body.replace(' ', '.')}"))


def _fr_business(rng: random.Random) -> str:
    lead = rng.choice(("1", "1", "4"))
    body = f"{rng.randint(40, 79)} {_pairs(rng, 3)}"
    return rng.choice((f"+33 {lead} {body}", f"0{lead} {body}"))


def _it_mobile(rng: random.Random) -> str:
    lead = rng.choice(("320", "328", "333", "338", "347", "348", "366", "380", "391"))
    rest = _digits(rng, 7)
    return rng.choice((f"+39 {lead} {rest[:3]} {rest[3:]}", f"{lead} {rest}", f"+39{lead}{rest}"))


def _it_business(rng: random.Random) -> str:
    area = rng.choice(("02", "06"))
    rest = _digits(rng, 8)
    return rng.choice((f"+39 {area} {rest[:4]} {rest[4:]}", f"{area} {rest}"))


def _es_mobile(rng: random.Random) -> str:
    rest = rng.choice("67") + _digits(rng, 8)
    return rng.choice((f"+34 {rest[:3]} {rest[3:5]} {rest[5:7]} {rest[7:]}", f"{rest[:3]} {rest[3:6]} {rest[6:]}"))


def _es_business(rng: random.Random) -> str:
    rest = rng.choice(("91", "93")) + str(rng.randint(1, 9)) + _digits(rng, 6)
    return rng.choice((f"+34 {rest[:2]} {rest[2:5]} {rest[5:7]} {rest[7:]}", f"{rest[:3]} {rest[3:6]} {rest[6:]}"))


def _nl_mobile(rng: random.Random) -> str:
    rest = str(rng.randint(1, 9)) + _digits(rng, 7)
    return rng.choice((f"06 {rest}", f"+31 6 {rest}", f"06-{rest}"))


def _nl_business(rng: random.Random) -> str:
    area = rng.choice(("20", "30"))
    rest = str(rng.randint(2, 8)) + _digits(rng, 6)
    return rng.choice((f"+31 {area} {rest[:3]} {rest[3:]}", f"0{area}-{rest}"))


def _pl_mobile(rng: random.Random) -> str:
    rest = rng.choice(("50", "51", "53", "60", "66", "69", "72", "78", "79", "88")) + _digits(rng, 7)
    return rng.choice((f"+48 {rest[:3]} {rest[3:6]} {rest[6:]}", f"{rest[:3]} {rest[3:6]} {rest[6:]}"))


def _pl_business(rng: random.Random) -> str:
    area = rng.choice(("22", "12"))
    rest = str(rng.randint(2, 7)) + _digits(rng, 6)
    return rng.choice((f"+48 {area} {rest[:3]} {rest[3:5]} {rest[5:]}", f"{area} {rest}"))


def _se_mobile(rng: random.Random) -> str:
    lead = rng.choice(("70", "72", "73", "76", "79"))
    rest = _digits(rng, 7)
    return rng.choice((f"0{lead}-{rest[:3]} {rest[3:5]} {rest[5:]}", f"+46 {lead} {rest[:3]} {rest[3:5]} {rest[5:]}"))


def _se_business(rng: random.Random) -> str:
    if rng.random() < 0.6:
        rest = str(rng.randint(5, 7)) + _digits(rng, 7)
        return rng.choice((f"08-{rest[:3]} {rest[3:6]} {rest[6:]}", f"+46 8 {rest[:3]} {rest[3:6]} {rest[6:]}"))
    rest = str(rng.randint(3, 7)) + _digits(rng, 6)
    return f"031-{rest[:3]} {rest[3:5]} {rest[5:]}"


def _us_number(rng: random.Random) -> str:
    area = rng.choice(("425", "206", "212", "646", "415"))
    if rng.random() < 0.6:  # the 555-01xx fictional range, as in Microsoft's own samples
        line = "01" + _digits(rng, 2)
        exchange = "555"
    else:
        exchange = str(rng.randint(2, 9)) + _digits(rng, 2)
        line = _digits(rng, 4)
    return rng.choice((f"{area}-{exchange}-{line}", f"+1 {area} {exchange} {line}",
                       f"({area}) {exchange}-{line}", f"+1 ({area}) {exchange}-{line}"))


PHONES = {
    "DE": (_de_mobile, _de_business), "GB": (_gb_mobile, _gb_business),
    "FR": (_fr_mobile, _fr_business), "IT": (_it_mobile, _it_business),
    "ES": (_es_mobile, _es_business), "NL": (_nl_mobile, _nl_business),
    "PL": (_pl_mobile, _pl_business), "SE": (_se_mobile, _se_business),
    "US": (_us_number, _us_number),
}
