"""Identifier validation: canonical lower-case 8-4-4-4-12 hex, checked before any path is built."""
from __future__ import annotations

import re
import uuid
from typing import TypeGuard

from shared.errors import BadRequest

UUID_PATTERN = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
_CANONICAL = re.compile(UUID_PATTERN)


def is_canonical_id(value: object) -> TypeGuard[str]:
    # fullmatch: with match, "$" would also accept a trailing newline ("<uuid>\n").
    return isinstance(value, str) and _CANONICAL.fullmatch(value) is not None


def require_id(value: object, what: str) -> str:
    """Returns value if it is a canonical GUID/UUID, else raises BadRequest naming `what` (not the value)."""
    if not is_canonical_id(value):
        raise BadRequest(f"{what} must be a lower-case UUID (8-4-4-4-12 hex)", slug=f"invalid-{what.lower()}")
    return value


def new_id() -> str:
    return str(uuid.uuid4())
