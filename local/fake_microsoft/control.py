"""The control API under `/_fake/...`, served by both fakes (see README.md for every route)."""

from __future__ import annotations

from typing import Any

from . import consent
from .directory import MUTABLE_PROPERTIES, REMOVAL_REASONS
from .httpd import Request, Response
from .state import (
    CONSENT_STATES,
    DEFAULT_SETTINGS,
    DELTA_EXPIRED_MODES,
    GUID_RE,
    OPAQUE_PREFIX,
    FakeMicrosoft,
    FaultRule,
    TenantState,
)


class ControlError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def control(state: FakeMicrosoft, request: Request) -> Response:
    try:
        return Response.json(200, _route(state, request))
    except ControlError as error:
        return Response.json(error.status, {"error": str(error)})
    except (ValueError, KeyError, TypeError) as error:
        return Response.json(400, {"error": str(error).strip("'\"")})


def _body(request: Request) -> dict[str, Any]:
    try:
        data = request.json()
    except ValueError:
        raise ControlError(400, "body must be JSON") from None
    if not isinstance(data, dict):
        raise ControlError(400, "body must be a JSON object")
    return data


def _route(state: FakeMicrosoft, request: Request) -> Any:
    parts = [p for p in request.path.split("/") if p][1:]  # drop "_fake"
    method = request.method
    route = "/".join(parts)
    if route in ("health", "") and method == "GET":
        return {"ok": True}
    if route == "info" and method == "GET":
        return {"entra": state.entra_base, "graph": state.graph_base, "client_id": state.primary_client_id,
                "apps": [a.describe() for a in state.apps.values()], "keys": state.keys.describe()}
    if route == "reset" and method == "POST":
        body = _body(request)
        state.reset()
        if body.get("keys"):  # also unpublish every key but the current signing key
            state.keys.retire()
        return {"reset": True, "keys": state.keys.describe()}
    if route == "stats":
        if method == "GET":
            return state.stats.snapshot()
        if method == "DELETE":
            state.stats.reset()
            return state.stats.snapshot()
    if route == "config":
        if method == "GET":
            return _describe_config(state, request.query.get("tenant"))
        if method == "POST":
            return _configure(state, _body(request))
    if route == "keys" and method == "GET":
        return state.keys.describe()
    if route == "rotate-keys" and method == "POST":
        body = _body(request)
        new = state.keys.rotate(retire_old=bool(body.get("retire_old", False)),
                                publish_only=bool(body.get("publish_only", False)))
        return {"new_kid": new.kid, **state.keys.describe()}
    if route == "retire-keys" and method == "POST":
        body = _body(request)
        retired = state.keys.retire(body.get("kid"))
        return {"retired": retired, **state.keys.describe()}
    if route == "use-key" and method == "POST":
        state.keys.use(str(_body(request)["kid"]))
        return state.keys.describe()
    if route == "mint" and method == "POST":
        body = _body(request)
        allowed = {"kind", "tenant", "claims", "header", "key", "alg", "audience", "username", "scopes", "lifetime"}
        unknown = set(body) - allowed
        if unknown:
            raise ControlError(400, f"unknown mint keys {sorted(unknown)}")
        return state.mint(**body)
    if route == "apps" and method == "POST":
        body = _body(request)
        app = state.register_app(str(body["client_id"]), body.get("client_secret"), body.get("display_name"),
                                 body.get("roles"), body.get("scopes"), body.get("redirect_uris"),
                                 body.get("required_scopes"))
        return app.describe()
    if parts[:1] == ["tenants"] and len(parts) >= 2:
        return _tenant_route(state, request, parts[1], parts[2:])
    raise ControlError(404, f"no control route {method} {request.path}")


def _tenant(state: FakeMicrosoft, tenant_id: str) -> TenantState:
    if not GUID_RE.match(tenant_id):
        raise ControlError(400, "tenant must be a GUID")
    tenant = state.tenant(tenant_id)
    assert tenant is not None
    return tenant


