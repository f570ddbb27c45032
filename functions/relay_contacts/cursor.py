"""The sync cursor: Graph's delta link, bound to the tenant and its relay settings, signed with CURSOR_KEY.

The server only follows a delta link it signed itself, so a client can never make it fetch a URL.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import dataclass
from typing import Any

from shared.errors import BadRequest, Forbidden

MAX_CURSOR_LENGTH = 8192
_VERSION = 1


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def settings_fingerprint(settings: dict[str, Any]) -> str:
    """Changes whenever the fields or the region change, which forces a full sync."""
    canonical = json.dumps({"fields": settings.get("fields"), "region": settings.get("defaultRegion")},
                           sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Cursor:
    tenant_id: str
    settings: str
    delta_link: str


class CursorCodec:
    def __init__(self, key: bytes):
        self._key = key

    def _sign(self, payload: str) -> str:
        return _b64(hmac.new(self._key, payload.encode(), hashlib.sha256).digest())

    def encode(self, cursor: Cursor) -> str:
        payload = _b64(json.dumps({"v": _VERSION, "t": cursor.tenant_id, "s": cursor.settings,
                                   "d": cursor.delta_link}, separators=(",", ":")).encode())
        return f"{payload}.{self._sign(payload)}"

    def decode(self, text: str, tenant_id: str) -> Cursor:
        """400 for anything malformed or tampered with; 403 for a valid cursor of another tenant."""
        if not text or len(text) > MAX_CURSOR_LENGTH or text.count(".") != 1:
            raise BadRequest("the cursor is malformed", slug="invalid-cursor")
        payload, signature = text.split(".")
        if not hmac.compare_digest(self._sign(payload), signature):
            raise BadRequest("the cursor is malformed or was altered", slug="invalid-cursor")
        try:
            body = json.loads(_unb64(payload))
            cursor = Cursor(body["t"], body["s"], body["d"])
            valid = body.get("v") == _VERSION and all(isinstance(v, str) for v in (cursor.tenant_id,
                                                                                     cursor.settings,
                                                                                     cursor.delta_link))
        except (ValueError, KeyError, TypeError):
            valid = False
        if not valid:
            raise BadRequest("the cursor is malformed", slug="invalid-cursor")
        if cursor.tenant_id != tenant_id:
            raise Forbidden("the cursor belongs to another tenant", slug="cursor-tenant")
        return cursor
