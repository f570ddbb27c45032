"""Directory scope at sync time, with nothing about membership kept (docs/architecture.md, "Directory scope").

- `Scope`: the tenant's `settings.scope` and the user properties its flags need from Graph.
- `ScopeResolver`: the current state and group membership of a handful of users, asked of Graph in
  `$batch` calls: `GET /users?$filter=id in (…)` for up to 15 users at once (Graph's limit for `in`; a
  user missing from the answer is deleted), and `POST /users/{id}/checkMemberGroups` per user (transitive
  and limited to 20 groups, which is why a scope holds at most 20).
- `SeenFilter`: a fixed-size Bloom filter (1 MiB) of the users already streamed in a group-scoped full
  sync. "Not seen" is certain, so such a user is streamed at once; "maybe seen" is checked exactly with
  `checkMemberGroups` against the groups streamed before. Memory stays 1 MiB whatever the directory's size.
"""
from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from shared.graph.batch import BatchRequest, GraphBatcher
from shared.ids import is_canonical_id
from shared.phones import PhoneNormaliser
from shared.store.schema import effective_scope

USER_TYPE = "#microsoft.graph.user"
PHONE_PROPERTIES = ("mobilePhone", "businessPhones")
# groups/delta filters at most 50 group IDs: the scope's groups and the groups nested in them.
MAX_TRACKED_GROUPS = 50
# Users fetched by one `GET /users?$filter=id in (…)` (Graph allows 15 values without advanced queries): one
# resource unit for 15 users instead of one per `GET /users/{id}`.
USERS_PER_LOOKUP = 15
_FILTER_SAFE = "(),'"  # kept as they are in the $filter expression; spaces and the rest are percent-encoded


@dataclass(frozen=True)
class Scope:
    groups: tuple[str, ...]
    exclude_disabled: bool
    exclude_guests: bool
    require_phone: bool

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> Scope:
        scope = effective_scope(settings)
        return cls(tuple(scope["groups"]), scope["excludeDisabled"], scope["excludeGuests"], scope["requirePhone"])

    @property
    def properties(self) -> tuple[str, ...]:
        """User properties the flags are decided on (selected from Graph, never sent unless allowed)."""
        names: list[str] = []
        if self.exclude_disabled:
            names.append("accountEnabled")
        if self.exclude_guests:
            names.append("userType")
        if self.require_phone:
            names += PHONE_PROPERTIES
        return tuple(names)

    @property
    def filters_users(self) -> bool:
        return bool(self.groups) or bool(self.properties)

    @property
    def decided_on(self) -> tuple[str, ...]:
        """What a delta item must carry for the flags to be decided on it. Graph's delta item (without
        `Prefer: return=minimal`) carries every selected property that is set and leaves out those never
        set, so a missing phone property is no phone; `accountEnabled` and `userType` are always set."""
        return tuple(name for name in self.properties if name not in PHONE_PROPERTIES)

    def decidable(self, user: Mapping[str, Any]) -> bool:
        """Whether the flags can be decided on this delta item without asking Graph about the user."""
        return all(name in user for name in self.decided_on)

    def touches(self, user: Mapping[str, Any]) -> bool:
        """True if a delta item reports a property the flags depend on (the user may have left or entered)."""
        return any(name in user for name in self.properties)

    def complete(self, user: Mapping[str, Any]) -> bool:
        return all(name in user for name in self.properties)

    def admits(self, user: Mapping[str, Any], phones: PhoneNormaliser) -> bool:
        """The flags' verdict on a user whose `decided_on` properties are present (a phone property left
        out was never set)."""
        if self.exclude_disabled and user.get("accountEnabled") is False:
            return False
        if self.exclude_guests and user.get("userType") == "Guest":
            return False
        if self.require_phone:
            numbers = [user.get("mobilePhone"), *(user.get("businessPhones") or [])]
            return any(phones.e164(n) for n in numbers if n)
        return True


@dataclass(frozen=True)
class Resolution:
    user: dict[str, Any] | None  # the user's current state (None: gone), or None when not fetched
    gone: bool
    member: bool  # a transitive member of at least one of the groups asked about


