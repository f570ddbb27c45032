"""The kinds of sync the relay runs, chosen by the tenant's scope and the cursor (docs/architecture.md,
"Directory scope"). Each fetches its first Graph page in `begin()` (so failures before the first byte are
HTTP errors), then yields NDJSON chunks page by page and finally hands out the delta links for the cursor.

- `DirectorySync` (no groups): `/users/delta` as before; the flags filter both rounds in code: Graph's
  delta item carries every selected property that is set (a cleared one as `null`, one never set left
  out), so the flags are decided on the item itself; only an item without `accountEnabled` / `userType`
  when the flags need them (Graph promised them, but a client cannot count on what it was not sent) is
  asked of Graph in `$batch`.
- `GroupFullSync`: the users of each scoped group from `transitiveMembers` (nested groups included,
  devices / service principals / contacts left out), each user once: the first group streams as is;
  a user of a later group is streamed unless the 1 MiB `SeenFilter` says "maybe seen" and
  `checkMemberGroups` confirms membership of an earlier group. Delta links "from now" for users and for
  the groups (the scoped ones and those nested in them, found first) are taken before the members are
  read, so nothing that changes during the sync is missed.
- `GroupIncrementalSync`: `groups/delta` of the tracked groups says whose membership changed (a nested
  group added or removed, a tracked group deleted, or more than `MAX_MEMBER_CHANGES` users to check among
  the membership changes and the first pages of user changes: a full sync instead); `/users/delta` says
  who changed. Both are checked against the scope in `$batch`
  (`GET /users/{id}` + `checkMemberGroups`): `upsert` with every allowed field for users in scope,
  `remove` for users that left it, nothing for changes of users outside it.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from functions.relay_contacts.cursor import Cursor
from functions.relay_contacts.lines import ContactMapper, PageAhead, ndjson
from functions.relay_contacts.scope import (
    MAX_TRACKED_GROUPS,
    USER_TYPE,
    Resolution,
    Scope,
    ScopeCheckFailed,
    ScopeResolver,
    SeenFilter,
)
from shared import logs
from shared.graph.client import DeltaExpired, GraphClient, GraphNotFound, GraphRefused, GraphUnavailable, Page

log = logs.get_logger(__name__)

# Users a group-scoped incremental sync checks one by one (`checkMemberGroups`: 4 RU each, Graph's cost table);
# more: a full sync, which reads only the groups' members (a 100k-user group: ~410 RU) but resends the whole
# scope to the phone. 500 checks cost at most 2,000 RU, the budget the threshold allowed when a check was
# believed to cost 1 RU. Membership changes count, and so do changed users on the first READ_AHEAD_PAGES
# pages of /users/delta, read before the first byte.
MAX_MEMBER_CHANGES = 500
READ_AHEAD_PAGES = 3
CHECK_CHUNK = 300  # users resolved per round: 20 lookups of 15 (one $batch), plus 300 membership checks with groups
_GROUP_ID = "#microsoft.graph.group"


class NeedsFullSync(Exception):
    """The incremental sync cannot express what changed; a full sync (with `reset`) follows."""


@dataclass
class SyncContext:
    tenant_id: str
    graph: GraphClient
    resolver: ScopeResolver
    mapper: ContactMapper
    scope: Scope
    select: list[str]


class Sync:
    full: bool = True
    pages = 0
    contacts = 0

    def __init__(self, context: SyncContext):
        self.c = context
        self._ahead: PageAhead | None = None

    def begin(self) -> None:
        raise NotImplementedError

    def chunks(self) -> Iterator[str]:
        raise NotImplementedError

    def links(self) -> tuple[str | None, str | None]:
        raise NotImplementedError

    def close(self) -> None:
        if self._ahead is not None:
            self._ahead.close()

    # ---- shared ------------------------------------------------------------------------------------
    def _resolved_lines(self, items: list[dict[str, Any]], groups: tuple[str, ...], left: bool = False,
                        delta_items: bool = True) -> str:
        """Lines for changed users after asking Graph for their state (and membership when `groups`):
        in scope → a full upsert; out of it → `remove` if the change could have taken them out, else nothing.
        `left`: users removed from a tracked group (still in scope: nothing changed for the phone).
        `delta_items`: the items are /users/delta's (the user's state when `decidable`), not bare IDs."""
        c, out = self.c, []
        for start in range(0, len(items), CHECK_CHUNK):
            chunk = items[start:start + CHECK_CHUNK]
            # A delta item that carries what the flags decide on is the user's state: only its membership
            # is asked (checkMemberGroups); the others' state is fetched too.
            known = [item for item in chunk if delta_items and c.scope.decidable(item)]
            unknown = [item for item in chunk if not (delta_items and c.scope.decidable(item))]
            answers: dict[str, Resolution] = {}
            if unknown:
                answers.update(c.resolver.resolve([item["id"] for item in unknown], fetch=True, groups=groups))
            if known:
                checked = c.resolver.resolve([item["id"] for item in known], fetch=False, groups=groups)
                answers.update({item["id"]: Resolution(item if not checked[item["id"]].gone else None,
                                                       checked[item["id"]].gone, checked[item["id"]].member)
                                for item in known})
            decided = {id(item) for item in known}
            for item in chunk:
                answer: Resolution = answers[item["id"]]
                if answer.gone or answer.user is None:
                    out.append(c.mapper.remove(item["id"]))
                elif answer.member and c.scope.admits(answer.user, c.mapper.phones):
                    if not left:
                        out.append(c.mapper.line(answer.user, full=True))
                        self.contacts += 1
                elif left:
                    out.append(c.mapper.remove(item["id"]))
                elif id(item) in decided:
                    # A whole delta item says nothing about what changed: a member the flags now leave out
                    # may have left the scope (a remove the phone ignores if it never had the user). A
                    # non-member whose membership did not change was not in scope before either.
                    if answer.member:
                        out.append(c.mapper.remove(item["id"]))
                elif c.scope.touches(item):
                    out.append(c.mapper.remove(item["id"]))
        return "".join(out)

    def _users_delta_link(self) -> str:
        """A users/delta link "from now" with the sync's selection (no full round needed)."""
        c = self.c
        url = c.graph.url(f"users/delta?$select={quote(','.join(c.select), safe=',')}&$deltatoken=latest")
        for page in c.graph.collection_pages(c.tenant_id, url, "users/delta?"):
            if page.delta_link:
                return page.delta_link
        raise GraphNotFound("users/delta gave no delta link", code="no-delta-link")


