"""Phone numbers to E.164 with `phonenumbers`; anything that is not a valid number is dropped (never logged)."""
from __future__ import annotations

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberFormat


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


class PhoneNormaliser:
    """`to_e164` for one request, parsing each distinct number once (switchboard numbers repeat across a
    directory). The cache is bounded and lives only as long as the request's relay does."""

    MAX_ENTRIES = 4096

    def __init__(self, default_region: str | None):
        self._region = default_region
        self._cache: dict[str, str | None] = {}

    def e164(self, raw: object) -> str | None:
        if not isinstance(raw, str):
            return None
        cached = self._cache.get(raw, _MISSING)
        if cached is not _MISSING:
            return cached  # type: ignore[return-value]
        value = to_e164(raw, self._region)
        if len(self._cache) >= self.MAX_ENTRIES:
            self._cache.clear()
        self._cache[raw] = value
        return value


_MISSING = object()
