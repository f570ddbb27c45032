"""Access tokens for tests: real ones from the fake Entra ID, and hand-made bad ones."""
from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid

import jwt
import requests
from cryptography.hazmat.primitives.asymmetric import rsa

from local.fake_microsoft.keys import b64url
from local.stack import ENTRA_CLIENT_ID

USER_CLAIMS = {"oid": "5f0c9a7e-1b2c-4d3e-8f90-123456789abc", "name": "Erika Mustermann",
               "preferred_username": "erika.mustermann@contoso.example", "upn": "erika.mustermann@contoso.example",
               "email": "erika.mustermann@contoso.example"}


def claims(stack, tenant_id: str, **overrides) -> dict:
    now = int(time.time())
    body = {"iss": f"{stack.urls['entra']}/{tenant_id}/v2.0", "aud": ENTRA_CLIENT_ID, "tid": tenant_id,
            "scp": "access_as_user", "exp": now + 3600, "nbf": now - 10, "iat": now - 10, "ver": "2.0",
            "sub": "x" * 43, "azp": ENTRA_CLIENT_ID, "uti": uuid.uuid4().hex, **USER_CLAIMS}
    return overridden(body, overrides)


def overridden(body: dict, overrides: dict) -> dict:
    """`body` with each override set, or removed where its value is None."""
    for key, value in overrides.items():
        if value is None:
            body.pop(key, None)
        else:
            body[key] = value
    return body


def mint(stack, body: dict, header: dict | None = None, key: str = "current") -> str:
    response = requests.post(f"{stack.urls['entra']}/_fake/mint", json={"claims": body, "header": header or {},
                                                                          "key": key}, timeout=10)
    response.raise_for_status()
    return response.json()["token"]


def token(stack, tenant_id: str, **overrides) -> str:
    return mint(stack, claims(stack, tenant_id, **overrides))


def unsigned(body: dict, kid: str) -> str:
    header = {"alg": "none", "typ": "JWT", "kid": kid}
    return f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(body).encode())}."


def hs256_with_public_key(stack, body: dict) -> str:
    """The classic confusion attack: HMAC keyed with the published RSA public key."""
    jwks = requests.get(f"{stack.urls['entra']}/common/discovery/v2.0/keys", timeout=10).json()
    key = jwks["keys"][0]
    from cryptography.hazmat.primitives import serialization

    public_pem = jwt.PyJWK(key, "RS256").key.public_bytes(
        encoding=serialization.Encoding.PEM, format=serialization.PublicFormat.SubjectPublicKeyInfo)
    header = {"alg": "HS256", "typ": "JWT", "kid": key["kid"]}
    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(body).encode())}"
    signature = hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(signature)}"


def signed_by_outside_key(stack, body: dict) -> str:
    """Valid-looking, with the kid of a published key, but signed by a key outside the JWKS."""
    jwks = requests.get(f"{stack.urls['entra']}/common/discovery/v2.0/keys", timeout=10).json()
    outsider = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return jwt.encode(body, outsider, algorithm="RS256", headers={"kid": jwks["keys"][0]["kid"]})


def unknown_kid(stack, body: dict) -> str:
    outsider = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return jwt.encode(body, outsider, algorithm="RS256", headers={"kid": "not-a-published-kid"})
