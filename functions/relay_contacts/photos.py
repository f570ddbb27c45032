"""Colleagues' photos, streamed from Graph to the device and never stored, cached or logged
(docs/architecture.md, "Photos").

- `GET /photos/{userId}?size=` checks in one `$batch` that the user is in the tenant's scope
  (`ScopeResolver`: the `id in` lookup for the flags, `checkMemberGroups` for the groups) and reads the photo's metadata
  (`@odata.mediaEtag`); then the bytes of `/photos/{size}/$value` are passed through chunk by chunk.
  The `ETag` is a digest of the user's ID and Graph's media ETag (the photo's version, the same for every
  size), so `If-None-Match` answers `304` without fetching a byte.
- `POST /photos/changes` asks the same for up to 200 users in `$batch` calls of 20, 4 in flight; a user
  whose photo or scope check Graph refused (an inner 4xx other than 404; throttling and 5xx are retried)
  is neither `changed` nor `gone` (the phone keeps its copy and asks again later): one failing user does
  not fail the rest.
A user without a photo, out of scope, or photos switched off: `404`, all alike. The bytes keep Graph's
content type (usually `image/jpeg`).
"""
from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from functions.relay_contacts.scope import Scope, ScopeCheckFailed, ScopeResolver
from shared import logs
from shared.auth import Caller
from shared.errors import BadGateway, BadRequest, Forbidden, NotFound, ServiceUnavailable
from shared.graph.batch import BatchRequest, GraphBatcher
from shared.graph.client import GraphClient, GraphRefused, GraphUnavailable
from shared.ids import is_canonical_id, require_id
from shared.phones import PhoneNormaliser
from shared.store.repositories import DeviceRepository
from shared.store.schema import photos_enabled

if TYPE_CHECKING:
    import requests

log = logs.get_logger(__name__)

SIZES = ("48x48", "64x64", "96x96", "120x120", "240x240", "360x360", "432x432", "504x504", "648x648")
MAX_CHANGES = 200
MAX_ETAG_LENGTH = 128
CHUNK_BYTES = 32 * 1024


@dataclass
class Photo:
    etag: str
    chunks: Iterator[bytes] | None  # None: the client's copy is current (304)
    content_type: str = "image/jpeg"  # Graph's


_IMAGE_TYPE = re.compile(r"image/[A-Za-z0-9][A-Za-z0-9.+-]{0,63}")


def media_type(header: str | None) -> str:
    """Graph's content type of a photo (its parameters dropped); anything that is not an image type is
    passed on as opaque bytes."""
    value = (header or "").split(";", 1)[0].strip().lower()
    return value if _IMAGE_TYPE.fullmatch(value) else "application/octet-stream"


def photo_etag(user_id: str, media_etag: str) -> str:
    digest = hashlib.sha256(f"{user_id}|{media_etag}".encode()).digest()
    return '"' + base64.urlsafe_b64encode(digest[:16]).decode().rstrip("=") + '"'


def _not_found() -> NotFound:
    return NotFound("no photo for this user", slug="photo-not-found")


