"""The fake Microsoft Entra ID (login.microsoftonline.com), at the real paths.

- `GET /{tenant}/v2.0/.well-known/openid-configuration` (tenant: GUID, `common`, `organizations`, or a
  known tenant's domain) and the v1 `GET /{tenant}/.well-known/openid-configuration`.
- `GET /common/discovery/v2.0/keys` and `/{tenant}/discovery/v2.0/keys` (keys with the `issuer`
  template), `GET /common/discovery/keys` (v1, no `issuer`).
- `POST /{tenant}/oauth2/v2.0/token`: `client_credentials` (app tokens for Graph), `password`
  (directory users sign in to our API) and `refresh_token`.
- `GET /common/userrealm/{username}` (MSAL asks it before the password grant),
  `GET|POST /{tenant}/v2.0/adminconsent` and `/{tenant}/adminconsent` (the consent page: consent.py).
Errors carry the real body: error, error_description ("AADSTSnnnn: …\\r\\nTrace ID: …"),
error_codes, timestamp, trace_id, correlation_id, error_uri.
"""

from __future__ import annotations

import datetime
import json
import time
import uuid
from typing import Any
from urllib.parse import parse_qs

from . import consent
from .authorize import Authorization
from .httpd import Request, Response
from .keys import b64url
from .state import GRAPH_APP_ID, GRAPH_AUDIENCE, GUID_RE, FakeMicrosoft, FaultRule, TenantState

OIDC_SCOPES = {"openid", "profile", "offline_access", "email"}
GRAPH_RESOURCES = {GRAPH_AUDIENCE, GRAPH_AUDIENCE + "/", GRAPH_APP_ID, "https://graph.microsoft.com/v1.0"}
_NO_STORE = [("Cache-Control", "no-store, no-cache"), ("Pragma", "no-cache")]


