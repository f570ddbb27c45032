"""Sign-in with Microsoft: OpenID Connect authorization code + PKCE through MSAL Python, and the
validation of the ID token that MSAL leaves to the application (signature by a key of the authority's
JWKS, `iss` = `{authority}/{tid}/v2.0` and the key's issuer template, `aud`, `nonce`, times).

Only the tenant ID and the role that makes the user an administrator leave this module. No token is kept:
MSAL gets a token cache that discards what it is handed, and no user claim is returned, logged or stored.
"""
from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import jwt

from functions.tenant_portal.session import MEMBER
from shared.auth import LEEWAY_SECONDS, JwksCache
from shared.ids import is_canonical_id

if TYPE_CHECKING:
    import requests

# Directory roles (template IDs in `wids`) that administer the tenant, and the app role that may.
ADMIN_DIRECTORY_ROLES = {
    "62e90394-69f5-4237-9190-012177145e10": "Global Administrator",
    "e8611ab8-c189-46e8-94e1-60213ab1f814": "Privileged Role Administrator",
    "9b895d92-2cd3-44c7-9d02-a6ac2d5ea5c3": "Application Administrator",
    "158c047a-c907-4556-b7ef-446551a6b5f7": "Cloud Application Administrator",
}
ADMIN_APP_ROLE = "Tenant.Admin"
# What the sign-in flow cookie keeps of MSAL's flow (the authorization URL is not needed again).
# `max_age` is there when the sign-in asked for a recent authentication: MSAL then checks `auth_time` as well.
FLOW_KEYS = ("state", "redirect_uri", "scope", "code_verifier", "nonce", "claims_challenge", "max_age")


