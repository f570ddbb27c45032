"""Groups, photos and JSON batching of the fake Graph (a mixin of GraphApp; shapes per docs/architecture.md,
"Groups, photos and batching", checked against Microsoft's documentation):

- `GET /v1.0/groups/{id}/transitiveMembers`: users, nested groups, devices, service principals and org
  contacts mixed, each with `@odata.type`; `$select`, `$top` (1..999, default 100) or
  `Prefer: odata.maxpagesize`, `@odata.nextLink`. The cast `/transitiveMembers/microsoft.graph.user` returns
  users only (`/microsoft.graph.group`: groups only) and needs the advanced-query form
  (`ConsistencyLevel: eventual` and `$count=true`, which adds `@odata.count`); without it 400
  `Request_UnsupportedQuery`.
- `GET /v1.0/groups/delta`: `$filter=id eq '…' or id eq '…'` (at most 50, nothing else), `$select`
  (`members` and/or `displayName`) or `$expand=members`; the first round lists each group with
  `members@delta` = its direct members (split over pages for large groups: merge per group), later rounds
  the groups whose membership changed (`@removed: {"reason": "deleted"}` on removed members) and deleted
  groups as `{"id", "@removed": {"reason": "changed"}}`; `$deltatoken=latest` starts from now (not with
  `$filter`: the documentation shows no such combination, so the fake refuses it).
- `POST /v1.0/users/{id}/checkMemberGroups` `{"groupIds": [≤ 20]}` → `{"value": [the transitive ones]}`.
- `GET /v1.0/users/{id}/photo`, `/photos/{size}` (metadata with `@odata.mediaEtag`, `width`, `height`) and
  `…/$value` (`image/jpeg`); no photo, or a size above the uploaded one: 404 `ImageNotFound`.
- `POST /v1.0/$batch`: at most 20 requests (`id`, `method`, relative `url`, `headers`, `body`), answered
  200 with each response's own `status`, `headers` and `body` (binary bodies base64, as Graph does);
  an inner 429 carries its own `Retry-After`.
Resource units (every answer and every inner `$batch` answer says its cost in `x-ms-resource-unit`):
transitiveMembers 5 (4 with `$select`), checkMemberGroups 4 (Graph's cost table), groups/delta 1 (a request
the table does not list), photos 1 (Outlook-bound; counted, not an identity cost); the `$batch` envelope the
sum of its requests' units.
"""

from __future__ import annotations

import base64
import json
import re
import time
import uuid
from typing import Any
from urllib.parse import parse_qs, urlsplit

from .groups import GROUP_TYPE, USER_TYPE
from .httpd import Request, Response
from .photos import SIZE_NAMES, SIZES
from .state import GUID_RE, TenantState

GROUP_ROLES = {"GroupMember.Read.All", "Group.Read.All", "Directory.Read.All", "Group.ReadWrite.All",
               "Directory.ReadWrite.All"}
MAX_BATCH = 20
MAX_CHECK_GROUPS = 20
MAX_DELTA_FILTER_IDS = 50
_FILTER_TERM = re.compile(r"^\s*id\s+eq\s+'([0-9a-fA-F-]{36})'\s*$")
_MAX_PAGE = 999
_DEFAULT_PAGE = 100


class _Headers(dict):
    """Case-insensitive header lookup for batch items (the stdlib Message's `.get`)."""

    def get(self, name: str, default: Any = None) -> Any:  # type: ignore[override]  # case-insensitive, unlike dict.get
        for key, value in self.items():
            if key.lower() == name.lower():
                return value
        return default