class DirectorySync(Sync):
    """The whole directory through /users/delta, filtered by the flags."""

    def __init__(self, context: SyncContext, delta_link: str | None):
        super().__init__(context)
        self._delta_link = delta_link
        self.full = delta_link is None
        self._next_link: str | None = None

    def begin(self) -> None:
        c = self.c
        self._pages = c.graph.delta_pages(c.tenant_id, c.select, self._delta_link)
        self._first = next(self._pages)
        self._ahead = PageAhead(self._pages, self._first)  # page 2 is on its way while the response starts

    def chunks(self) -> Iterator[str]:
        page: Page | None = self._first
        while page is not None:
            self.pages += 1
            yield self._render(page)
            if page.delta_link:
                self._next_link = page.delta_link
                return
            page = self._ahead.next() if self._ahead is not None else None

    def _render(self, page: Page) -> str:
        c = self.c
        mapper, scope = c.mapper, c.scope
        if not scope.filters_users:
            self.contacts += len(page.items)
            return "".join(mapper.line(user, self.full) for user in page.items)
        if self.full:
            kept = [u for u in page.items if "@removed" in u or scope.admits(u, mapper.phones)]
            self.contacts += len(kept)
            return "".join(mapper.line(user, True) for user in kept)
        out, unsure = [], []
        for user in page.items:
            if "@removed" in user:
                out.append(mapper.remove(user["id"]))
            elif scope.decidable(user):  # the item carries what the flags decide on: no lookup
                if scope.admits(user, mapper.phones):
                    out.append(mapper.line(user, True))
                    self.contacts += 1
                else:  # may have left the scope (a phone that never had it ignores the line)
                    out.append(mapper.remove(user["id"]))
            else:
                unsure.append(user)
        return "".join(out) + self._resolved_lines(unsure, ())

    def links(self) -> tuple[str | None, str | None]:
        return self._next_link, None


