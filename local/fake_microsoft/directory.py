"""Deterministic synthetic directories, one per tenant, computed lazily user by user.

User `i` of a tenant is a pure function of the tenant's seed and `i` (its identity from `identity.py`, names
from `names.py`, phones from `phones.py`), so a 100,000-user directory costs no memory: only mutations
(updates, removals, additions) are stored, next to a change log with a monotonically increasing `version`
that delta tokens refer to ("changes since version v").
"""

from __future__ import annotations

import hashlib
import random
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from .identity import Identity
from .names import COUNTRY_NAMES, DEPARTMENTS, JOB_TITLES, POOLS
from .phones import INVALID_NUMBERS, PHONES

DEFAULT_SIZE = 250

# Properties Graph returns for GET /users without $select (docs/architecture.md, "Users and delta paging"),
# in Graph's order.
DEFAULT_PROPERTIES = (
    "businessPhones", "displayName", "givenName", "jobTitle", "mail", "mobilePhone",
    "officeLocation", "preferredLanguage", "surname", "userPrincipalName", "id",
)
# Everything the fake can return with $select; anything else is a 400 like Graph's.
KNOWN_PROPERTIES = DEFAULT_PROPERTIES + (
    "department", "companyName", "city", "country", "usageLocation", "accountEnabled",
    "employeeId", "faxNumber", "otherMails", "streetAddress", "postalCode", "state", "userType",
)
MUTABLE_PROPERTIES = frozenset(KNOWN_PROPERTIES) - {"id"}

REMOVAL_REASONS = ("deleted", "changed")  # permanent / soft-deleted (restorable)


@dataclass(frozen=True)
class Change:
    version: int
    index: int
    kind: str  # "update" | "remove" | "add" | "restore"
    fields: tuple[str, ...] = ()


@dataclass
class ChangeItem:
    """One entry of an incremental delta round, resolved against the current state."""

    index: int
    removed: str | None  # removal reason, or None
    full: bool  # send every selected property (added / restored)
    fields: frozenset[str] = field(default_factory=frozenset)  # changed properties (updates)