class EntraApp:
    def __init__(self, state: FakeMicrosoft) -> None:
        self.state = state
        self.authorization = Authorization(state, self._error)

    # ---- routing ---------------------------------------------------------------------------------
    def __call__(self, request: Request) -> Response:
        parts = [p for p in request.path.split("/") if p]
        method = request.method
        if len(parts) >= 2 and parts[-2:] == [".well-known", "openid-configuration"] and method == "GET":
            if len(parts) == 4 and parts[1] == "v2.0":
                return _apply(self._guard("openid", parts[0]),
                              lambda: self.openid_configuration(request, parts[0], v2=True))
            if len(parts) == 3:
                return _apply(self._guard("openid", parts[0]),
                              lambda: self.openid_configuration(request, parts[0], v2=False))
        if method == "GET" and len(parts) in (3, 4) and parts[1] == "discovery" and parts[-1] == "keys":
            v2 = len(parts) == 4 and parts[2] == "v2.0"
            if len(parts) == 3 or v2:
                return _apply(self._guard("jwks", None), lambda: self.keys(parts[0], v2))
        if len(parts) == 4 and parts[1:] == ["oauth2", "v2.0", "authorize"] and method in ("GET", "POST"):
            return self.authorization.authorize(request, parts[0])
        if len(parts) == 4 and parts[1:] == ["oauth2", "v2.0", "token"]:
            if method != "POST":
                return self._error(request, 405, "invalid_request", 900561,
                                   "The endpoint only accepts POST requests. Received a GET request.")
            return self.token(request, parts[0])
        if method == "GET" and len(parts) == 3 and parts[:2] == ["common", "userrealm"]:
            return self.user_realm(parts[2])
        if len(parts) in (2, 3) and parts[1:] in (["adminconsent"], ["v2.0", "adminconsent"]):
            return consent.admin_consent(self.state, request, parts[0], v2=len(parts) == 3)
        return Response.json(404, {"error": "not_found", "error_description": f"No route {method} {request.path}"})

    def _guard(self, target: str, tenant: str | None) -> FaultRule | None:
        if target == "jwks":
            self.state.stats.inc("jwks_fetches")
        else:
            self.state.stats.inc("openid_configuration_fetches")
        return self.state.take_fault(target, tenant.lower() if tenant and GUID_RE.match(tenant) else None)

    # ---- metadata --------------------------------------------------------------------------------
    def _tenant_segment(self, segment: str) -> tuple[str | None, TenantState | None]:
        """(issuer tenant, state): GUID -> itself; common/organizations -> '{tenantid}'; domain -> its tenant."""
        lowered = segment.lower()
        if lowered in ("common", "organizations"):
            return "{tenantid}", None
        if GUID_RE.match(segment):
            state = self.state.known_tenant(segment)
            return (state.tenant_id, state) if state else (None, None)
        state = self.state.tenant_by_domain(lowered)
        return (state.tenant_id, state) if state else (None, None)

    def openid_configuration(self, request: Request, segment: str, v2: bool) -> Response:
        issuer_tenant, _ = self._tenant_segment(segment)
        if issuer_tenant is None:
            return self._error(request, 400, "invalid_tenant", 90002, _tenant_not_found(segment))
        base = self.state.entra_base
        path_tenant = segment if issuer_tenant == "{tenantid}" else issuer_tenant
        prefix = f"{base}/{path_tenant}"
        oauth = f"{prefix}/oauth2/v2.0" if v2 else f"{prefix}/oauth2"
        # The real documents' keys in their order; v1 and v2 differ in versions, scopes and a few extras.
        doc = {
            "token_endpoint": f"{oauth}/token",
            "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
            "jwks_uri": f"{prefix}/discovery/v2.0/keys" if v2 else f"{base}/common/discovery/keys",
            "response_modes_supported": ["query", "fragment", "form_post"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "response_types_supported": ["code", "id_token", "code id_token"]
            + (["id_token token"] if v2 else ["token id_token", "token"]),
            "scopes_supported": ["openid", "profile", "email", "offline_access"] if v2 else ["openid"],
            "issuer": f"{base}/{issuer_tenant}/v2.0" if v2 else f"https://sts.windows.net/{issuer_tenant}/",
            **({"request_uri_parameter_supported": False,
                "userinfo_endpoint": "https://graph.microsoft.com/oidc/userinfo"} if v2
               else {"microsoft_multi_refresh_token": True}),
            "authorization_endpoint": f"{oauth}/authorize",
            **({"device_authorization_endpoint": f"{oauth}/devicecode"} if v2 else {}),
            "http_logout_supported": True,
            "frontchannel_logout_supported": True,
            "end_session_endpoint": f"{oauth}/logout",
            **({"claims_supported": ["sub", "iss", "cloud_instance_name", "cloud_instance_host_name",
                                     "cloud_graph_host_name", "msgraph_host", "aud", "exp", "iat",
                                     "auth_time", "acr", "nonce", "preferred_username", "name", "tid",
                                     "ver", "at_hash", "c_hash", "email"],
                "kerberos_endpoint": f"{prefix}/kerberos",
                "tenant_region_scope": "EU" if issuer_tenant != "{tenantid}" else None} if v2 else {}),
            "cloud_instance_name": "microsoftonline.com",
            "cloud_graph_host_name": "graph.windows.net",
            "msgraph_host": "graph.microsoft.com",
            **({"rbac_url": "https://pas.windows.net"} if v2 else {}),
        }
        doc = {k: v for k, v in doc.items() if v is not None}
        return Response.json(200, doc, [("Cache-Control", "max-age=86400, private"),
                                        ("Access-Control-Allow-Origin", "*")])

    def keys(self, segment: str, v2: bool) -> Response:
        template = f"{self.state.entra_base}/{{tenantid}}/v2.0" if v2 else None
        return Response.json(200, self.state.keys.jwks(template),
                             [("Cache-Control", "max-age=86400, private"), ("Access-Control-Allow-Origin", "*")])

    def user_realm(self, username: str) -> Response:
        _, _, domain = username.partition("@")
        state = self.state.tenant_by_domain(domain) if domain else None
        if state is None:
            return Response.json(200, {"ver": "1.0", "account_type": "Unknown",
                                       "cloud_instance_name": "microsoftonline.com"})
        return Response.json(200, {"ver": "1.0", "account_type": "Managed", "domain_name": state.directory.domain,
                                   "cloud_instance_name": "microsoftonline.com",
                                   "cloud_audience_urn": "urn:federation:MicrosoftOnline"})

    # ---- token endpoint --------------------------------------------------------------------------
    def token(self, request: Request, segment: str) -> Response:
        stats = self.state.stats
        form = {k: v[-1] for k, v in parse_qs(request.body.decode("utf-8", "replace"), keep_blank_values=True).items()}
        grant = form.get("grant_type", "")
        tenant_hint = segment.lower() if GUID_RE.match(segment) else None
        stats.inc("token_requests", tenant_hint)
        stats.inc(f"grant.{grant or 'missing'}")
        rule = self.state.take_fault("token", tenant_hint)
        response = _apply(rule, lambda: self._token(request, segment, form, grant))
        if response.status == 200:
            stats.inc("tokens_issued", tenant_hint)
        else:
            stats.inc("token_errors", tenant_hint)
        return response

    def _token(self, request: Request, segment: str, form: dict[str, str], grant: str) -> Response:
        if segment.lower() in ("common", "organizations", "consumers") and grant == "client_credentials":
            return self._error(request, 400, "invalid_request", 50059,
                               "No tenant-identifying information found in either the request or implied "
                               "by any provided credentials.")
        if GUID_RE.match(segment):
            tenant = self.state.known_tenant(segment)
        elif segment.lower() in ("common", "organizations"):
            _, _, domain = form.get("username", "").partition("@")
            tenant = self.state.tenant_by_domain(domain) if domain else None
        else:
            tenant = self.state.tenant_by_domain(segment)
        if tenant is None and not (grant == "authorization_code" and segment.lower() in ("common", "organizations")):
            return self._error(request, 400, "invalid_request", 90002, _tenant_not_found(segment))
        if not grant:
            return self._missing(request, "grant_type")

        client_id, secret = form.get("client_id", ""), form.get("client_secret")
        basic = request.header("Authorization")
        if basic.lower().startswith("basic "):
            import base64

            try:
                decoded = base64.b64decode(basic[6:]).decode()
                client_id, _, secret = decoded.partition(":")
            except (ValueError, UnicodeDecodeError):
                return self._error(request, 401, "invalid_client", 7000216, "'client_assertion', "
                                   "'client_secret' or 'request' is required for the 'client_credentials' grant type.")
        if not client_id:
            return self._missing(request, "client_id")
        app = self.state.app(client_id)
        if app is None:
            return self._error(request, 400, "unauthorized_client", 700016,
                               f"Application with identifier '{client_id}' was not found in the directory "
                               f"'{tenant.directory.company if tenant else segment}'. This can happen if the "
                               "application has not been installed by the administrator of the tenant or consented "
                               "to by any user in the tenant. You may have sent your authentication request to the "
                               "wrong tenant.")
        if form.get("client_assertion"):
            return self._error(request, 401, "invalid_client", 700027,
                               "Client assertion failed signature validation. (fake: certificate credentials "
                               "are not registered)")
        if secret is not None and app.secret is None:
            return self._error(request, 401, "invalid_client", 700025,
                               "Client is public so neither 'client_assertion' nor 'client_secret' should be "
                               "presented.")
        if secret is not None and secret != app.secret:
            return self._bad_secret(request, app.client_id)

        if grant == "authorization_code":  # the code names the tenant (sign-in through /organizations)
            return self.authorization.redeem(request, form, app, secret)
        if grant == "client_credentials":
            return self._client_credentials(request, tenant, app, form, secret)
        if grant == "password":
            return self._password(request, tenant, app, form, secret is not None)
        if grant == "refresh_token":
            return self._refresh(request, tenant, app, form, secret is not None)
        return self._error(request, 400, "unsupported_grant_type", 70003,
                           f"The app requested an unsupported grant type '{grant}'.")

    def _client_credentials(self, request: Request, tenant: TenantState, app, form, secret) -> Response:
        if app.secret is None:
            return self._error(request, 400, "invalid_client", 7000218,
                               "The request body must contain the following parameter: 'client_assertion' or "
                               "'client_secret'.")
        if secret is None:
            return self._error(request, 401, "invalid_client", 7000218,
                               "The request body must contain the following parameter: 'client_assertion' or "
                               "'client_secret'.")
        scope = form.get("scope", "").strip()
        if not scope:
            return self._error(request, 400, "invalid_scope", 70011,
                               "The provided request must include a 'scope' input parameter.")
        scopes = scope.split()
        if len(scopes) != 1:
            return self._invalid_scope(request, f"The scope {scope} is not valid.")
        if not scopes[0].endswith("/.default"):
            return self._error(request, 400, "invalid_scope", 1002012,
                               f"The provided value for scope {scope} is not valid. Client credential flows must "
                               "have a scope value with /.default suffixed to the resource identifier (application "
                               "ID URI).")
        resource = scopes[0][: -len("/.default")]
        if resource not in GRAPH_RESOURCES:
            return self._error(request, 400, "invalid_resource", 500011,
                               f"The resource principal named {resource} was not found in the tenant named "
                               f"{tenant.directory.company}. This can happen if the application has not been installed "
                               "by the administrator of the tenant or consented to by any user in the tenant. You "
                               "might have sent your authentication request to the wrong tenant.")
        refusal = consent.client_credentials_refusal(self.state, tenant, app)
        if refusal is not None:
            return self._error(request, *refusal)
        roles = consent.granted_roles(tenant, app)
        claims, expires_in = self.state.graph_token_claims(tenant.tenant_id, app, roles)
        token = self.state.opaque_graph_token(claims)  # not a JWT: clients must not read it
        return Response.json(200, {"token_type": "Bearer", "expires_in": expires_in, "ext_expires_in": expires_in,
                                   "access_token": token}, _NO_STORE + self._trace_headers(request))

    def _api_scope(self, request: Request, tenant: TenantState, scope: str
                   ) -> tuple[str | None, list[str], bool, Response | None]:
        """(audience, api scopes, openid?, error) from a delegated scope string."""
        requested = scope.split()
        oidc = [s for s in requested if s in OIDC_SCOPES]
        api = [s for s in requested if s not in OIDC_SCOPES]
        if not requested:
            return None, [], False, self._error(request, 400, "invalid_request", 900144,
                                                "The request body must contain the following parameter: 'scope'.")
        audience, names = None, []
        for item in api:
            resource, _, name = item.rpartition("/")
            resource = resource[len("api://"):] if resource.startswith("api://") else resource
            target = self.state.app(resource) if GUID_RE.match(resource or "") else None
            if target is None:
                return None, [], False, self._resource_not_found(request, tenant, item.rpartition('/')[0] or item)
            if audience not in (None, target.client_id):
                return None, [], False, self._invalid_scope(request, "Scopes of more than one resource were requested.")
            if name not in target.scopes:
                return None, [], False, self._invalid_scope(request, f"The scope {item} is not valid.")
            audience = target.client_id
            names.append(name)
        if audience and not consent.is_consented(self.state, tenant):
            return None, [], False, self._resource_not_found(request, tenant, f"api://{audience}")
        if audience and not consent.covers_scopes(tenant, self.state.app(audience), names):
            app = self.state.app(audience)
            return None, [], False, self._error(
                request, 400, "invalid_grant", 65001,
                f"The user or administrator has not consented to use the application with ID '{audience}' named "
                f"'{app.display_name}'. Send an interactive authorization request for this user and resource.")
        return audience, names, "openid" in oidc, None

    def _resource_not_found(self, request: Request, tenant: TenantState, resource: str) -> Response:
        return self._error(
            request, 400, "invalid_resource", 500011,
            f"The resource principal named {resource} was not found in the tenant named {tenant.directory.company}. "
            "This can happen if the application has not been installed by the administrator of the tenant or "
            "consented to by any user in the tenant. You might have sent your authentication request to the wrong "
            "tenant.")

    def _invalid_scope(self, request: Request, detail: str) -> Response:
        return self._error(request, 400, "invalid_scope", 70011,
                           f"The provided value for the input parameter 'scope' is not valid. {detail}")

    def _password(self, request: Request, tenant: TenantState, app, form, confidential: bool) -> Response:
        for name in ("username", "password"):
            if not form.get(name):
                return self._missing(request, name)
        audience, names, openid, error = self._api_scope(request, tenant, form.get("scope", ""))
        if error is not None:
            return error
        index = tenant.directory.index_of_upn(form["username"])
        if index is None:
            return self._error(request, 400, "invalid_grant", 50034,
                               f"The user account {{EUII Hidden}} does not exist in the {tenant.tenant_id} directory. "
                               "To sign into this application, the account must be added to the directory.")
        if form["password"] != self.state.setting("demo_password", tenant):
            return self._error(request, 400, "invalid_grant", 50126,
                               "Error validating credentials due to invalid username or password.")
        user = tenant.directory.user(index)
        assert user is not None
        scope_value = form.get("scope", "")
        return self._user_tokens(request, tenant, app, user, audience, names, openid,
                                 "offline_access" in scope_value.split(), confidential, form)

    def _refresh(self, request: Request, tenant: TenantState, app, form, confidential: bool) -> Response:
        token = form.get("refresh_token", "")
        if not token:
            return self._missing(request, "refresh_token")
        data = self.state.unseal(token[len("1.fake."):]) if token.startswith("1.fake.") else None
        if (data is None or data.get("k") != "rt" or data.get("t") != tenant.tenant_id
                or data.get("c") != app.client_id or data.get("e", 0) < time.time()):
            return self._error(request, 400, "invalid_grant", 9002313,
                               "Invalid request. Request is malformed or invalid.")
        user = tenant.directory.user(int(data["i"]))
        if user is None:
            return self._error(request, 400, "invalid_grant", 50173,
                               "The provided grant has expired due to it being revoked, a fresh auth token is needed.")
        scope = form.get("scope") or data.get("s", "")
        audience, names, openid, error = self._api_scope(request, tenant, scope)
        if error is not None:
            return error
        return self._user_tokens(request, tenant, app, user, audience, names, openid, True, confidential, form)

    def _user_tokens(self, request: Request, tenant: TenantState, app, user: dict[str, Any], audience: str | None,
                     names: list[str], openid: bool, offline: bool, confidential: bool,
                     form: dict[str, str]) -> Response:
        state = self.state
        body: dict[str, Any] = {"token_type": "Bearer"}
        if audience:
            claims, expires_in = state.user_token_claims(tenant.tenant_id, user, audience, app.client_id, names,
                                                         confidential)
            body["scope"] = " ".join(f"api://{audience}/{n}" for n in names)
            body["expires_in"] = expires_in
            body["ext_expires_in"] = expires_in
            body["access_token"] = state.keys.sign(claims, {"typ": "JWT", "kid": state.keys.current.kid})
        else:
            body["scope"] = "openid profile"
            body["expires_in"] = body["ext_expires_in"] = 3600
        if offline:
            index = tenant.directory.index_of(user["id"])
            scope = " ".join([*(f"api://{audience}/{n}" for n in names), "openid", "profile", "offline_access"])
            body["refresh_token"] = "1.fake." + state.seal({"k": "rt", "t": tenant.tenant_id, "c": app.client_id,
                                                             "i": index, "s": scope, "e": time.time() + 90 * 86400})
        if openid:
            body["id_token"] = state.keys.sign(state.id_token_claims(tenant.tenant_id, user, app.client_id),
                                               {"typ": "JWT", "kid": state.keys.current.kid})
        if form.get("client_info") == "1":
            body["client_info"] = b64url(json.dumps({"uid": user["id"], "utid": tenant.tenant_id}).encode())
        return Response.json(200, body, _NO_STORE + self._trace_headers(request))

    # ---- errors ----------------------------------------------------------------------------------
    def _missing(self, request: Request, name: str) -> Response:
        return self._error(request, 400, "invalid_request", 900144,
                           f"The request body must contain the following parameter: '{name}'.")

    def _bad_secret(self, request: Request, client_id: str) -> Response:
        return self._error(request, 401, "invalid_client", 7000215,
                           "Invalid client secret provided. Ensure the secret being sent in the request is the "
                           f"client secret value, not the client secret ID, for a secret added to app '{client_id}'.")

    def _trace_headers(self, request: Request) -> list[tuple[str, str]]:
        headers = [("x-ms-request-id", str(uuid.uuid4())), ("x-ms-ests-server", "fake-microsoft")]
        if request.header("client-request-id"):
            headers.append(("client-request-id", request.header("client-request-id")))
        return headers

    def _error(self, request: Request, status: int, error: str, code: int, description: str) -> Response:
        return entra_error(self.state.entra_base, request, status, error, code, description)


def entra_error(base: str, request: Request | None, status: int, error: str, code: int, description: str,
                headers: list[tuple[str, str]] | None = None) -> Response:
    timestamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    trace_id = str(uuid.uuid4())
    correlation = (request.header("client-request-id") if request else "") or str(uuid.uuid4())
    body = {
        "error": error,
        "error_description": f"AADSTS{code}: {description}\r\nTrace ID: {trace_id}\r\n"
                             f"Correlation ID: {correlation}\r\nTimestamp: {timestamp}",
        "error_codes": [code],
        "timestamp": timestamp,
        "trace_id": trace_id,
        "correlation_id": correlation,
        "error_uri": f"{base}/error?code={code}",
    }
    extra = [("x-ms-request-id", trace_id), ("client-request-id", correlation)] + _NO_STORE + list(headers or [])
    return Response.json(status, body, extra)


def _tenant_not_found(segment: str) -> str:
    return (f"Tenant '{segment}' not found. Check to make sure you have the correct tenant ID and are signing into "
            "the correct cloud. Check with your subscription administrator, this may happen if there are no active "
            "subscriptions for the tenant.")


def _apply(rule: FaultRule | None, make) -> Response:
    """The real response, or the injected fault instead (a "disconnect" cuts the real one short)."""
    if rule is None:
        return make()
    if rule.status == "disconnect":
        response = make()
        response.truncate = True
        response.delay = rule.delay_seconds
        return response
    return _fault_response(rule)


def _fault_response(rule: FaultRule) -> Response:
    """An injected Entra ID failure (429/5xx or a cut-off body)."""
    headers = []
    if rule.retry_after is not None:
        headers.append(("Retry-After", str(rule.retry_after)))
    status = int(rule.status)
    code = rule.code or ("temporarily_unavailable" if status >= 500 or status == 429 else "invalid_request")
    timestamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    body = {"error": code, "error_description": rule.message or
            f"AADSTS50196: The server is temporarily unavailable (fake fault {status}).\r\nTimestamp: {timestamp}",
            "error_codes": [50196], "timestamp": timestamp, "trace_id": str(uuid.uuid4()),
            "correlation_id": str(uuid.uuid4())}
    response = Response.json(status, body, headers + _NO_STORE)
    response.delay = rule.delay_seconds
    return response