class GroupFullSync(Sync):
    """Exactly the users in scope, read group by group from transitiveMembers, each once."""

    def __init__(self, context: SyncContext):
        super().__init__(context)
        self._users_link: str | None = None
        self._groups_link: str | None = None
        self._done = False
        self._seen = SeenFilter()

    def begin(self) -> None:
        tracked = self._tracked_groups()
        self._users_link = self._users_delta_link()
        if tracked is not None:
            self._groups_link = self._groups_delta_link(tracked)
        self._pages = self._member_pages()
        self._first = next(self._pages, None)
        if self._first is not None:
            self._ahead = PageAhead(self._pages, self._first)

    def _tracked_groups(self) -> list[str] | None:
        """The scoped groups and every group nested in them, or None when more than groups/delta can filter."""
        c = self.c
        tracked = list(c.scope.groups)
        for group_id in c.scope.groups:
            url = c.graph.url(f"groups/{group_id}/transitiveMembers/microsoft.graph.group?$select=id&$count=true"
                              "&$top=999")
            try:
                for page in c.graph.collection_pages(c.tenant_id, url, f"groups/{group_id}/",
                                                     {"ConsistencyLevel": "eventual"}):
                    for group in page.items:
                        if group.get("id") not in tracked:
                            tracked.append(group["id"])
                    if len(tracked) > MAX_TRACKED_GROUPS:
                        return None
            except GraphNotFound:
                log.warning("a scoped group does not exist", tenantId=c.tenant_id)
        return tracked

    def _groups_delta_link(self, tracked: list[str]) -> str:
        """A groups/delta link of the tracked groups' membership. Graph documents `$deltatoken=latest` only
        without `$filter`, so the filtered round is paged through to its delta link (1 RU a page; the
        members it lists are not needed: the member pages read next are the sync)."""
        c = self.c
        query = quote(" or ".join(f"id eq '{g}'" for g in tracked), safe="'")
        url = c.graph.url(f"groups/delta?$filter={query}&$select=members")
        for page in c.graph.collection_pages(c.tenant_id, url, "groups/delta?"):
            if page.delta_link:
                return page.delta_link
        raise GraphNotFound("groups/delta gave no delta link", code="no-delta-link")

    def _member_pages(self) -> Iterator[_Tagged]:
        c = self.c
        select = quote(",".join(c.select), safe=",")
        for index, group_id in enumerate(c.scope.groups):
            url = c.graph.url(f"groups/{group_id}/transitiveMembers?$select={select}&$top=999")
            try:
                for page in c.graph.collection_pages(c.tenant_id, url, f"groups/{group_id}/transitiveMembers"):
                    yield _Tagged(index, page)
            except GraphNotFound:
                log.warning("a scoped group does not exist", tenantId=c.tenant_id)

    def chunks(self) -> Iterator[str]:
        tagged = self._first
        while tagged is not None:
            self.pages += 1
            yield self._render(tagged.index, tagged.page)
            tagged = self._ahead.next() if self._ahead is not None else None
        self._done = True

    def _render(self, index: int, page: Page) -> str:
        c = self.c
        users = [u for u in page.items if u.get("@odata.type", USER_TYPE) == USER_TYPE and "id" in u]
        kept = [u for u in users if c.scope.admits(u, c.mapper.phones)]
        if index > 0:
            unsure = [u["id"] for u in kept if self._seen.maybe_seen(u["id"])]
            if unsure:  # exact check against the groups streamed before this one
                answers = c.resolver.resolve(unsure, fetch=False, groups=c.scope.groups[:index])
                kept = [u for u in kept if u["id"] not in answers or not answers[u["id"]].member]
        for user in users:
            self._seen.add(user["id"])
        self.contacts += len(kept)
        return "".join(c.mapper.line(user, True) for user in kept)

    def links(self) -> tuple[str | None, str | None]:
        return (self._users_link if self._done else None), self._groups_link


@dataclass
class _Tagged:
    index: int
    page: Page
    delta_link: None = None  # PageAhead reads this: member pages never end a delta round