def _tenant_route(state: FakeMicrosoft, request: Request, tenant_id: str, rest: list[str]) -> Any:
    tenant = _tenant(state, tenant_id)
    method = request.method
    action = "/".join(rest)
    directory = tenant.directory
    if action == "" and method == "GET":
        return {**tenant.describe(), "demo_user": state.demo_user(tenant.tenant_id) if tenant.exists else None}
    if action == "" and method == "DELETE":
        tenant.exists = False
        return tenant.describe()
    if action == "restore" and method == "POST":
        tenant.exists = True
        return tenant.describe()
    if action == "revoke-consent" and method == "POST":
        mode = _body(request).get("mode", "service_principal")
        if mode not in ("service_principal", "roles"):
            raise ControlError(400, "mode must be service_principal or roles")
        consent.set_consent(state, tenant, "no_service_principal" if mode == "service_principal" else "no_roles")
        return tenant.describe()
    if action == "grant-consent" and method == "POST":
        consent.set_consent(state, tenant, "granted")
        return tenant.describe()
    if action == "consent" and method == "POST":
        body = _body(request)
        unknown = set(body) - {"state", "roles", "scopes"}
        if unknown:
            raise ControlError(400, f"unknown consent keys {sorted(unknown)}")
        value = body.get("state", tenant.consent)
        if value not in CONSENT_STATES:
            raise ControlError(400, f"state must be one of {CONSENT_STATES}")
        roles = body.get("roles")
        if roles is not None and (not isinstance(roles, list) or not all(isinstance(r, str) and r for r in roles)):
            raise ControlError(400, "roles must be a list of permission names (or null: the app's roles)")
        scopes = body.get("scopes")
        if scopes is not None and (not isinstance(scopes, list) or not all(isinstance(n, str) and n for n in scopes)):
            raise ControlError(400, "scopes must be a list of delegated permission names (or null: the app's required)")
        consent.set_consent(state, tenant, value, roles, keep_roles="roles" not in body)
        if "scopes" in body:
            tenant.granted_scopes = None if scopes is None else tuple(scopes)
        return tenant.describe()
    if action == "graph-token" and method == "POST":  # what an opaque Graph token says (the fake's own view)
        token = str(_body(request).get("token", ""))
        sealed = state.unseal(token[len(OPAQUE_PREFIX):]) if token.startswith(OPAQUE_PREFIX) else None
        if sealed is None or sealed.get("k") != "gat" or sealed["c"].get("tid") != tenant.tenant_id:
            raise ControlError(400, "not an opaque Graph token of this tenant")
        return sealed["c"]
    if action == "directory" and method == "POST":
        body = _body(request)
        size = body.get("size", state.settings["default_directory_size"])
        if not isinstance(size, int) or size < 0:
            raise ControlError(400, "size must be a non-negative integer")
        state.replace_directory(tenant.tenant_id, size, str(body.get("salt", "")))
        return tenant.describe()
    if action == "changes" and method == "POST":
        return _apply_changes(directory, _body(request))
    if action == "expire-delta-tokens" and method == "POST":
        tenant.token_epoch += 1
        return tenant.describe()
    if action == "demo-user" and method == "GET":
        user = state.demo_user(tenant.tenant_id)
        if user is None:
            raise ControlError(404, "the tenant has no live user")
        return user
    if rest[:1] == ["groups"]:
        return _group_route(tenant, request, rest[1:])
    if rest[:1] == ["photos"]:
        return _photo_route(tenant, request, rest[1:])
    if rest[:1] == ["users"] and method == "GET":
        if len(rest) == 1:
            offset = int(request.query.get("offset", "0"))
            limit = min(1000, int(request.query.get("limit", "100")))
            users = []
            for index in range(offset, min(directory.total, offset + limit)):
                user = directory.user(index)
                users.append({"index": index, "removed": directory.removal_reason(index), "user": user})
            return {"total": directory.total, "users": users}
        if len(rest) == 2:
            ref = rest[1]
            index = directory.resolve({"index": int(ref)} if ref.isdigit() else
                                      {"userPrincipalName": ref} if "@" in ref else {"id": ref})
            return {"index": index, "removed": directory.removal_reason(index), "user": directory.user(index)}
    raise ControlError(404, f"no control route {method} {request.path}")


def _group_route(tenant: TenantState, request: Request, rest: list[str]) -> Any:
    """POST groups {"id"?, "displayName"?, "users", "groups", "devices", "servicePrincipals", "orgContacts"};
    GET groups; POST groups/{id}/members {"add": {...}, "remove": {...}}; DELETE groups/{id};
    GET groups/{id}/transitive-users (ids of the live users under the group, for checks)."""
    groups, method = tenant.groups, request.method
    if not rest:
        if method == "POST":
            group = groups.create(_body(request))
            return {"id": group.id, "version": groups.version}
        if method == "GET":
            return {"groups": groups.describe(), "version": groups.version}
    elif groups.get(rest[0]) is None:
        raise ControlError(404, "no such group")
    elif len(rest) == 1 and method == "DELETE":
        return {"deleted": rest[0], "version": groups.delete(rest[0])}
    elif rest[1:] == ["members"] and method == "POST":
        body = _body(request)
        unknown = set(body) - {"add", "remove"}
        if unknown:
            raise ControlError(400, f"unknown keys {sorted(unknown)}")
        try:
            if body.get("add"):
                groups.add_members(rest[0], body["add"])
            if body.get("remove"):
                groups.remove_members(rest[0], body["remove"])
        except KeyError as error:
            raise ControlError(404, str(error).strip("'\"")) from None
        return {"version": groups.version}
    elif rest[1:] == ["transitive-users"] and method == "GET":
        members, _ = groups.transitive(rest[0])
        directory = tenant.directory
        return {"ids": [directory.user_id(i) for t, i in members if t == "#microsoft.graph.user"]}
    raise ControlError(404, f"no control route {method} {request.path}")


