"""Who user `i` of a synthetic directory is: its `id`, its name pair and `userPrincipalName` (= `mail`),
and the tenant's company and domain — all from the tenant's seed, and all invertible, so nothing is stored:

- `id` (a random-looking GUID) carries `i` through a keyed Feistel permutation;
- `userPrincipalName` is `first.last[N]@domain`, unique because name pairs are dealt out by an affine
  permutation over all (first, last) pairs of each nationality, round after round (N = round).
"""

from __future__ import annotations

import hashlib
import math
import random
import uuid

from .names import COMPANY_PREFIX, COMPANY_SUFFIX, POOLS, Nation, ascii_name, nation_of, transliterate

_MASK31 = (1 << 31) - 1
_MASK62 = (1 << 62) - 1


def tenant_seed(tenant_id: str, salt: str = "") -> bytes:
    return hashlib.blake2b(f"{tenant_id.lower()}|{salt}".encode(), digest_size=32).digest()


def _feistel(key: bytes, value: int, decrypt: bool = False) -> int:
    """A keyed permutation of 62-bit integers (4-round Feistel network on two 31-bit halves)."""
    left, right = value >> 31, value & _MASK31
    rounds = range(3, -1, -1) if decrypt else range(4)
    for r in rounds:
        if decrypt:
            left, right = right ^ _round(key, r, left), left
        else:
            left, right = right, left ^ _round(key, r, right)
    return (left << 31) | right


def _round(key: bytes, r: int, half: int) -> int:
    digest = hashlib.blake2b(half.to_bytes(4, "big"), digest_size=4, key=key, person=bytes([r]) * 8).digest()
    return int.from_bytes(digest, "big") & _MASK31


class Identity:
    """A tenant's naming scheme: index → (id, name pair, userPrincipalName) and back."""

    def __init__(self, tenant_id: str, salt: str = "") -> None:
        self.tenant_id = tenant_id.lower()
        self.seed = tenant_seed(self.tenant_id, salt)
        self._feistel_key = self.seed[:16]
        seed_int = int.from_bytes(self.seed, "big")
        total = POOLS.total
        a = (seed_int >> 64) % total or 1
        while math.gcd(a, total) != 1:
            a += 1
        self._perm_a, self._perm_b = a, (seed_int >> 128) % total
        self._perm_a_inv = pow(a, -1, total)
        company_rng = random.Random(self.seed)
        prefix = company_rng.choice(COMPANY_PREFIX)
        self.company = f"{prefix} {company_rng.choice(COMPANY_SUFFIX)}"
        self.domain = f"{transliterate(prefix)}-{self.tenant_id[:4]}.example"

    # ---- id ------------------------------------------------------------------------------------
    def user_id(self, index: int) -> str:
        head = hashlib.blake2b(index.to_bytes(8, "big"), digest_size=8, key=self.seed).digest()
        tail = _feistel(self._feistel_key, index) | (0b10 << 62)  # RFC 4122 variant bits
        raw = bytearray(head + tail.to_bytes(8, "big"))
        raw[6] = (raw[6] & 0x0F) | 0x40  # version 4
        return str(uuid.UUID(bytes=bytes(raw)))

    def index_of_id(self, user_id: str, below: int) -> int | None:
        """The index (< `below`) whose id is `user_id`, or None if it is not one of this tenant's ids."""
        try:
            raw = uuid.UUID(str(user_id)).bytes
        except ValueError:
            return None
        index = _feistel(self._feistel_key, int.from_bytes(raw[8:], "big") & _MASK62, decrypt=True)
        if index >= below or self.user_id(index) != str(uuid.UUID(bytes=raw)):
            return None
        return index

    # ---- names and userPrincipalName -----------------------------------------------------------
    def name(self, index: int) -> tuple[Nation, str, str, str]:
        """(nation, given name, surname, generated userPrincipalName) of user `index`."""
        round_no, slot = divmod(index, POOLS.total)
        combo = (self._perm_a * slot + self._perm_b) % POOLS.total
        n = nation_of(combo)
        nation = POOLS.nations[n]
        f, s = divmod(combo - POOLS.offsets[n], len(nation.last))
        given, surname = nation.first[f], nation.last[s]
        suffix = str(round_no + 1) if round_no else ""
        return nation, given, surname, f"{ascii_name(given)}.{ascii_name(surname)}{suffix}@{self.domain}"

    def index_of_upn(self, upn: str) -> int | None:
        """The index whose generated userPrincipalName would be `upn` (lower case), or None.

        Arithmetic only: the caller checks the user exists and still has that userPrincipalName."""
        local, _, domain = upn.partition("@")
        if domain != self.domain or "." not in local:
            return None
        first, _, last = local.partition(".")
        digits = len(last) - len(last.rstrip("0123456789"))
        round_no = 0
        if digits:
            round_no = int(last[-digits:]) - 1
            last = last[:-digits]
            if round_no < 1:
                return None
        hit = POOLS.by_last.get(last)
        if hit is None:
            return None
        n, s = hit
        f = POOLS.first_index[n].get(first)
        if f is None:
            return None
        combo = POOLS.offsets[n] + f * len(POOLS.nations[n].last) + s
        return round_no * POOLS.total + (self._perm_a_inv * (combo - self._perm_b)) % POOLS.total