class Directory:
    """A tenant's synthetic directory: users computed from (seed, index), plus stored mutations."""

    def __init__(self, tenant_id: str, size: int = DEFAULT_SIZE, salt: str = "") -> None:
        if size < 0 or size > 10_000_000:
            raise ValueError("size must be between 0 and 10,000,000")
        self.tenant_id = tenant_id.lower()
        self.size = size  # generated users; additions come after them
        self.salt = salt
        self.identity = Identity(self.tenant_id, salt)
        self.seed = self.identity.seed
        self.company = self.identity.company
        self.domain = self.identity.domain
        self.generation = uuid.uuid4().hex[:12]  # changes when the directory is replaced
        self._lock = threading.RLock()
        self._added = 0
        self._overrides: dict[int, dict[str, Any]] = {}
        self._removed: dict[int, str] = {}
        self._upn_overrides: dict[str, int] = {}
        self._log: list[Change] = []
        self.version = 0

    # ---- reading ---------------------------------------------------------------------------------
    @property
    def total(self) -> int:
        """Number of indices ever allocated (generated + added), including removed users."""
        return self.size + self._added

    @property
    def live_count(self) -> int:
        with self._lock:
            return self.total - len(self._removed)

    def user(self, index: int) -> dict[str, Any] | None:
        """Current state of user `index` with every known property, or None if removed/absent."""
        with self._lock:
            if index < 0 or index >= self.total or index in self._removed:
                return None
            override = self._overrides.get(index)
        user = self.generate(index)
        if override:
            user.update(override)
        return user

    def cleared(self, index: int) -> frozenset[str]:
        """The properties of user `index` set to null by an update (Graph's delta lists them as `null`;
        a property never set it leaves out)."""
        with self._lock:
            override = self._overrides.get(index) or {}
            return frozenset(name for name, value in override.items() if value is None)

    def removal_reason(self, index: int) -> str | None:
        return self._removed.get(index)

    def iter_users(self) -> Iterator[dict[str, Any]]:
        for index in range(self.total):
            user = self.user(index)
            if user is not None:
                yield user

    def user_id(self, index: int) -> str:
        return self.identity.user_id(index)

    def index_of(self, user_id: str) -> int | None:
        """Index of the user with this id (live or removed), or None if it is not one of ours."""
        return self.identity.index_of_id(user_id, self.total)

    def index_of_upn(self, upn: str) -> int | None:
        """Index of the live user whose userPrincipalName is `upn` (case-insensitive), or None."""
        upn = upn.strip().lower()
        with self._lock:
            if upn in self._upn_overrides:
                return self._upn_overrides[upn]
        index = self.identity.index_of_upn(upn)
        user = self.user(index) if index is not None else None
        if user is None or user["userPrincipalName"].lower() != upn:
            return None
        return index

    def generate(self, index: int) -> dict[str, Any]:
        """User `index` as generated (before mutations): a pure function of (seed, index)."""
        nation, given, surname, upn = self.identity.name(index)

        rng = random.Random(hashlib.blake2b(index.to_bytes(8, "big"), digest_size=16, key=self.seed).digest())
        roll = rng.random
        # Most people sit in an office of their own country; some abroad.
        office_nation = nation if roll() < 0.85 else POOLS.nations[rng.randrange(len(POOLS.nations))]
        office, city = rng.choice(office_nation.offices)
        mobile_fn, business_fn = PHONES[office_nation.code]

        display = f"{given} {surname}"
        style = roll()
        if style < 0.06 and nation.code == "DE":
            display = f"{surname}, {given}"
        elif style < 0.09:
            display = f"Dr. {given} {surname}"
        elif style < 0.11:
            display = f"{given} {surname} (extern)" if nation.code == "DE" else f"{given} {surname} (Contractor)"

        mobile: str | None
        r = roll()
        mobile = None if r < 0.18 else (rng.choice(INVALID_NUMBERS) if r < 0.22 else mobile_fn(rng))
        r = roll()
        if r < 0.22:
            business: list[str] = []
        elif r < 0.26:
            business = [rng.choice(INVALID_NUMBERS)]
        elif r < 0.31:
            business = [business_fn(rng), business_fn(rng)]
        else:
            business = [business_fn(rng)]

        names_missing = roll() < 0.03
        company = self.company
        r = roll()
        if r < 0.10:
            company = None
        elif r < 0.14:
            company = f"{self.company.split(' ')[0]} {office_nation.code} Services"
        return {
            "businessPhones": business,
            "displayName": display,
            "givenName": None if names_missing else given,
            "jobTitle": None if roll() < 0.10 else rng.choice(JOB_TITLES),
            "mail": None if roll() < 0.05 else upn,
            "mobilePhone": mobile,
            "officeLocation": None if roll() < 0.10 else office,
            "preferredLanguage": None if roll() < 0.35 else nation.language,
            "surname": None if names_missing else surname,
            "userPrincipalName": upn,
            "id": self.identity.user_id(index),
            "department": None if roll() < 0.08 else rng.choice(DEPARTMENTS),
            "companyName": company,
            "city": city,
            "country": COUNTRY_NAMES[office_nation.code],
            "usageLocation": office_nation.code,
            "accountEnabled": roll() >= 0.02,
            "employeeId": None if roll() < 0.3 else str(100000 + index),
            "faxNumber": None,
            "otherMails": [],
            "streetAddress": None,
            "postalCode": None,
            "state": None,
            "userType": "Guest" if roll() < 0.03 else "Member",  # invited guests
        }

    # ---- mutations -------------------------------------------------------------------------------
    def resolve(self, ref: Any) -> int:
        """An index from a reference: {"id": guid} / {"index": n} / {"userPrincipalName": upn} / guid."""
        if isinstance(ref, dict):
            if "index" in ref:
                index = int(ref["index"])
                if not 0 <= index < self.total:
                    raise KeyError(f"no user at index {index}")
                return index
            if "userPrincipalName" in ref:
                index = self.index_of_upn(str(ref["userPrincipalName"]))
                if index is None:
                    raise KeyError("no such userPrincipalName")
                return index
            ref = ref.get("id")
        if isinstance(ref, int):
            return self.resolve({"index": ref})
        index = self.index_of(str(ref))
        if index is None:
            raise KeyError(f"no user with id {ref}")
        return index

    def update_user(self, index: int, fields: dict[str, Any]) -> int:
        unknown = set(fields) - MUTABLE_PROPERTIES
        if unknown:
            raise ValueError(f"cannot update {sorted(unknown)}")
        if not fields:
            raise ValueError("nothing to update")
        with self._lock:
            if index in self._removed or not 0 <= index < self.total:
                raise KeyError("cannot update a removed or unknown user")
            current = self.user(index)
            assert current is not None
            if "userPrincipalName" in fields:
                old = current["userPrincipalName"].lower()
                self._upn_overrides.pop(old, None)
                self._upn_overrides[str(fields["userPrincipalName"]).lower()] = index
            self._overrides.setdefault(index, {}).update(fields)
            return self._append(index, "update", tuple(fields))

    def remove_user(self, index: int, reason: str = "deleted") -> int:
        if reason not in REMOVAL_REASONS:
            raise ValueError(f"reason must be one of {REMOVAL_REASONS}")
        with self._lock:
            if not 0 <= index < self.total:
                raise KeyError("no such user")
            if index in self._removed:
                raise KeyError("user already removed")
            self._removed[index] = reason
            return self._append(index, "remove")

    def restore_user(self, index: int) -> int:
        with self._lock:
            if self._removed.get(index) != "changed":
                raise KeyError("only soft-deleted users (reason 'changed') can be restored")
            del self._removed[index]
            return self._append(index, "restore")

    def add_user(self, fields: dict[str, Any] | None = None) -> int:
        """Append a new user (generated like the others, then `fields` applied); returns its index."""
        with self._lock:
            index = self.total
            self._added += 1
            if fields:
                unknown = set(fields) - MUTABLE_PROPERTIES
                if unknown:
                    self._added -= 1
                    raise ValueError(f"cannot set {sorted(unknown)}")
                self._overrides[index] = dict(fields)
                if "userPrincipalName" in fields:
                    self._upn_overrides[str(fields["userPrincipalName"]).lower()] = index
            self._append(index, "add")
            return index

    def _append(self, index: int, kind: str, fields: tuple[str, ...] = ()) -> int:
        self.version += 1
        self._log.append(Change(self.version, index, kind, fields))
        return self.version

    # ---- delta -----------------------------------------------------------------------------------
    def changes(self, since: int, upto: int, aggregate: bool = True) -> list[ChangeItem]:
        """What an incremental delta round reports for versions in (since, upto].

        Aggregated per user in order of first change (removed > full > changed properties); with
        `aggregate=False` every log entry is its own item, so users changed twice repeat."""
        with self._lock:
            entries = [c for c in self._log[self._log_position(since):] if c.version <= upto]
            removed = dict(self._removed)
        items: list[ChangeItem] = []
        if not aggregate:
            for c in entries:
                reason = removed.get(c.index)
                items.append(ChangeItem(c.index, reason, c.kind in ("add", "restore"), frozenset(c.fields)))
            return items
        by_index: dict[int, ChangeItem] = {}
        for c in entries:
            item = by_index.get(c.index)
            if item is None:
                item = by_index[c.index] = ChangeItem(c.index, None, False)
                items.append(item)
            if c.kind in ("add", "restore"):
                item.full = True
            item.fields = item.fields | frozenset(c.fields)
        for item in items:
            item.removed = removed.get(item.index)
        return items

    def _log_position(self, since: int) -> int:
        # Versions are 1..n in log order, so version v sits at position v-1.
        return max(0, min(since, len(self._log)))

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {"size": self.size, "added": self._added, "removed": len(self._removed),
                    "updated": len(self._overrides), "version": self.version,
                    "live": self.total - len(self._removed)}
