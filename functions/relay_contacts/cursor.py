"""The sync cursor: Graph's delta link, bound to the tenant and its relay settings, signed with CURSOR_KEY.

The server only follows a delta link it signed itself, so a client can never make it fetch a URL. A cursor is
accepted only in the canonical form it was handed out in (a byte outside its alphabet anywhere: `400`).
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

from itsdangerous import BadData, URLSafeSerializer

from shared.errors import BadRequest, Forbidden
from shared.store.schema import effective_scope

MAX_CURSOR_LENGTH = 8192
CURSOR_BUDGET = 4096  # what a cursor the relay hands out stays under (two delta links and a few fields)
_VERSION = 1
_SALT = "relay-cursor"  # keys the signature to this use of CURSOR_KEY
_ALPHABET = re.compile(r"[A-Za-z0-9_\-.]+")  # URL-safe base64 and the separator: a cursor is nothing else


def settings_fingerprint(settings: dict[str, Any]) -> str:
    """Changes whenever the fields, the region or the directory scope change, which forces a full sync."""
    scope = effective_scope(settings)
    canonical = json.dumps({"fields": settings.get("fields"), "region": settings.get("defaultRegion"),
                            "scope": {**scope, "groups": sorted(scope["groups"])}}, sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Cursor:
    tenant_id: str
    settings: str
    delta_link: str
    groups_link: str = ""  # groups/delta link of a group scope ("" when the scope has no groups to track)


class CursorCodec:
    """Signed (HMAC-SHA256 under CURSOR_KEY, through itsdangerous), URL-safe, tenant-bound cursors."""

    def __init__(self, key: bytes):
        self._serializer = URLSafeSerializer(key, salt=_SALT, signer_kwargs={"digest_method": hashlib.sha256})

    def encode(self, cursor: Cursor) -> str:
        body = {"v": _VERSION, "t": cursor.tenant_id, "s": cursor.settings, "d": cursor.delta_link}
        if cursor.groups_link:
            body["g"] = cursor.groups_link
        return self._serializer.dumps(body)

    def decode(self, text: str, tenant_id: str) -> Cursor:
        """400 for anything malformed or tampered with; 403 for a valid cursor of another tenant."""
        if not text or len(text) > MAX_CURSOR_LENGTH or not _ALPHABET.fullmatch(text):
            raise BadRequest("the cursor is malformed", slug="invalid-cursor")
        try:
            body = self._serializer.loads(text)
        except BadData:
            raise BadRequest("the cursor is malformed or was altered", slug="invalid-cursor") from None
        # Only the canonical form: base64 decoders forgive (other padding bits, a stray byte); this does not.
        if self._serializer.dumps(body) != text:
            raise BadRequest("the cursor is malformed or was altered", slug="invalid-cursor")
        try:
            cursor = Cursor(body["t"], body["s"], body["d"], body.get("g", ""))
            valid = body.get("v") == _VERSION and all(isinstance(v, str) for v in (
                cursor.tenant_id, cursor.settings, cursor.delta_link, cursor.groups_link))
        except (KeyError, TypeError, AttributeError):
            valid = False
        if not valid:
            raise BadRequest("the cursor is malformed", slug="invalid-cursor")
        if cursor.tenant_id != tenant_id:
            raise Forbidden("the cursor belongs to another tenant", slug="cursor-tenant")
        return cursor
