"""A tenant's groups for the fake Graph: direct members (users by directory index, nested groups, and the
other directory objects Graph mixes in: devices, service principals, org contacts), transitive membership,
and a membership change log that `groups/delta` reads ("changes since version v").

Users deleted from the directory drop out of every membership at read time (as in Entra ID); the change
log records only membership edits made through the control API.
"""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass, field
from typing import Any

USER_TYPE = "#microsoft.graph.user"
GROUP_TYPE = "#microsoft.graph.group"
OTHER_TYPES = {"devices": "#microsoft.graph.device", "servicePrincipals": "#microsoft.graph.servicePrincipal",
               "orgContacts": "#microsoft.graph.orgContact"}


@dataclass
class Group:
    id: str
    display_name: str
    users: dict[int, None] = field(default_factory=dict)  # ordered set of directory indexes
    groups: dict[str, None] = field(default_factory=dict)  # nested groups (ordered set)
    others: list[tuple[str, str]] = field(default_factory=list)  # (@odata.type, id)


@dataclass(frozen=True)
class MemberChange:
    version: int
    group_id: str
    odata_type: str
    member: int | str  # user index or object id
    removed: bool


class Groups:
    def __init__(self, directory) -> None:
        self.directory = directory
        self._lock = threading.RLock()
        self._groups: dict[str, Group] = {}
        self._deleted: dict[str, int] = {}  # group id -> version of deletion
        self._log: list[MemberChange] = []
        self.version = 0
        self._transitive_cache: dict[str, tuple[int, list[tuple[str, int | str]], frozenset[int]]] = {}

    # ---- reading ---------------------------------------------------------------------------------
    def get(self, group_id: str) -> Group | None:
        return self._groups.get(group_id.lower())

    def ids(self) -> list[str]:
        return list(self._groups)

    def deleted_at(self, group_id: str) -> int | None:
        return self._deleted.get(group_id.lower())

    def direct_members(self, group: Group) -> list[tuple[str, int | str]]:
        removed = self.directory.removal_reason
        out: list[tuple[str, int | str]] = [(USER_TYPE, i) for i in group.users if removed(i) is None]
        out += [(GROUP_TYPE, g) for g in group.groups if g in self._groups]
        out += list(group.others)
        return out

    def transitive(self, group_id: str) -> tuple[list[tuple[str, int | str]], frozenset[int]]:
        """Every object under the group, each once (users, nested groups, other objects), and the user set."""
        group_id = group_id.lower()
        with self._lock:
            cached = self._transitive_cache.get(group_id)
            if cached is not None and cached[0] == self.version:
                members, users = cached[1], cached[2]
            else:
                members, seen_users, seen_groups = [], set(), {group_id}
                stack = [group_id]
                while stack:
                    group = self._groups.get(stack.pop())
                    if group is None:
                        continue
                    for index in group.users:
                        if index not in seen_users:
                            seen_users.add(index)
                            members.append((USER_TYPE, index))
                    for nested in group.groups:
                        if nested not in seen_groups and nested in self._groups:
                            seen_groups.add(nested)
                            members.append((GROUP_TYPE, nested))
                            stack.append(nested)
                    for other in group.others:
                        members.append(other)
                users = frozenset(seen_users)
                self._transitive_cache[group_id] = (self.version, members, users)
        removed = self.directory.removal_reason
        return [m for m in members if m[0] != USER_TYPE or removed(m[1]) is None], users

    def is_transitive_member(self, index: int, group_id: str) -> bool:
        if self.directory.removal_reason(index) is not None or group_id.lower() not in self._groups:
            return False
        return index in self.transitive(group_id)[1]

    # ---- changes ---------------------------------------------------------------------------------
    def create(self, spec: dict[str, Any]) -> Group:
        unknown = set(spec) - {"id", "displayName", "users", "groups", *OTHER_TYPES}
        if unknown:
            raise ValueError(f"unknown group keys {sorted(unknown)}")
        group_id = str(spec.get("id") or uuid.uuid4()).lower()
        uuid.UUID(group_id)
        with self._lock:
            if group_id in self._groups:
                raise ValueError("group already exists")
            group = Group(group_id, str(spec.get("displayName") or f"Group {len(self._groups) + 1}"))
            self._groups[group_id] = group
            self._deleted.pop(group_id, None)
            self.version += 1
            self.add_members(group_id, spec)
            return group

    def add_members(self, group_id: str, spec: dict[str, Any]) -> int:
        return self._edit(group_id, spec, removed=False)

    def remove_members(self, group_id: str, spec: dict[str, Any]) -> int:
        return self._edit(group_id, spec, removed=True)

    def delete(self, group_id: str) -> int:
        with self._lock:
            if self._groups.pop(group_id.lower(), None) is None:
                raise KeyError("no such group")
            self.version += 1
            self._deleted[group_id.lower()] = self.version
            self._transitive_cache.clear()
            return self.version

    def _edit(self, group_id: str, spec: dict[str, Any], removed: bool) -> int:
        with self._lock:
            group = self._groups.get(group_id.lower())
            if group is None:
                raise KeyError("no such group")
            for index in self._user_indexes(spec.get("users", [])):
                present = index in group.users
                if removed and present:
                    del group.users[index]
                elif not removed and not present:
                    group.users[index] = None
                else:
                    continue
                self._append(group.id, USER_TYPE, index, removed)
            for nested in spec.get("groups", []):
                nested = str(nested).lower()
                if nested == group.id or (not removed and nested not in self._groups):
                    raise ValueError("a nested group must be another existing group")
                present = nested in group.groups
                if removed and present:
                    del group.groups[nested]
                elif not removed and not present:
                    group.groups[nested] = None
                else:
                    continue
                self._append(group.id, GROUP_TYPE, nested, removed)
            for key, odata_type in OTHER_TYPES.items():
                count = int(spec.get(key, 0) or 0)
                for _ in range(count if not removed else 0):
                    object_id = str(uuid.uuid4())
                    group.others.append((odata_type, object_id))
                    self._append(group.id, odata_type, object_id, False)
            self._transitive_cache.clear()
            return self.version

    def _user_indexes(self, refs: Any) -> list[int]:
        """`users`: a list of indexes / ids / {"id"|"index"|"userPrincipalName"}, or {"range": [start, stop]}."""
        if isinstance(refs, dict) and "range" in refs:
            start, stop = (int(v) for v in refs["range"])
            if not 0 <= start <= stop <= self.directory.total:
                raise ValueError("range outside the directory")
            return list(range(start, stop))
        return [self.directory.resolve(ref) for ref in refs]

    def _append(self, group_id: str, odata_type: str, member: int | str, removed: bool) -> None:
        self.version += 1
        self._log.append(MemberChange(self.version, group_id, odata_type, member, removed))

    def changes(self, since: int, upto: int,
                group_ids: set[str] | None) -> dict[str, dict[tuple[str, int | str], bool]]:
        """Net membership changes per group in versions (since, upto]: {(type, member): removed}."""
        with self._lock:
            out: dict[str, dict[tuple[str, int | str], bool]] = {}
            for change in self._log:
                if since < change.version <= upto and (group_ids is None or change.group_id in group_ids):
                    out.setdefault(change.group_id, {})[(change.odata_type, change.member)] = change.removed
            return out

    def deleted_between(self, since: int, upto: int, group_ids: set[str] | None) -> list[str]:
        return [g for g, v in self._deleted.items() if since < v <= upto and (group_ids is None or g in group_ids)]

    def describe(self) -> list[dict[str, Any]]:
        with self._lock:
            return [{"id": g.id, "displayName": g.display_name, "users": len(g.users), "groups": list(g.groups),
                     "others": len(g.others)} for g in self._groups.values()]
