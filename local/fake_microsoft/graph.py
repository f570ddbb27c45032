"""The fake Microsoft Graph v1.0 (graph.microsoft.com/v1.0): users, paging and delta.

- `GET /v1.0/users`: default property set without `$select` (department/companyName only with it;
  with `$select` only the selected properties, not even `id`, as Graph does), `$top` default 100,
  1..999 (else 400), pages chained by an absolute `@odata.nextLink` with an opaque `$skiptoken`.
- `GET /v1.0/users/delta`: `$select` on the first call (kept in the tokens), `$top` or
  `Prefer: odata.maxpagesize=N`, pages by `@odata.nextLink` (`$skiptoken`), the last page with
  `@odata.deltaLink` (`$deltatoken`, encodes the directory version and the selection);
  `$deltatoken=latest` starts from now; removed users as `{"id", "@removed": {"reason"}}`;
  a user item carries every selected property that is set (one cleared since as `null`) and leaves out
  properties never set, in both rounds; with `Prefer: return=minimal` incremental rounds carry only the
  changed properties of updated users.
- `GET /v1.0/users/{id}`.
Resource units (`x-ms-resource-unit` on every answer): GET users 2 (1 with `$select`), a user 1, a delta
page 1; `x-ms-throttle-limit-percentage` only above 0.8 of the tenant's budget.
Bearer tokens: the fake Entra ID's opaque Graph tokens (not JWTs, as Microsoft warns Graph's may be: sealed
claims only Graph reads), or JWTs verified like Graph does (RS256 by a published key, aud Graph, tid,
roles); the tenant comes from the token. Errors use Graph's envelope `{"error": {"code", "message", "innerError"}}`.
"""

from __future__ import annotations

import dataclasses
import datetime
import re
import time
import uuid
from dataclasses import dataclass
from typing import Any

import jwt

from . import consent
from .directory import DEFAULT_PROPERTIES, KNOWN_PROPERTIES, Directory
from .graph_groups import GroupsAndPhotos
from .graph_groups import route as route_groups_and_photos
from .httpd import Request, Response
from .state import GRAPH_APP_ID, GRAPH_AUDIENCE, GUID_RE, OPAQUE_PREFIX, FakeMicrosoft, FaultRule, TenantState

CONTENT_TYPE = ("application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;"
                "charset=utf-8")
DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 999
READ_ROLES = {"User.Read.All", "User.ReadWrite.All", "Directory.Read.All", "Directory.ReadWrite.All"}
READ_SCOPES = READ_ROLES | {"User.ReadBasic.All"}
DELTA_PATHS = {"/users/delta", "/users/delta()", "/users/microsoft.graph.delta", "/users/microsoft.graph.delta()"}
UNSUPPORTED_OPTIONS = ("$filter", "$orderby", "$search", "$expand", "$count", "$format", "$apply")
_PREFER_MAXPAGESIZE = re.compile(r"odata\.maxpagesize\s*=\s*(\d+)", re.IGNORECASE)
_AGS = ('{"ServerInfo":{"DataCenter":"Germany West Central","Slice":"E","Ring":"4","ScaleUnit":"000",'
        '"RoleInstance":"FR1PEPF0000FAKE"}}')


@dataclass
class _Call:
    request_id: str
    client_request_id: str
    units: int = 1  # what the answer says it cost (`x-ms-resource-unit`); set once the request is charged
    started: float = dataclasses.field(default_factory=time.monotonic)

    def latency(self, state: FakeMicrosoft, tenant: TenantState) -> float:
        """The wait that makes a page take `page_latency_seconds` in all (its own making included)."""
        target = float(state.setting("page_latency_seconds", tenant) or 0.0)
        return max(0.0, target - (time.monotonic() - self.started))