class ScopeResolver:
    """Current state and membership of users, asked of Graph in batches (4 in flight)."""

    def __init__(self, batcher: GraphBatcher, tenant_id: str, select: Iterable[str]):
        self._batcher = batcher
        self._tenant_id = tenant_id
        names = list(select)
        self._select = ",".join(names if "id" in names else ["id", *names])  # answers are matched by id
        self.requests = 0  # inner requests made (for the sync's log line)

    def resolve(self, user_ids: list[str], fetch: bool, groups: tuple[str, ...]) -> dict[str, Resolution]:
        """Each user's current state (`fetch`) and membership of any of `groups`, asked in `$batch` calls."""
        batch = self.batch_for(user_ids, fetch, groups)
        self.requests += len(batch)
        return self.resolutions(user_ids, fetch, groups, self._batcher.run(self._tenant_id, batch))

    def batch_for(self, user_ids: list[str], fetch: bool, groups: tuple[str, ...]) -> list[BatchRequest]:
        """The batched requests that answer `resolve` (ids `u…` and `m…`), for a caller that sends them along
        with its own. An ID that is not a GUID is never put into a Graph request."""
        asked = [user_id for user_id in user_ids if is_canonical_id(user_id)]
        batch: list[BatchRequest] = []
        if fetch:
            for k in range(0, len(asked), USERS_PER_LOOKUP):
                ids = ",".join(f"'{user_id}'" for user_id in asked[k:k + USERS_PER_LOOKUP])
                batch.append(BatchRequest(f"u{k // USERS_PER_LOOKUP}", f"/users?$filter="
                                          f"{quote(f'id in ({ids})', safe=_FILTER_SAFE)}&$select={self._select}"))
        if groups:
            for k, user_id in enumerate(asked):
                batch.append(BatchRequest(f"m{k}", f"/users/{user_id}/checkMemberGroups", "POST",
                                          {"groupIds": list(groups)}))
        return batch

    def resolutions(self, user_ids: list[str], fetch: bool, groups: tuple[str, ...],
                    answers: Mapping[str, Any], failed: set[str] | None = None) -> dict[str, Resolution]:
        """`resolve`'s answer from the batched answers to `batch_for` (a user that is not a GUID: gone);
        ScopeCheckFailed when Graph refused one of them, unless `failed` is given: then the users whose
        check Graph refused are added to it (and resolved as neither gone nor members), the others answered."""
        asked = [user_id for user_id in user_ids if is_canonical_id(user_id)]
        found: dict[str, dict[str, Any]] = {}
        refused: set[str] = set()
        for k in range(-(-len(asked) // USERS_PER_LOOKUP) if fetch else 0):
            answer = answers[f"u{k}"]
            if answer.status != 200 or not isinstance(answer.body, dict):
                if failed is None:
                    raise ScopeCheckFailed(answer.status)
                refused.update(asked[k * USERS_PER_LOOKUP:(k + 1) * USERS_PER_LOOKUP])
                continue
            for user in answer.body.get("value") or []:
                if isinstance(user, dict) and isinstance(user.get("id"), str):
                    found[user["id"]] = {key: value for key, value in user.items() if not key.startswith("@")}
        out = {user_id: Resolution(None, True, False) for user_id in user_ids}
        for k, user_id in enumerate(asked):
            user = found.get(user_id) if fetch else None
            gone, member = fetch and user is None, True
            if groups:
                answer = answers[f"m{k}"]
                if answer.status == 404:
                    gone, member = True, False
                elif answer.status == 200 and isinstance(answer.body, dict):
                    member = bool(answer.body.get("value"))
                elif failed is None:
                    raise ScopeCheckFailed(answer.status)
                else:
                    refused.add(user_id)
            out[user_id] = Resolution(None, False, False) if user_id in refused else \
                Resolution(user, gone, member and not gone)
        if failed is not None:
            failed.update(refused)
        return out


class ScopeCheckFailed(Exception):
    """Graph refused a batched scope check for good (not a throttle: those are retried)."""

    def __init__(self, status: int):
        super().__init__(f"a batched scope check answered {status}")
        self.status = status


class SeenFilter:
    """A Bloom filter of user IDs: 2^23 bits (1 MiB), 4 hashes; ~5e-6 false positives at 100k users."""

    BITS = 1 << 23

    def __init__(self) -> None:
        self._bits = bytearray(self.BITS // 8)

    def _positions(self, user_id: str) -> list[int]:
        digest = int.from_bytes(hashlib.blake2b(user_id.encode(), digest_size=12).digest(), "big")
        return [(digest >> (23 * i)) & (self.BITS - 1) for i in range(4)]

    def add(self, user_id: str) -> None:
        for p in self._positions(user_id):
            self._bits[p >> 3] |= 1 << (p & 7)

    def maybe_seen(self, user_id: str) -> bool:
        return all(self._bits[p >> 3] & (1 << (p & 7)) for p in self._positions(user_id))