def route(method: str, parts: list[str]) -> tuple[str, dict[str, str]] | None:
    """The new targets: (name, path parameters), or None when the path is not one of them."""
    if parts == ["$batch"]:
        return "batch", {}
    if parts[:1] == ["groups"]:
        if len(parts) == 2 and parts[1] in ("delta", "delta()", "microsoft.graph.delta"):
            return "group_delta", {}
        if len(parts) in (3, 4) and parts[2] == "transitiveMembers":
            casts = {"microsoft.graph.user": USER_TYPE, "microsoft.graph.group": GROUP_TYPE}
            if len(parts) == 4 and parts[3] not in casts:
                return None
            return "transitive", {"group": parts[1], "cast": casts[parts[3]] if len(parts) == 4 else ""}
        return None
    if parts[:1] == ["users"] and len(parts) >= 3:
        if len(parts) == 3 and parts[2] in ("checkMemberGroups", "microsoft.graph.checkMemberGroups"):
            return "check_groups", {"user": parts[1]}
        if parts[2] == "photo" and len(parts) in (3, 4):
            value = len(parts) == 4
            if value and parts[3] != "$value":
                return None
            return "photo", {"user": parts[1], "size": "", "value": "1" if value else ""}
        if parts[2] == "photos" and len(parts) in (4, 5):
            value = len(parts) == 5
            if value and parts[4] != "$value":
                return None
            return "photo", {"user": parts[1], "size": parts[3], "value": "1" if value else ""}
    return None