class GroupIncrementalSync(Sync):
    """Changes since the cursor: membership from groups/delta, users from /users/delta."""

    full = False

    def __init__(self, context: SyncContext, cursor: Cursor):
        super().__init__(context)
        self._cursor = cursor
        self._users_link: str | None = None
        self._groups_link: str | None = None
        self._member_changes: dict[str, bool] = {}  # user id -> removed from a tracked group

    def begin(self) -> None:
        c = self.c
        if not c.graph.is_graph_link(self._cursor.groups_link, "groups/delta?"):
            raise NeedsFullSync("untracked groups")
        for page in c.graph.collection_pages(c.tenant_id, self._cursor.groups_link, "groups/delta?"):
            for group in page.items:
                if "@removed" in group:
                    raise NeedsFullSync("a tracked group was deleted")
                for member in group.get("members@delta") or []:
                    kind = member.get("@odata.type")
                    if kind == _GROUP_ID:
                        raise NeedsFullSync("nested groups changed")
                    if kind == USER_TYPE and isinstance(member.get("id"), str):
                        removed = "@removed" in member
                        self._member_changes[member["id"]] = self._member_changes.get(member["id"], False) or removed
                if len(self._member_changes) > MAX_MEMBER_CHANGES:
                    raise NeedsFullSync("too many membership changes")
            if page.delta_link:
                self._groups_link = page.delta_link
        self._pages = c.graph.delta_pages(c.tenant_id, c.select, self._cursor.delta_link)
        # Read ahead (a few pages at most) to see whether checking every changed user would cost more than a
        # full sync; the pages read are streamed from memory, the rest as they come.
        self._read: list[Page] = []
        checks = len(self._member_changes)
        for page in self._pages:
            self._read.append(page)
            checks += sum(1 for user in page.items
                          if "@removed" not in user and user.get("id") not in self._member_changes)
            if checks > MAX_MEMBER_CHANGES:
                raise NeedsFullSync("too many changed users to check")
            if page.delta_link or len(self._read) == READ_AHEAD_PAGES:
                break
        if not self._read:
            raise GraphNotFound("users/delta gave no page", code="no-delta-page")
        if not self._read[-1].delta_link:
            self._ahead = PageAhead(self._pages, self._read[-1])

    def _next_page(self) -> Page | None:
        if self._read:
            return self._read.pop(0)
        return self._ahead.next() if self._ahead is not None else None

    def chunks(self) -> Iterator[str]:
        c = self.c
        page = self._next_page()
        while page is not None:
            self.pages += 1
            out, changed = [], []
            for user in page.items:
                if "@removed" in user:
                    out.append(c.mapper.remove(user["id"]))
                elif user.get("id") not in self._member_changes:  # those are checked below, once
                    changed.append(user)
            yield "".join(out) + self._resolved_lines(changed, c.scope.groups)
            if page.delta_link:
                self._users_link = page.delta_link
                break
            page = self._next_page()
        if self._users_link is None:
            return
        added = [{"id": i} for i, removed in self._member_changes.items() if not removed]
        left = [{"id": i} for i, removed in self._member_changes.items() if removed]
        yield self._resolved_lines(added, c.scope.groups, delta_items=False)
        yield self._resolved_lines(left, c.scope.groups, left=True, delta_items=False)

    def links(self) -> tuple[str | None, str | None]:
        return self._users_link, self._groups_link


def plan_sync(context: SyncContext, cursor: Cursor | None) -> Sync:
    """The sync for this scope and cursor (None: a full sync)."""
    if not context.scope.groups:
        return DirectorySync(context, cursor.delta_link if cursor is not None else None)
    if cursor is None or not cursor.groups_link:
        return GroupFullSync(context)
    return GroupIncrementalSync(context, cursor)


def failure_line(error: BaseException, tenant_id: str, pages: int) -> str:
    """The line that ends a stream whose sync failed after the first byte (logged without contact data); a
    shared round ends every listener with the same line."""
    if isinstance(error, GraphUnavailable):
        log.warning("graph unavailable mid-stream", tenantId=tenant_id, pages=pages)
        return ndjson({"op": "error", "code": "graph-unavailable", "retryable": True})
    if isinstance(error, DeltaExpired):
        return ndjson({"op": "error", "code": "resync-required", "retryable": True})
    if isinstance(error, GraphRefused):
        log.warning("graph refused mid-stream", tenantId=tenant_id, pages=pages, graphCode=error.code)
        return ndjson({"op": "error", "code": "graph-refused", "retryable": False})
    if isinstance(error, ScopeCheckFailed):
        log.warning("scope check refused mid-stream", tenantId=tenant_id, pages=pages, status=error.status)
        return ndjson({"op": "error", "code": "graph-refused", "retryable": False})
    log.error("sync failed mid-stream", tenantId=tenant_id, pages=pages, error=type(error).__name__)
    return ndjson({"op": "error", "code": "internal", "retryable": True})