def _photo_route(tenant: TenantState, request: Request, rest: list[str]) -> Any:
    """POST photos {"set": [{"user": ref, "largest": px}], "remove": [ref]}; GET photos/{ref}."""
    photos, directory = tenant.photos, tenant.directory
    if not rest and request.method == "POST":
        body = _body(request)
        unknown = set(body) - {"set", "remove"}
        if unknown:
            raise ControlError(400, f"unknown keys {sorted(unknown)}")
        done = {"set": [], "removed": []}
        for spec in body.get("set", []):
            done["set"].append(photos.set(_resolve(directory, spec["user"]), int(spec.get("largest", 648)),
                                          str(spec.get("content_type", "image/jpeg"))))
        for ref in body.get("remove", []):
            index = _resolve(directory, ref)
            photos.remove(index)
            done["removed"].append(directory.user_id(index))
        return done
    if len(rest) == 1 and request.method == "GET":
        return photos.describe(_resolve(directory, rest[0]))
    raise ControlError(404, f"no control route {request.method} {request.path}")


def _apply_changes(directory, body: dict[str, Any]) -> dict[str, Any]:
    unknown = set(body) - {"update", "remove", "restore", "add"}
    if unknown:
        raise ControlError(400, f"unknown change kinds {sorted(unknown)}")
    updates = [(_resolve(directory, u), dict(u.get("fields") or {})) for u in body.get("update", [])]
    for _, fields in updates:
        bad = set(fields) - MUTABLE_PROPERTIES
        if bad or not fields:
            raise ControlError(400, f"cannot update {sorted(bad) or 'nothing'}")
    removals = [(_resolve(directory, r), r.get("reason", "deleted") if isinstance(r, dict) else "deleted")
                for r in body.get("remove", [])]
    for _, reason in removals:
        if reason not in REMOVAL_REASONS:
            raise ControlError(400, f"reason must be one of {REMOVAL_REASONS}")
    restores = [_resolve(directory, r) for r in body.get("restore", [])]
    additions = body.get("add", [])
    if isinstance(additions, int):
        additions = [{} for _ in range(additions)]
    for spec in additions:
        bad = set((spec or {}).get("fields") or {}) - MUTABLE_PROPERTIES
        if bad:
            raise ControlError(400, f"cannot set {sorted(bad)}")
    result: dict[str, Any] = {"updated": [], "removed": [], "restored": [], "added": []}
    for index, fields in updates:
        directory.update_user(index, fields)
        result["updated"].append(directory.user_id(index))
    for index, reason in removals:
        directory.remove_user(index, reason)
        result["removed"].append(directory.user_id(index))
    for index in restores:
        directory.restore_user(index)
        result["restored"].append(directory.user_id(index))
    for spec in additions:
        index = directory.add_user(dict((spec or {}).get("fields") or {}))
        result["added"].append(directory.user(index))
    result["version"] = directory.version
    return result


def _resolve(directory, ref: Any) -> int:
    try:
        return directory.resolve(ref)
    except KeyError as error:
        raise ControlError(404, str(error).strip("'\"")) from None


def _describe_config(state: FakeMicrosoft, tenant_id: str | None) -> dict[str, Any]:
    out: dict[str, Any] = {"settings": dict(state.settings), "faults": [f.describe() for f in state.faults]}
    if tenant_id:
        tenant = _tenant(state, tenant_id)
        out["tenant"] = tenant.tenant_id
        out["tenant_settings"] = dict(tenant.settings)
        out["effective"] = {k: state.setting(k, tenant) for k in DEFAULT_SETTINGS}
    return out


def _configure(state: FakeMicrosoft, body: dict[str, Any]) -> dict[str, Any]:
    tenant_id = body.pop("tenant", None)
    faults = body.pop("faults", None)
    replace = bool(body.pop("replace_faults", False) or body.pop("clear_faults", False))
    unknown = set(body) - set(DEFAULT_SETTINGS)
    if unknown:
        raise ControlError(400, f"unknown settings {sorted(unknown)}")
    if "delta_expired_mode" in body and body["delta_expired_mode"] not in DELTA_EXPIRED_MODES:
        raise ControlError(400, f"delta_expired_mode must be one of {DELTA_EXPIRED_MODES}")
    for name in ("page_delay_seconds", "page_latency_seconds", "photo_delay_seconds", "delta_token_ttl_seconds",
                 "consent_replication_seconds"):
        if name in body and (not isinstance(body[name], (int, float)) or body[name] < 0):
            raise ControlError(400, f"{name} must be a non-negative number")
    for name in ("user_roles", "id_token_claims"):
        if name in body and not isinstance(body[name], dict):
            raise ControlError(400, f"{name} must be an object")
    rules = []
    for raw in faults or []:
        if not isinstance(raw, dict):
            raise ControlError(400, "each fault must be an object")
        if tenant_id and "tenant" not in raw:
            raw = {**raw, "tenant": tenant_id}
        rules.append(FaultRule.from_json(raw))
    tenant = _tenant(state, tenant_id) if tenant_id else None
    if tenant is not None:
        if "default_directory_size" in body:
            raise ControlError(400, "default_directory_size is global; use POST /_fake/tenants/{tid}/directory")
        tenant.settings.update(body)
    else:
        state.settings.update(body)
    with state._lock:
        if replace:
            state.faults = [f for f in state.faults if tenant_id and f.tenant != tenant_id.lower()] \
                if tenant_id else []
        state.faults.extend(rules)
    return _describe_config(state, tenant_id)