class GroupsAndPhotos:
    """Mixed into GraphApp: needs self.state, _ok, _error, _context, _count_page, _open-like helpers."""

    # ---- shared ------------------------------------------------------------------------------------
    def _require_group_permission(self, claims: dict[str, Any]) -> None:
        from .graph import GraphError

        if not set(claims.get("roles") or []) & GROUP_ROLES:
            raise GraphError(403, "Authorization_RequestDenied", "Insufficient privileges to complete the operation.")

    def _page_size(self, request: Request, query: dict[str, str]) -> int:
        from .graph import _PREFER_MAXPAGESIZE, GraphError

        if "$top" in query:
            try:
                size = int(query["$top"])
            except ValueError:
                raise GraphError(400, "BadRequest", f"Invalid value '{query['$top']}' for $top query option found.") \
                    from None
            if not 1 <= size <= _MAX_PAGE:
                raise GraphError(400, "Request_UnsupportedQuery", f"Invalid page size specified: '{size}'. Must be "
                                                                  f"between 1 and {_MAX_PAGE} inclusive.")
            return size
        match = _PREFER_MAXPAGESIZE.search(request.header("Prefer"))
        return max(1, min(_MAX_PAGE, int(match.group(1)))) if match else _DEFAULT_PAGE

    def _unseal(self, raw: str, kind: str, tenant: TenantState) -> dict[str, Any]:
        from .graph import GraphError

        token = self.state.unseal(raw)
        if token is None or token.get("k") != kind or token.get("t") != tenant.tenant_id:
            raise GraphError(400, "Request_BadRequest", "Invalid $skiptoken value." if kind != "gdl"
                             else "Invalid $deltatoken value.")
        expired = token.get("g") != tenant.directory.generation or token.get("e") != tenant.token_epoch
        if kind == "gdl":
            ttl = float(self.state.setting("delta_token_ttl_seconds", tenant))
            expired = expired or time.time() - float(token.get("ts", 0)) >= ttl
        if expired:
            if kind in ("gd", "gdl"):
                self._expired(tenant, None)
            raise GraphError(400, "Request_BadRequest", "The $skiptoken is no longer valid.")
        return token

    def _seal(self, tenant: TenantState, payload: dict[str, Any]) -> str:
        return self.state.seal({**payload, "t": tenant.tenant_id, "g": tenant.directory.generation,
                                "e": tenant.token_epoch, "ts": time.time()})

    # ---- GET /groups/{id}/transitiveMembers --------------------------------------------------------
    def _transitive(self, request: Request, call, tenant: TenantState, query: dict[str, str],
                    params: dict[str, str]) -> Response:
        from .graph import GraphError, _parse_select

        groups = tenant.groups
        group_id = params["group"].lower()
        if "$skiptoken" in query:
            token = self._unseal(query["$skiptoken"], "tm", tenant)
            select, size, position, cast, count = token["s"], token["m"], token["p"], token["c"], token["n"]
            if token["gid"] != group_id:
                raise GraphError(400, "Request_BadRequest", "Invalid $skiptoken value.")
        else:
            if not GUID_RE.match(group_id) or groups.get(group_id) is None:
                raise GraphError(404, "Request_ResourceNotFound", f"Resource '{params['group']}' does not exist or "
                                                                  "one of its queried reference-property objects are "
                                                                  "not present.")
            cast = params["cast"]
            count = query.get("$count", "").lower() == "true"
            if cast and (request.header("ConsistencyLevel").lower() != "eventual" or not count):
                raise GraphError(400, "Request_UnsupportedQuery",
                                 "The requested query is not supported. It requires the advanced query parameters "
                                 "(ConsistencyLevel: eventual and $count=true).")
            select = _parse_select(query)
            size, position = self._page_size(request, query), 0
        if groups.get(group_id) is None:
            raise GraphError(404, "Request_ResourceNotFound", f"Resource '{group_id}' does not exist.")
        members, _ = groups.transitive(group_id)
        if cast:
            members = [m for m in members if m[0] == cast]
        chunk = members[position:position + size]
        value = [self._directory_object(tenant, entry, select) for entry in chunk]
        page: dict[str, Any] = {"@odata.context": f"{self.state.graph_base}/$metadata#directoryObjects"}
        if count and position == 0:
            page["@odata.count"] = len(members)
        if position + size < len(members):
            skip = self._seal(tenant, {"k": "tm", "gid": group_id, "s": select, "m": size, "p": position + size,
                                       "c": cast, "n": count})
            suffix = "/" + cast.lstrip("#") if cast else ""
            page["@odata.nextLink"] = (f"{self.state.graph_base}/groups/{group_id}/transitiveMembers{suffix}"
                                       f"?$skiptoken={skip}")
        page["value"] = value
        self._count_page(tenant, "graph_transitive_pages", len(value))
        return self._ok(call, page)

    def _directory_object(self, tenant: TenantState, entry: tuple[str, Any], select: list[str] | None) -> dict:
        odata_type, ref = entry
        if odata_type == USER_TYPE:
            from .graph import _project

            user = tenant.directory.user(ref)
            out = {"@odata.type": USER_TYPE}
            out.update(_project(user, select, with_id=True) if user else {"id": tenant.directory.user_id(ref)})
            return out
        out = {"@odata.type": odata_type, "id": ref}
        if select is None or "displayName" in select:
            group = tenant.groups.get(ref) if odata_type == GROUP_TYPE else None
            out["displayName"] = group.display_name if group else None
        return out

    # ---- GET /groups/delta ---------------------------------------------------------------------------
    def _group_delta(self, request: Request, call, tenant: TenantState, query: dict[str, str]) -> Response:
        from .graph import GraphError

        groups = tenant.groups
        size_given = "$top" in query or "odata.maxpagesize" in request.header("Prefer").lower()
        if "$skiptoken" in query:
            token = self._unseal(query["$skiptoken"], "gd", tenant)
        elif query.get("$deltatoken"):
            raw = query["$deltatoken"]
            if raw == "latest":
                if "$filter" in query:  # Graph's documentation shows `latest` only without a filter
                    raise GraphError(400, "Request_UnsupportedQuery",
                                     "fake_microsoft: $deltatoken=latest with $filter is not a documented "
                                     "combination on groups/delta.")
                filter_ids, select = self._group_delta_query(query)
                link = self._seal(tenant, {"k": "gdl", "v": groups.version, "f": filter_ids, "s": select,
                                           "m": _DEFAULT_PAGE})
                page = {"@odata.context": f"{self.state.graph_base}/$metadata#groups",
                        "@odata.deltaLink": f"{self.state.graph_base}/groups/delta?$deltatoken={link}", "value": []}
                self._count_page(tenant, "graph_group_delta_pages", 0)
                return self._ok(call, page)
            link = self._unseal(raw, "gdl", tenant)
            token = {"k": "gd", "r": 1, "from": link["v"], "v": groups.version, "f": link["f"], "s": link["s"],
                     "m": link["m"], "p": 0}
        else:
            filter_ids, select = self._group_delta_query(query)
            token = {"k": "gd", "r": 0, "from": 0, "v": groups.version, "f": filter_ids, "s": select,
                     "m": _DEFAULT_PAGE, "p": 0}
        if size_given:
            token["m"] = self._page_size(request, query)
        wanted = set(self.state.recall_filter(token["f"])) if token["f"] is not None else None
        items = self._group_delta_items(tenant, token, wanted)
        size, position = token["m"], token["p"]
        chosen = items[position:position + size]
        value: list[dict[str, Any]] = []
        for group_id, entry in chosen:  # consecutive entries of one group share one object, as Graph pages do
            if entry == "removed":
                value.append({"id": group_id, "@removed": {"reason": "changed"}})
                continue
            if not value or value[-1].get("id") != group_id or "@removed" in value[-1]:
                obj: dict[str, Any] = {"id": group_id}
                group = groups.get(group_id)
                if token["s"] is None or "displayName" in token["s"]:
                    obj["displayName"] = group.display_name if group else None
                value.append(obj)
            if entry is not None:
                value[-1].setdefault("members@delta", []).append(entry)
        page = {"@odata.context": f"{self.state.graph_base}/$metadata#groups"}
        if position + size < len(items):
            skip = self._seal(tenant, {**token, "p": position + size})
            page["@odata.nextLink"] = f"{self.state.graph_base}/groups/delta?$skiptoken={skip}"
        else:
            link = self._seal(tenant, {"k": "gdl", "v": token["v"], "f": token["f"], "s": token["s"], "m": token["m"]})
            page["@odata.deltaLink"] = f"{self.state.graph_base}/groups/delta?$deltatoken={link}"
        page["value"] = value
        self._count_page(tenant, "graph_group_delta_pages", len(value))
        return self._ok(call, page)

    def _group_delta_query(self, query: dict[str, str]) -> tuple[str | None, list[str] | None]:
        from .graph import GraphError

        filter_ids: Any = None
        if "$filter" in query:
            terms = re.split(r"\s+or\s+", query["$filter"].strip())
            filter_ids = []
            for term in terms:
                match = _FILTER_TERM.match(term)
                if not match:
                    raise GraphError(400, "Request_UnsupportedQuery",
                                     "Unsupported filter on groups/delta: only 'id eq' terms joined by 'or'.")
                filter_ids.append(match.group(1).lower())
            if len(filter_ids) > MAX_DELTA_FILTER_IDS:
                raise GraphError(400, "Request_UnsupportedQuery",
                                 f"The $filter may name at most {MAX_DELTA_FILTER_IDS} ids.")
            filter_ids = self.state.remember_filter(filter_ids)  # tokens carry a short key, as Graph's stay short
        select = None
        if "$select" in query:
            select = [name.strip() for name in query["$select"].split(",") if name.strip()]
            unknown = set(select) - {"members", "displayName", "description", "id"}
            if unknown:
                raise GraphError(400, "BadRequest", f"Could not find a property named '{sorted(unknown)[0]}' on "
                                                    "type 'microsoft.graph.group'.")
            if query.get("$expand", "") == "members" and "members" not in select:
                select.append("members")
        return filter_ids, select

    def _group_delta_items(self, tenant: TenantState, token: dict[str, Any], wanted: set[str] | None
                           ) -> list[tuple[str, Any]]:
        """The round as a flat list of (group id, member entry | None | "removed")."""
        groups, directory = tenant.groups, tenant.directory
        members_wanted = token["s"] is None or "members" in token["s"]
        items: list[tuple[str, Any]] = []

        def entry(odata_type: str, ref: Any, removed: bool) -> dict[str, Any]:
            object_id = directory.user_id(ref) if odata_type == USER_TYPE else ref
            out: dict[str, Any] = {"@odata.type": odata_type, "id": object_id}
            if removed:
                out["@removed"] = {"reason": "deleted"}
            return out

        if token["r"] == 0:
            for group_id in groups.ids():
                if wanted is not None and group_id not in wanted:
                    continue
                group = groups.get(group_id)
                members = groups.direct_members(group) if members_wanted else []
                if not members:
                    items.append((group_id, None))
                items += [(group_id, entry(t, ref, False)) for t, ref in members]
            return items
        for group_id in groups.deleted_between(token["from"], token["v"], wanted):
            items.append((group_id, "removed"))
        for group_id, changes in groups.changes(token["from"], token["v"], wanted).items():
            if groups.get(group_id) is None:
                continue
            if not members_wanted:
                items.append((group_id, None))
                continue
            items += [(group_id, entry(t, ref, removed)) for (t, ref), removed in changes.items()]
        return items

    # ---- POST /users/{id}/checkMemberGroups ----------------------------------------------------------
    def _check_member_groups(self, request: Request, call, tenant: TenantState, params: dict[str, str]) -> Response:
        from .graph import GraphError

        index = self._user_index(tenant, params["user"])
        body = _json_body(request, b"{}")
        group_ids = body.get("groupIds") if isinstance(body, dict) else None
        if not isinstance(group_ids, list) or not group_ids:
            raise GraphError(400, "Request_BadRequest", "Invalid value specified for property 'groupIds'.")
        if len(group_ids) > MAX_CHECK_GROUPS:
            raise GraphError(400, "Request_BadRequest", f"The number of groupIds must not exceed {MAX_CHECK_GROUPS}.")
        if not all(isinstance(g, str) and GUID_RE.match(g) for g in group_ids):
            raise GraphError(400, "Request_BadRequest", "Invalid GUID in groupIds.")
        value = [g for g in group_ids if tenant.groups.is_transitive_member(index, g)]
        self.state.stats.inc("graph_member_checks", tenant.tenant_id)
        return self._ok(call, {"@odata.context": f"{self.state.graph_base}/$metadata#Collection(Edm.String)",
                               "value": value})

    def _user_index(self, tenant: TenantState, ref: str) -> int:
        from .graph import GraphError

        directory = tenant.directory
        index = directory.index_of(ref) if GUID_RE.match(ref) else directory.index_of_upn(ref)
        if index is None or directory.user(index) is None:
            raise GraphError(404, "Request_ResourceNotFound", f"Resource '{ref}' does not exist or one of its "
                                                              "queried reference-property objects are not present.")
        return index

    # ---- photos --------------------------------------------------------------------------------------
    def _photo(self, request: Request, call, tenant: TenantState, params: dict[str, str]) -> Response:
        from .graph import GraphError

        index = self._user_index(tenant, params["user"])
        size_name = params["size"]
        if size_name and size_name.lower() not in SIZE_NAMES:
            raise GraphError(400, "ErrorInvalidImageSize", f"The requested size '{size_name}' is not supported.")
        photos = tenant.photos
        state = photos.state(index)
        requested = int(size_name.lower().split("x")[0]) if size_name else (state[0] if state else 0)
        self.state.stats.inc("graph_photo_requests", tenant.tenant_id)
        delay = float(self.state.setting("photo_delay_seconds", tenant) or 0.0)
        if delay:
            time.sleep(delay)  # inside the in-flight window, so concurrency is observable
        if state is None or requested > state[0]:
            raise GraphError(404, "ImageNotFound", "Exception of type "
                                                   "'Microsoft.Fast.Profile.Core.Exception.ImageNotFoundException' "
                                                   "was thrown.")
        if params["value"]:
            headers = self._headers(call)
            return Response(200, photos.content(index, requested), photos.content_type(index), headers)
        user_id = tenant.directory.user_id(index)
        path = "photo" if not size_name else f"photos('{size_name}')"
        return self._ok(call, {
            "@odata.context": f"{self.state.graph_base}/$metadata#users('{user_id}')/{path}/$entity",
            "@odata.mediaContentType": photos.content_type(index), "@odata.mediaEtag": photos.media_etag(index),
            "id": f"{requested}X{requested}", "width": requested, "height": requested})

    # ---- POST /$batch --------------------------------------------------------------------------------
    def _batch(self, request: Request, call, tenant: TenantState) -> Response:
        from .graph import GraphError

        body = _json_body(request, b"")
        requests_ = body.get("requests") if isinstance(body, dict) else None
        if not isinstance(requests_, list) or not requests_:
            raise GraphError(400, "BadRequest", "Invalid batch payload format.")
        if len(requests_) > MAX_BATCH:
            raise GraphError(400, "BadRequest",
                             f"Number of included requests in the batch must not exceed {MAX_BATCH}.")
        ids = [item.get("id") if isinstance(item, dict) else None for item in requests_]
        if any(not isinstance(i, str) or not i for i in ids) or len(set(ids)) != len(ids):
            raise GraphError(400, "BadRequest", "Each request in a batch needs a unique, non-empty 'id'.")
        self.state.stats.inc("graph_batches", tenant.tenant_id)
        responses = []
        for item in requests_:
            responses.append(self._batch_item(request, item, tenant))
        # The envelope carries what its requests were charged (each inner answer carries its own).
        call.units = sum(int(r["headers"].get("x-ms-resource-unit", 0)) for r in responses)
        return Response.json(200, {"responses": responses}, self._headers(call), content_type="application/json")

    def _batch_item(self, outer: Request, item: dict[str, Any], tenant: TenantState) -> dict[str, Any]:
        from .graph import GraphError, _Call

        inner_call = _Call(str(uuid.uuid4()), "")
        inner_call.client_request_id = inner_call.request_id
        self.state.stats.inc("graph_batch_items", tenant.tenant_id)
        method = str(item.get("method", "GET")).upper()
        url = str(item.get("url", ""))
        if url.startswith("http") or not url or urlsplit(url).path.rstrip("/").endswith("$batch"):
            response = self._error(inner_call, 400, "BadRequest", "Batch request URLs must be relative and must "
                                                                  "not name $batch.")
        else:
            split = urlsplit("/v1.0/" + url.lstrip("/"))
            query = {k: v[-1] for k, v in parse_qs(split.query, keep_blank_values=True).items()}
            headers = _Headers({"Authorization": outer.header("Authorization")})
            headers.update({str(k): str(v) for k, v in (item.get("headers") or {}).items()})
            body = json.dumps(item["body"]).encode() if "body" in item else b""
            inner = Request(method, split.path, split.path + ("?" + split.query if split.query else ""), query,
                            headers, body)
            rule = self.state.take_fault("batch_item", tenant.tenant_id)
            if rule is not None:
                response = self._fault(inner_call, rule, tenant, {})
            else:
                try:
                    response = self._handle(inner, inner_call)
                except GraphError as error:
                    response = self._error(inner_call, error.status, error.code, error.message, error.headers)
        self.state.stats.inc(f"status.batch.{response.status}")
        keep = {"content-type", "retry-after", "x-ms-resource-unit", "x-ms-throttle-limit-percentage",
                "x-ms-throttle-scope", "location"}
        out_headers = {name: value for name, value in response.headers if name.lower() in keep}
        out_headers["Content-Type"] = response.content_type
        if response.content_type.startswith("application/json"):
            payload: Any = json.loads(response.body) if response.body else None
        else:
            payload = base64.b64encode(response.body).decode()
        return {"id": item["id"], "status": response.status, "headers": out_headers, "body": payload}


def _json_body(request: Request, empty: bytes) -> Any:
    """The request's JSON (`empty` stands in for no body), or Graph's 400 for a body that is not JSON."""
    from .graph import GraphError

    try:
        return json.loads(request.body or empty)
    except ValueError:
        raise GraphError(400, "BadRequest", "Unable to read JSON request payload.") from None


__all__ = ["GroupsAndPhotos", "route", "SIZES"]