class GraphError(Exception):
    def __init__(self, status: int, code: str, message: str, headers: list[tuple[str, str]] | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or []


# Groups, photos and $batch (graph_groups.py): fault target and resource units per target.
_EXTRA_FAULT_TARGETS = {"transitive": "groups", "group_delta": "groups", "check_groups": "groups",
                        "photo": "photos", "batch": "batch"}
_GROUP_TARGETS = ("transitive", "group_delta", "check_groups")


class GraphApp(GroupsAndPhotos):
    def __init__(self, state: FakeMicrosoft) -> None:
        self.state = state

    def __call__(self, request: Request) -> Response:
        stats = self.state.stats
        stats.inc("graph_requests")
        priority = (request.header("x-ms-throttle-priority") or "").lower()
        stats.inc(f"priority.{priority if priority in ('low', 'high') else 'normal'}")  # Graph's rule: else normal
        call = _Call(str(uuid.uuid4()), request.header("client-request-id") or "")
        call.client_request_id = call.client_request_id or call.request_id
        photo_bound = "/photo" in request.path or request.path.endswith("/$batch")
        if photo_bound:
            stats.track_in_flight("photo_requests", +1)
        try:
            response = self._handle(request, call)
        except GraphError as error:
            response = self._error(call, error.status, error.code, error.message, error.headers)
        finally:
            if photo_bound:
                stats.track_in_flight("photo_requests", -1)
        stats.inc(f"status.{response.status}")
        return response

    # ---- the request pipeline --------------------------------------------------------------------
    def _handle(self, request: Request, call: _Call) -> Response:
        if not request.path.startswith("/v1.0/"):
            raise GraphError(400, "BadRequest", f"Invalid version: {request.path.strip('/').split('/')[0]}")
        resource = request.path[len("/v1.0"):].rstrip("/") or "/"
        extra = route_groups_and_photos(request.method, resource.strip("/").split("/"))
        params: dict[str, str] = {}
        if resource == "/users":
            target = "users"
        elif resource in DELTA_PATHS:
            target = "delta"
        elif extra is not None:
            target, params = extra
        elif resource.startswith("/users/") and resource.count("/") == 2:
            target = "user"
        else:
            segment = resource.strip("/").split("/")[0] or "v1.0"
            raise GraphError(400, "BadRequest", f"Resource not found for the segment '{segment}'.")
        allowed = ("POST",) if target in ("batch", "check_groups") else ("GET", "HEAD")
        if request.method not in allowed:
            raise GraphError(405, "Request_BadRequest", "Specified HTTP method is not allowed for the request target.")

        claims = self._authenticate(request)
        tenant = self.state.known_tenant(claims["tid"])
        if tenant is None:
            raise GraphError(401, "InvalidAuthenticationToken", "Access token validation failure.",
                             [self._www_authenticate()])
        if target in _EXTRA_FAULT_TARGETS:
            return self._handle_extra(request, call, tenant, claims, target, params)
        query = _options(request.query, allow_filter=target == "users")
        continuation = "$skiptoken" in query
        rule = self.state.take_fault("delta" if target == "delta" else "users", tenant.tenant_id, continuation)
        if rule is not None and rule.status != "disconnect":
            return self._fault(call, rule, tenant, claims)

        # Graph's cost table: GET users 2 resource units, 1 with $select; GET users/{id} 1; a delta page 1.
        call.units = 1 if (target != "users" or "$select" in query or continuation) else 2
        ids = _id_filter(query["$filter"]) if "$filter" in query else None
        retry_after, ratio = self.state.charge_resource_units(tenant, call.units)
        if retry_after is not None:
            return self._throttled(call, retry_after, tenant, claims)
        if target == "user":
            response = self._single_user(request, call, tenant, query, resource.split("/")[2])
        else:
            if ids is not None:
                response = self._users_by_id(call, tenant, query, ids)
            elif target == "users":
                response = self._list_users(request, call, tenant, query)
            else:
                response = self._delta(request, call, tenant, query)
            response.delay = float(self.state.setting("page_delay_seconds", tenant) or 0.0)
            response.delay += call.latency(self.state, tenant)
        if ratio > 0.8:  # Graph sends it only above 0.8 of the budget
            response.headers.append(("x-ms-throttle-limit-percentage", f"{ratio:.1f}"))
        if rule is not None:  # "disconnect": the real page, cut off half-way
            response.truncate = True
            response.delay += rule.delay_seconds
        return response

    def _handle_extra(self, request: Request, call: _Call, tenant: TenantState, claims: dict[str, Any],
                      target: str, params: dict[str, str]) -> Response:
        """Groups, photos and $batch (graph_groups.py) after authentication."""
        if target in _GROUP_TARGETS:
            self._require_group_permission(claims)
        options = _group_options(request.query) if target in ("transitive", "group_delta") else {}
        continuation = "$skiptoken" in options
        rule = self.state.take_fault(_EXTRA_FAULT_TARGETS[target], tenant.tenant_id, continuation)
        if rule is not None and rule.status != "disconnect":
            return self._fault(call, rule, tenant, claims)
        if target == "batch":
            return self._batch(request, call, tenant)
        # checkMemberGroups 4 (Graph's cost table); a request the table does not list 1.
        call.units = {"transitive": 4 if "$select" in options or continuation else 5,
                      "check_groups": 4}.get(target, 1)
        retry_after, ratio = self.state.charge_resource_units(tenant, call.units)
        if retry_after is not None:
            return self._throttled(call, retry_after, tenant, claims)
        if target == "transitive":
            response = self._transitive(request, call, tenant, options, params)
        elif target == "group_delta":
            response = self._group_delta(request, call, tenant, options)
        elif target == "check_groups":
            response = self._check_member_groups(request, call, tenant, params)
        else:
            response = self._photo(request, call, tenant, params)
        if ratio > 0.8:  # Graph sends it only above 0.8 of the budget
            response.headers.append(("x-ms-throttle-limit-percentage", f"{ratio:.1f}"))
        if target in ("transitive", "group_delta"):
            response.delay = float(self.state.setting("page_delay_seconds", tenant) or 0.0)
            response.delay += call.latency(self.state, tenant)
        if rule is not None:
            response.truncate = True
            response.delay += rule.delay_seconds
        return response

    def _authenticate(self, request: Request) -> dict[str, Any]:
        def fail(message: str) -> GraphError:
            return GraphError(401, "InvalidAuthenticationToken", message, [self._www_authenticate()])

        authorization = request.header("Authorization").strip()
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if not authorization or scheme.lower() != "bearer" or not token:
            raise fail("Access token is empty.")
        if token.startswith(OPAQUE_PREFIX):  # what the fake Entra ID issues for Graph: not a JWT
            return self._opaque(token, fail)
        if token.count(".") != 2:
            raise fail("IDX14100: JWT is not well formed, there are no dots (.).\nThe token needs to be in JWS or "
                       "JWE Compact Serialization Format. (JWS): 'EncodedHeader.EndcodedPayload.EncodedSignature'. "
                       "(JWE): 'EncodedProtectedHeader.EncodedEncryptedKey.EncodedInitializationVector."
                       "EncodedCiphertext.EncodedAuthenticationTag'.")
        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise fail("Invalid JWT token. Unable to decode the token.") from None
        if header.get("alg") != "RS256" or not isinstance(header.get("kid"), str):
            raise fail("Access token validation failure.")
        key = self.state.keys.find(header["kid"])
        if key is None:
            raise fail("Access token validation failure. Invalid signing key.")
        tid = str(unverified.get("tid", ""))
        if not GUID_RE.match(tid):
            raise fail("Access token validation failure. Invalid tenant.")
        issuers = {self.state.issuer_v1(tid), self.state.issuer_v2(tid)}
        try:
            claims = jwt.decode(token, key.private_key.public_key(), algorithms=["RS256"],
                                audience=[GRAPH_AUDIENCE, GRAPH_AUDIENCE + "/", GRAPH_APP_ID], leeway=300,
                                options={"require": ["exp", "nbf", "iat", "aud", "iss", "tid"]})
        except jwt.ExpiredSignatureError:
            raise fail("Lifetime validation failed, the token is expired.") from None
        except jwt.ImmatureSignatureError:
            raise fail("Lifetime validation failed, the token is not yet valid.") from None
        except jwt.InvalidAudienceError:
            raise fail("Access token validation failure. Invalid audience.") from None
        except jwt.PyJWTError:
            raise fail("Access token validation failure.") from None
        if claims.get("iss") not in issuers:
            raise fail("Access token validation failure. Invalid issuer.")
        return self._authorise(claims, tid)

    def _opaque(self, token: str, fail) -> dict[str, Any]:
        """An opaque Graph token of the fake Entra ID: sealed claims, checked like a JWT's."""
        sealed = self.state.unseal(token[len(OPAQUE_PREFIX):])
        claims = sealed.get("c") if sealed is not None and sealed.get("k") == "gat" else None
        if not isinstance(claims, dict):
            raise fail("Access token validation failure. Invalid token.")
        tid = str(claims.get("tid", ""))
        now = time.time()
        if not GUID_RE.match(tid) or claims.get("iss") not in {self.state.issuer_v1(tid), self.state.issuer_v2(tid)}:
            raise fail("Access token validation failure. Invalid issuer.")
        if float(claims.get("exp", 0)) + 300 < now:
            raise fail("Lifetime validation failed, the token is expired.")
        if float(claims.get("nbf", 0)) - 300 > now:
            raise fail("Lifetime validation failed, the token is not yet valid.")
        return self._authorise(claims, tid)

    def _authorise(self, claims: dict[str, Any], tid: str) -> dict[str, Any]:
        roles = set(claims.get("roles") or [])
        scopes = set(str(claims.get("scp") or "").split())
        if not (roles & READ_ROLES or scopes & READ_SCOPES) or consent.graph_refusal(self.state, claims):
            raise GraphError(403, "Authorization_RequestDenied", "Insufficient privileges to complete the operation.")
        claims["tid"] = tid.lower()
        return claims

    def _www_authenticate(self) -> tuple[str, str]:
        return ("WWW-Authenticate", f'Bearer realm="", authorization_uri="{self.state.entra_base}/common/oauth2/'
                                    f'authorize", client_id="{GRAPH_APP_ID}"')

    # ---- GET /users ------------------------------------------------------------------------------
    def _list_users(self, request: Request, call: _Call, tenant: TenantState, query: dict[str, str]) -> Response:
        directory = tenant.directory
        state = self.state
        if "$skiptoken" in query:
            token = self._open(query["$skiptoken"], "u", tenant, delta=False)
            select, size, start, total = token["s"], token["n"], token["p"], token["N"]
            top_given = token.get("x")
        else:
            select = _parse_select(query)
            size = _page_size(query, request, allow_prefer=False)[0]
            start, total = 0, directory.total
            top_given = "$top" in query
        repeat = bool(state.setting("repeat_items", tenant))
        rows, next_index = _scan(directory, start, size, total, include_removed=False, repeat=repeat)
        users_only = [(i, u) for i, u, _ in rows if u is not None]
        value = [_project(u, select, with_id=False) for _, u in users_only]
        page: dict[str, Any] = {"@odata.context": self._context(select)}
        if next_index < total:
            skip = state.seal({"k": "u", "t": tenant.tenant_id, "g": directory.generation, "e": tenant.token_epoch,
                               "p": next_index, "N": total, "s": select, "n": size, "x": top_given,
                               "ts": time.time()})
            params = []
            if select is not None:
                params.append(f"$select={','.join(select)}")
            if top_given:
                params.append(f"$top={size}")
            params.append(f"$skiptoken={skip}")
            page["@odata.nextLink"] = f"{state.graph_base}/users?{'&'.join(params)}"
        page["value"] = value
        self._count_page(tenant, "graph_users_pages", len(value))
        return self._ok(call, page)

    def _users_by_id(self, call: _Call, tenant: TenantState, query: dict[str, str], ids: list[str]) -> Response:
        """GET /users?$filter=id in ('…',…): the existing users among `ids` (deleted ones are left out), in
        directory order, one page (15 IDs at most)."""
        directory = tenant.directory
        select = _parse_select(query)
        indexes = sorted({i for i in (directory.index_of(ref) for ref in ids) if i is not None})
        value = [_project(user, select, with_id=False) for user in (directory.user(i) for i in indexes) if user]
        self.state.stats.inc("graph_users_by_id", tenant.tenant_id, len(value))  # users answered
        return self._ok(call, {"@odata.context": self._context(select), "value": value})

    def _single_user(self, request: Request, call: _Call, tenant: TenantState, query: dict[str, str],
                     ref: str) -> Response:
        directory = tenant.directory
        index = directory.index_of(ref) if GUID_RE.match(ref) else directory.index_of_upn(ref)
        user = directory.user(index) if index is not None else None
        if user is None:
            raise GraphError(404, "Request_ResourceNotFound", f"Resource '{ref}' does not exist or one of its "
                                                             "queried reference-property objects are not present.")
        select = _parse_select(query)
        body = {"@odata.context": self._context(select, entity=True), **_project(user, select, with_id=False)}
        return self._ok(call, body)

    # ---- GET /users/delta ------------------------------------------------------------------------
    def _delta(self, request: Request, call: _Call, tenant: TenantState, query: dict[str, str]) -> Response:
        directory = tenant.directory
        state = self.state
        prefer_size, prefer_applied = None, None
        if "$top" in query or _PREFER_MAXPAGESIZE.search(request.header("Prefer")):
            prefer_size, prefer_applied = _page_size(query, request, allow_prefer=True)

        if "$skiptoken" in query:
            token = self._open(query["$skiptoken"], "d", tenant, delta=True)
        elif "$deltatoken" in query and query["$deltatoken"] not in ("",):
            raw = query["$deltatoken"]
            if raw == "latest":
                select = _parse_select(query)
                page = {"@odata.context": self._context(select), "value": [],
                        "@odata.deltaLink": self._delta_link(tenant, directory.version, select)}
                self._count_page(tenant, "graph_delta_pages", 0)
                return self._ok(call, page)
            link = self._open(raw, "dl", tenant, delta=True)
            token = {"k": "d", "r": 1, "f": link["v"], "v": directory.version, "p": 0, "s": link["s"],
                     "m": link.get("m", DEFAULT_PAGE_SIZE)}
        else:  # first call of a full round ($deltatoken= empty is what a 410 Location asks for)
            token = {"k": "d", "r": 0, "v": directory.version, "N": directory.total, "p": 0,
                     "s": _parse_select(query), "m": DEFAULT_PAGE_SIZE}
        if prefer_size is not None:
            token["m"] = prefer_size
        select, size, start = token["s"], token["m"], token["p"]
        repeat = bool(state.setting("repeat_items", tenant))

        value: list[dict[str, Any]] = []
        if token["r"] == 0:
            include_removed = bool(state.setting("delta_initial_removed", tenant))
            rows, next_pos = _scan(directory, start, size, token["N"], include_removed, repeat)
            for index, user, reason in rows:
                value.append(_removed(directory, index, reason) if user is None
                             else _delta_item(directory, index, user, select))
            more = next_pos < token["N"]
        else:
            items = directory.changes(token["f"], token["v"], aggregate=not repeat)
            if repeat and 0 < start < len(items) and size > 1:  # repeat the previous page's last item
                end = min(len(items), start + size - 1)
                chosen = [items[start - 1], *items[start:end]]
            else:
                end = min(len(items), start + size)
                chosen = items[start:end]
            minimal = ("return=minimal" in request.header("Prefer").replace(" ", "").lower() or token.get("min")
                       or state.setting("delta_return_minimal", tenant))
            if minimal:
                token["min"] = True
            for item in chosen:
                rendered = _render_change(directory, item, select, bool(minimal))
                if rendered is not None:
                    value.append(rendered)
            next_pos, more = end, end < len(items)

        page: dict[str, Any] = {"@odata.context": self._context(select)}
        if more:
            token = {**token, "p": next_pos}
            skip = state.seal({**token, "t": tenant.tenant_id, "g": directory.generation, "e": tenant.token_epoch,
                               "ts": time.time()})
            page["@odata.nextLink"] = f"{state.graph_base}/users/delta?$skiptoken={skip}"
        else:
            page["@odata.deltaLink"] = self._delta_link(tenant, token["v"], select, size)
        page["value"] = value
        self._count_page(tenant, "graph_delta_pages", len(value))
        response = self._ok(call, page)
        if prefer_applied:
            response.headers.append(("Preference-Applied", prefer_applied))
        return response

    def _delta_link(self, tenant: TenantState, version: int, select: list[str] | None, size: int | None = None) -> str:
        token = self.state.seal({"k": "dl", "t": tenant.tenant_id, "g": tenant.directory.generation,
                                 "e": tenant.token_epoch, "v": version, "s": select,
                                 "m": size or DEFAULT_PAGE_SIZE, "ts": time.time()})
        return f"{self.state.graph_base}/users/delta?$deltatoken={token}"

    def _open(self, raw: str, kind: str, tenant: TenantState, delta: bool) -> dict[str, Any]:
        """Unseal a skip/delta token of this tenant, or raise the error Graph would answer."""
        token = self.state.unseal(raw)
        name = "$deltatoken" if kind == "dl" else "$skiptoken"
        if token is None or token.get("k") != kind or token.get("t") != tenant.tenant_id:
            raise GraphError(400, "Request_BadRequest", f"Invalid {name} value.")
        expired = token.get("g") != tenant.directory.generation or token.get("e") != tenant.token_epoch
        if kind == "dl":  # delta links live `delta_token_ttl_seconds` (7 days at Graph)
            ttl = float(self.state.setting("delta_token_ttl_seconds", tenant))
            expired = expired or time.time() - float(token.get("ts", 0)) >= ttl
        if expired:
            if not delta:
                raise GraphError(400, "Request_BadRequest", "The $skiptoken is no longer valid.")
            self._expired(tenant, token.get("s"))
        return token

    def _expired(self, tenant: TenantState, select: list[str] | None) -> None:
        if self.state.setting("delta_expired_mode", tenant) == "410":
            location = f"{self.state.graph_base}/users/delta?"
            if select is not None:
                location += f"$select={','.join(select)}&"
            raise GraphError(410, "resyncRequired",
                             "The delta token is no longer valid. Restart the synchronization from the Location "
                             "header.", [("Location", location + "$deltatoken=")])
        raise GraphError(400, "syncStateNotFound",
                         "The sync state generation is not found. The delta token is expired and data must be "
                         "synchronized again.")

    # ---- responses -------------------------------------------------------------------------------
    def _context(self, select: list[str] | None, entity: bool = False) -> str:
        suffix = f"({','.join(select)})" if select is not None else ""
        return f"{self.state.graph_base}/$metadata#users{suffix}{'/$entity' if entity else ''}"

    def _count_page(self, tenant: TenantState, kind: str, items: int) -> None:
        stats = self.state.stats
        stats.inc("graph_pages", tenant.tenant_id)
        stats.inc(kind, tenant.tenant_id)
        stats.inc("graph_items_served", tenant.tenant_id, items)

    def _headers(self, call: _Call) -> list[tuple[str, str]]:
        return [("Cache-Control", "no-cache"), ("Vary", "Accept-Encoding"),
                ("Strict-Transport-Security", "max-age=31536000"), ("request-id", call.request_id),
                ("client-request-id", call.client_request_id), ("x-ms-ags-diagnostic", _AGS),
                ("x-ms-resource-unit", str(call.units)), ("OData-Version", "4.0")]

    def _ok(self, call: _Call, payload: dict[str, Any]) -> Response:
        return Response.json(200, payload, self._headers(call), content_type=CONTENT_TYPE)

    def _error(self, call: _Call, status: int, code: str, message: str,
               headers: list[tuple[str, str]] | None = None) -> Response:
        body = {"error": {"code": code, "message": message, "innerError": {
            "date": _graph_date(), "request-id": call.request_id, "client-request-id": call.client_request_id}}}
        return Response.json(status, body, self._headers(call) + list(headers or []), content_type=CONTENT_TYPE)

    def _throttled(self, call: _Call, retry_after: Any, tenant: TenantState, claims: dict[str, Any]) -> Response:
        body = {"error": {"code": "TooManyRequests", "innerError": {
            "code": "429", "date": _graph_date(), "message": "Please retry after", "request-id": call.request_id,
            "status": "429"}, "message": "Please retry again later."}}
        headers = self._headers(call) + [
            ("x-ms-throttle-scope", f"Tenant_Application/ReadOnly/{claims.get('appid', '')}/{tenant.tenant_id}"),
            ("x-ms-throttle-information", "ResourceUnitLimitExceeded")]
        if retry_after is not None:
            headers.insert(0, ("Retry-After", str(retry_after)))
        return Response.json(429, body, headers, content_type=CONTENT_TYPE)

    def _fault(self, call: _Call, rule: FaultRule, tenant: TenantState, claims: dict[str, Any]) -> Response:
        status = int(rule.status)
        if status == 429 and rule.code is None and rule.message is None:
            response = self._throttled(call, rule.retry_after, tenant, claims)
        else:
            code, message = _FAULT_BODIES.get(status, ("UnknownError", ""))
            headers = [("Retry-After", str(rule.retry_after))] if rule.retry_after is not None else []
            response = self._error(call, status, rule.code or code, rule.message if rule.message is not None
                                   else message, headers)
        response.delay = rule.delay_seconds
        return response


_FAULT_BODIES = {
    400: ("BadRequest", "Bad request."),
    401: ("InvalidAuthenticationToken", "Access token validation failure."),
    403: ("Authorization_RequestDenied", "Insufficient privileges to complete the operation."),
    404: ("Request_ResourceNotFound", "Resource not found."),
    429: ("TooManyRequests", "Please retry again later."),
    500: ("generalException", "General exception while processing."),
    502: ("UnknownError", "Bad gateway."),
    503: ("serviceNotAvailable", "Service unavailable"),
    504: ("UnknownError", "The request timed out."),
}


def _graph_date() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S")


def _options(query: dict[str, str], allow_filter: bool = False) -> dict[str, str]:
    """OData system query options; Graph v1.0 accepts them with or without the '$'. `allow_filter`: GET
    /users, where the fake implements `$filter=id in (…)` (and `id eq '…'`) only."""
    options: dict[str, str] = {}
    for key, value in query.items():
        name = key if key.startswith("$") else f"${key}"
        options[name.lower() if name.lower() in ("$select", "$top", "$skiptoken", "$deltatoken", "$skip", "$filter")
                else name] = value
    for name in UNSUPPORTED_OPTIONS:
        if name in options and not (name == "$filter" and allow_filter):
            raise GraphError(400, "Request_UnsupportedQuery", f"fake_microsoft does not implement {name}.")
    if "$skip" in options:
        raise GraphError(400, "Request_BadRequest", "'$skip' is not supported by the service.")
    return options


_ID_FILTER = re.compile(r"\s*id\s+(?:in\s*\((?P<many>[^)]*)\)|eq\s+(?P<one>'[^']*'))\s*", re.IGNORECASE)
_QUOTED = re.compile(r"\s*'([^']*)'\s*")
MAX_IN_VALUES = 15  # Graph's limit for `in` without advanced queries ("known issues": query parameters)


def _id_filter(expression: str) -> list[str]:
    """The IDs of `id in ('a','b')` / `id eq 'a'`; Graph's 400s for more than 15 values and for what the fake
    does not implement."""
    match = _ID_FILTER.fullmatch(expression)
    if match is None:
        raise GraphError(400, "Request_UnsupportedQuery", "fake_microsoft implements only $filter=id in (...) "
                                                         "and id eq '...' on users.")
    if match.group("one") is not None:
        return [match.group("one")[1:-1]]
    values = match.group("many").split(",")
    ids = []
    for value in values:
        quoted = _QUOTED.fullmatch(value)
        if quoted is None:
            raise GraphError(400, "BadRequest", "Invalid filter clause: syntax error in the 'in' list.")
        ids.append(quoted.group(1))
    if len(ids) > MAX_IN_VALUES:
        raise GraphError(400, "Request_UnsupportedQuery",
                         f"Too many child clauses specified in search filter expression containing 'OR' operators: "
                         f"{len(ids)}. Max allowed: {MAX_IN_VALUES}.")
    return ids


def _group_options(query: dict[str, str]) -> dict[str, str]:
    """OData options of group requests ($filter, $count and $expand are theirs to check)."""
    options: dict[str, str] = {}
    for key, value in query.items():
        name = key if key.startswith("$") else f"${key}"
        options[name.lower()] = value
    for name in ("$orderby", "$search", "$format", "$apply", "$skip"):
        if name in options:
            raise GraphError(400, "Request_UnsupportedQuery", f"fake_microsoft does not implement {name} here.")
    return options


def _parse_select(query: dict[str, str]) -> list[str] | None:
    raw = query.get("$select")
    if raw is None:
        return None
    names = [name.strip() for name in raw.split(",") if name.strip()]
    if not names:
        raise GraphError(400, "BadRequest", "Invalid $select: the select list is empty.")
    known = {p.lower(): p for p in KNOWN_PROPERTIES}
    out: list[str] = []
    for name in names:
        canonical = known.get(name.lower())
        if canonical is None:
            raise GraphError(400, "BadRequest", f"Parsing OData Select and Expand failed: Could not find a property "
                                                f"named '{name}' on type 'microsoft.graph.user'.")
        if canonical not in out:
            out.append(canonical)
    return out


def _page_size(query: dict[str, str], request: Request, allow_prefer: bool) -> tuple[int, str | None]:
    if "$top" in query:
        raw = query["$top"]
        try:
            size = int(raw)
        except ValueError:
            raise GraphError(400, "BadRequest", f"Invalid value '{raw}' for $top query option found.") from None
        if not 1 <= size <= MAX_PAGE_SIZE:
            raise GraphError(400, "Request_UnsupportedQuery",
                             f"Invalid page size specified: '{size}'. Must be between 1 and {MAX_PAGE_SIZE} inclusive.")
        return size, None
    match = _PREFER_MAXPAGESIZE.search(request.header("Prefer")) if allow_prefer else None
    if match:
        size = max(1, min(MAX_PAGE_SIZE, int(match.group(1))))
        return size, f"odata.maxpagesize={size}"
    return DEFAULT_PAGE_SIZE, None


def _scan(directory: Directory, start: int, size: int, total: int, include_removed: bool, repeat: bool
          ) -> tuple[list[tuple[int, dict[str, Any] | None, str | None]], int]:
    """Up to `size` users from index `start` (removed ones skipped, or listed when asked)."""
    rows: list[tuple[int, dict[str, Any] | None, str | None]] = []
    if repeat and start > 0 and size > 1:  # repeat the previous page's last item
        previous = start - 1
        while previous >= 0:
            user = directory.user(previous)
            reason = directory.removal_reason(previous)
            if user is not None or (include_removed and reason):
                rows.append((previous, user, reason if user is None else None))
                break
            previous -= 1
    index = start
    while index < total and len(rows) < size:
        user = directory.user(index)
        if user is not None:
            rows.append((index, user, None))
        elif include_removed:
            reason = directory.removal_reason(index)
            if reason:
                rows.append((index, None, reason))
        index += 1
    return rows, index


def _project(user: dict[str, Any], select: list[str] | None, with_id: bool) -> dict[str, Any]:
    names = DEFAULT_PROPERTIES if select is None else select
    out = {name: user[name] for name in names}
    if with_id and "id" not in out:
        out["id"] = user["id"]
    return out


def _removed(directory: Directory, index: int, reason: str | None) -> dict[str, Any]:
    return {"id": directory.user_id(index), "@removed": {"reason": reason or "deleted"}}


def _delta_item(directory: Directory, index: int, user: dict[str, Any], select: list[str] | None) -> dict[str, Any]:
    """A user as a delta item carries it (without `Prefer: return=minimal`): every selected property that is
    set, a property cleared since it was set as `null`, and no property that was never set."""
    names = DEFAULT_PROPERTIES if select is None else select
    cleared = directory.cleared(index)
    out = {name: user[name] for name in names if user[name] is not None or name in cleared}
    out["id"] = user["id"]
    return out


def _render_change(directory: Directory, item, select: list[str] | None, minimal: bool = False
                   ) -> dict[str, Any] | None:
    if item.removed:
        return _removed(directory, item.index, item.removed)
    user = directory.user(item.index)
    if user is None:
        return None
    if item.full:
        return _delta_item(directory, item.index, user, select)
    names = DEFAULT_PROPERTIES if select is None else select
    changed = [name for name in names if name in item.fields]
    if not changed:
        return None  # only unselected properties changed: not part of this round
    if not minimal:
        return _delta_item(directory, item.index, user, select)
    out = {name: user[name] for name in changed}  # `Prefer: return=minimal`: only what changed
    out["id"] = user["id"]
    return out