class SigninRefused(Exception):
    """The sign-in cannot complete; `reason` is our own slug, never text from Entra ID or the token."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class SignedIn:
    tenant_id: str
    role: str  # the directory role or app role that makes the user an administrator, or MEMBER
    auth_time: int | None = None  # the ID token's: when the person last authenticated at Entra ID

    @property
    def admin(self) -> bool:
        return self.role != MEMBER


def role_of(claims: Mapping[str, Any]) -> str:
    """The role (of those above) that makes the signed-in user an administrator: a directory role first, in
    the order above, then the app role; MEMBER when none does."""
    wids, roles = claims.get("wids"), claims.get("roles")
    held = {w for w in wids if isinstance(w, str)} if isinstance(wids, list) else set()
    for template_id, name in ADMIN_DIRECTORY_ROLES.items():
        if template_id in held:
            return name
    return ADMIN_APP_ROLE if isinstance(roles, list) and ADMIN_APP_ROLE in roles else MEMBER


def is_admin(claims: Mapping[str, Any]) -> bool:
    return role_of(claims) != MEMBER


def _discarding_cache() -> Any:  # an msal.TokenCache (msal ships no types)
    import msal

    class DiscardingCache(msal.TokenCache):  # type: ignore[misc]  # msal's classes are untyped (Any)
        """MSAL hands every token it obtains to its cache; this one keeps none of them."""

        def add(self, event: dict[str, Any], **kwargs: Any) -> None:
            return None

    return DiscardingCache()


class MicrosoftSignin:
    def __init__(self, authority_host: str, client_id: str, client_secret: str, redirect_uri: str,
                 http_client: requests.Session, keys: JwksCache):
        self._authority = authority_host.rstrip("/")
        self._client_id = client_id
        self._secret = client_secret
        self._redirect_uri = redirect_uri
        self._http = http_client
        self._keys = keys
        self._app: Any = None  # msal.ConfidentialClientApplication, made on first use

    def _msal(self) -> Any:
        if self._app is None:
            import msal

            self._app = msal.ConfidentialClientApplication(
                self._client_id, client_credential=self._secret, authority=f"{self._authority}/organizations",
                http_client=self._http, instance_discovery=False, token_cache=_discarding_cache(),
                exclude_scopes=["offline_access"])
        return self._app

    def begin(self, max_age: int | None = None) -> tuple[str, dict[str, Any]]:
        """(the authorization URL to send the browser to, the flow state to keep in the flow cookie). With
        `max_age` (seconds), Entra ID makes the person authenticate again unless they did within it, and the
        ID token must say when they did (`auth_time`, OpenID Connect Core 3.1.2.1)."""
        import warnings

        extra = {} if max_age is None else {"max_age": max_age}
        with warnings.catch_warnings():  # MSAL recommends form_post; the contract's callback is a GET (query)
            warnings.simplefilter("ignore", UserWarning)
            flow = self._msal().initiate_auth_code_flow([], redirect_uri=self._redirect_uri, response_mode="query",
                                                        **extra)
        return flow["auth_uri"], {key: flow.get(key) for key in FLOW_KEYS if key != "max_age" or key in flow}

    def complete(self, flow: Mapping[str, Any], response: Mapping[str, str]) -> SignedIn:
        """Redeems the code (PKCE, state checked by MSAL) and validates the ID token; SigninRefused else."""
        if response.get("error"):
            raise SigninRefused("signin-declined")
        try:
            result = self._msal().acquire_token_by_auth_code_flow(dict(flow), dict(response))
        except ValueError:  # state mismatch, or a response without code
            raise SigninRefused("signin-state") from None
        except RuntimeError as error:  # MSAL's own ID token checks: the nonce, and auth_time when max_age was sent
            reason = "signin-not-recent" if "auth_time" in str(error) else "id-token-nonce"
            raise SigninRefused(reason) from None
        if "error" in result or not isinstance(result.get("id_token"), str):
            raise SigninRefused("signin-failed")
        max_age = flow.get("max_age")
        claims = self.validate_id_token(result["id_token"], str(flow.get("nonce") or ""),
                                        max_age if isinstance(max_age, int) else None)
        auth_time = claims.get("auth_time")
        return SignedIn(claims["tid"], role_of(claims),
                        auth_time if isinstance(auth_time, int) and not isinstance(auth_time, bool) else None)

    def validate_id_token(self, id_token: str, flow_nonce: str, max_age: int | None = None) -> dict[str, Any]:
        try:
            kid = jwt.get_unverified_header(id_token).get("kid")
        except jwt.PyJWTError:
            raise SigninRefused("id-token-malformed") from None
        signing_key = self._keys.key(kid) if isinstance(kid, str) and kid else None
        if signing_key is None:
            raise SigninRefused("id-token-key-unknown")
        try:
            claims = jwt.decode(id_token, signing_key.key, algorithms=["RS256"], audience=self._client_id,
                                leeway=LEEWAY_SECONDS,
                                options={"require": ["exp", "iat", "iss", "aud", "tid", "nonce"], "verify_iss": False})
        except jwt.PyJWTError:
            raise SigninRefused("id-token-invalid") from None
        tenant_id = claims.get("tid")
        if not is_canonical_id(tenant_id):
            raise SigninRefused("id-token-tenant")
        expected_issuer = f"{self._authority}/{tenant_id}/v2.0"
        template = signing_key.issuer_template
        if claims.get("iss") != expected_issuer or (
                template is not None and template.replace("{tenantid}", tenant_id) != expected_issuer):
            raise SigninRefused("id-token-issuer")
        # MSAL sends the SHA-256 (hex) of the flow's nonce as `nonce`; the ID token must carry exactly that.
        expected_nonce = hashlib.sha256(flow_nonce.encode()).hexdigest()
        if not flow_nonce or claims.get("nonce") != expected_nonce:
            raise SigninRefused("id-token-nonce")
        if max_age is not None:  # a sign-in that asked for a recent authentication must get one, and be told when
            auth_time = claims.get("auth_time")
            now = time.time()
            if (not isinstance(auth_time, int) or isinstance(auth_time, bool)
                    or not now - max_age - LEEWAY_SECONDS <= auth_time <= now + LEEWAY_SECONDS):
                raise SigninRefused("signin-not-recent")
        return claims