class PhotoService:
    def __init__(self, devices: DeviceRepository, graph: GraphClient, batcher: GraphBatcher | None = None):
        self._devices = devices
        self._graph = graph
        self._batcher = batcher or GraphBatcher(graph)

    def _check_caller(self, caller: Caller, device_id: Any) -> Scope:
        require_id(device_id, "deviceId")
        # A read, not a touch: photo requests do not count as the device being seen.
        if self._devices.get(caller.tenant_id, device_id) is None:
            raise Forbidden("the device is not registered in this tenant", slug="device-not-registered")
        if not photos_enabled(caller.settings):
            raise _not_found()
        return Scope.from_settings(caller.settings)

    def photo(self, caller: Caller, device_id: Any, user_id: str, size: str | None, if_none_match: str | None
              ) -> Photo:
        scope = self._check_caller(caller, device_id)
        require_id(user_id, "userId")
        if size is not None and size not in SIZES:
            raise BadRequest(f"size must be one of {', '.join(SIZES)}", slug="invalid-size")
        etags, failed = self._current_etags(caller, scope, [user_id])
        if failed:
            raise BadGateway("the directory refused a photo request", slug="graph-refused")
        etag = etags.get(user_id)
        if etag is None:
            raise _not_found()
        candidates = [t.strip().removeprefix("W/") for t in (if_none_match or "").split(",")]
        if etag in candidates or "*" in candidates:
            return Photo(etag, None)
        path = f"users/{user_id}/photos/{size}/$value" if size else f"users/{user_id}/photo/$value"
        try:
            response = self._graph.open_media(caller.tenant_id, self._graph.url(path))
        except GraphUnavailable as error:
            raise ServiceUnavailable("the directory is temporarily unavailable", retry_after=error.retry_after,
                                     slug="graph-unavailable") from None
        except GraphRefused:
            raise BadGateway("the directory refused access for this tenant", slug="graph-refused") from None
        if response is None:
            raise _not_found()  # e.g. a size above the one uploaded
        return Photo(etag, _passed_through(response), media_type(response.headers.get("Content-Type")))

    def changes(self, caller: Caller, device_id: Any, etags: Any) -> dict[str, list[str]]:
        scope = self._check_caller(caller, device_id)
        if not isinstance(etags, dict) or len(etags) > MAX_CHANGES:
            raise BadRequest(f"etags must be an object of at most {MAX_CHANGES} userId: etag pairs",
                             slug="invalid-etags")
        for user_id, etag in etags.items():
            if not is_canonical_id(user_id) or not isinstance(etag, str) or len(etag) > MAX_ETAG_LENGTH:
                raise BadRequest("etags must map lower-case user IDs to ETag strings", slug="invalid-etags")
        current, failed = self._current_etags(caller, scope, list(etags))
        changed = [u for u in etags if u in current and current[u] != etags[u]]
        gone = [u for u in etags if u not in current and u not in failed]
        log.info("photo changes answered", tenantId=caller.tenant_id, count=len(etags))
        return {"changed": changed, "gone": gone}

    def _current_etags(self, caller: Caller, scope: Scope, user_ids: list[str]) -> tuple[dict[str, str], set[str]]:
        """Our ETag of each user's photo, for users in scope that have one (others are left out), and the
        users whose photo or scope check Graph refused: the photos' metadata and the scope checks
        (ScopeResolver: flags looked up 15 users at a time, membership per user) go in the same `$batch`
        calls."""
        resolver = ScopeResolver(self._batcher, caller.tenant_id, ["id", *scope.properties])
        fetch, checked = bool(scope.properties), bool(scope.properties or scope.groups)
        requests = [BatchRequest(f"p{k}", f"/users/{user_id}/photo") for k, user_id in enumerate(user_ids)]
        if checked:
            requests += resolver.batch_for(user_ids, fetch, scope.groups)
        failed: set[str] = set()
        try:
            answers = self._batcher.run(caller.tenant_id, requests)
            resolutions = resolver.resolutions(user_ids, fetch, scope.groups, answers, failed) if checked else {}
        except GraphUnavailable as error:
            raise ServiceUnavailable("the directory is temporarily unavailable", retry_after=error.retry_after,
                                     slug="graph-unavailable") from None
        except (GraphRefused, ScopeCheckFailed):
            raise BadGateway("the directory refused access for this tenant", slug="graph-refused") from None
        phones = PhoneNormaliser(caller.settings.get("defaultRegion"))
        out: dict[str, str] = {}
        for k, user_id in enumerate(user_ids):
            photo = answers[f"p{k}"]
            if photo.status not in (200, 404):
                failed.add(user_id)
            if user_id in failed:
                continue
            if photo.status != 200 or not isinstance(photo.body, dict) or not photo.body.get("@odata.mediaEtag"):
                continue
            if checked:
                resolution = resolutions[user_id]
                if not resolution.member:  # gone, or outside the scope's groups
                    continue
                if fetch and (resolution.user is None or not scope.admits(resolution.user, phones)):
                    continue
            out[user_id] = photo_etag(user_id, str(photo.body["@odata.mediaEtag"]))
        if failed:
            log.warning("photo checks refused", tenantId=caller.tenant_id, count=len(failed))
        return out, failed


def _passed_through(response: requests.Response) -> Iterator[bytes]:
    """The photo's bytes as they arrive from Graph; nothing is kept once a chunk is handed on."""
    try:
        yield from response.iter_content(chunk_size=CHUNK_BYTES)
    finally:
        response.close()
