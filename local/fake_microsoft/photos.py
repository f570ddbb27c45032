"""Profile photos of a synthetic directory: which users have one, up to which size, its media ETag and bytes.

Like the users, photos are a pure function of (tenant seed, user index) until changed through the control
API: about 70 % of users have a photo, uploaded at 648, 504, 240 or 96 px (only sizes up to the uploaded one
exist, as in Exchange Online). The bytes are a JPEG header followed by pseudo-random data unique to
(user, version, size), so a test can recognise every byte of a photo wherever it might leak.
"""

from __future__ import annotations

import hashlib
import threading
from typing import Any

SIZES = (48, 64, 96, 120, 240, 360, 432, 504, 648)
SIZE_NAMES = tuple(f"{s}x{s}" for s in SIZES)
_UPLOADED = (648, 504, 240, 96)
_JPEG_HEAD = bytes.fromhex("ffd8ffe000104a46494600010100000100010000")


class Photos:
    def __init__(self, directory) -> None:
        self.directory = directory
        self._lock = threading.Lock()
        self._overrides: dict[int, tuple[int, int] | None] = {}  # index -> (largest size, version) or None
        self._types: dict[int, str] = {}  # index -> content type of an upload that is not a JPEG
        self._uploads = 0

    def state(self, index: int) -> tuple[int, int] | None:
        """(largest size in px, version) of the user's photo, or None without a photo."""
        with self._lock:
            if index in self._overrides:
                return self._overrides[index]
        digest = hashlib.blake2b(index.to_bytes(8, "big"), digest_size=4, key=self.directory.seed,
                                 person=b"photo...").digest()
        if digest[0] >= 179:  # about 30 % without a photo
            return None
        return _UPLOADED[digest[1] % len(_UPLOADED)], 0

    def set(self, index: int, largest: int = 648, content_type: str = "image/jpeg") -> dict[str, Any]:
        if largest not in SIZES:
            raise ValueError(f"size must be one of {SIZES}")
        if not content_type.startswith("image/"):
            raise ValueError("content_type must be an image type")
        with self._lock:
            self._uploads += 1  # every upload gets a new version, so a new media ETag
            self._overrides[index] = (largest, self._uploads)
            self._types[index] = content_type
        return self.describe(index)

    def content_type(self, index: int) -> str:
        """Graph's content type of the photo (usually image/jpeg)."""
        with self._lock:
            return self._types.get(index, "image/jpeg")

    def remove(self, index: int) -> None:
        with self._lock:
            self._overrides[index] = None

    def media_etag(self, index: int) -> str | None:
        state = self.state(index)
        if state is None:
            return None
        digest = hashlib.blake2b(f"{self.directory.user_id(index)}|{state[1]}".encode(), digest_size=4).hexdigest()
        return f'"{digest.upper()}"'

    def content(self, index: int, size: int) -> bytes:
        state = self.state(index)
        assert state is not None
        seed = hashlib.blake2b(f"{index}|{state[1]}|{size}".encode(), digest_size=32, key=self.directory.seed).digest()
        body = bytearray(_JPEG_HEAD)
        block = seed
        while len(body) < 200 + size * 6:
            block = hashlib.blake2b(block, digest_size=64).digest()
            body += block
        return bytes(body) + b"\xff\xd9"

    def describe(self, index: int) -> dict[str, Any]:
        state = self.state(index)
        return {"index": index, "id": self.directory.user_id(index), "photo": state is not None,
                "largest": state[0] if state else None, "mediaEtag": self.media_etag(index)}
