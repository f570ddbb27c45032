"""Token validation against the fake Entra ID: key cache, bounded refetch, rotation, egress allow-list."""
from __future__ import annotations

import uuid

import pytest

from shared.auth import JwksCache, TokenValidator, jwks_url
from shared.egress import AllowListedSession, EgressRefused
from shared.errors import Unauthorized
from shared.origins import origin
from shared.store.records import Tenant
from shared.store.schema import TenantStatus
from tests import tokens
from tests.fake_ms import FakeMicrosoftControl

TENANT = "4a5b6c7d-8e9f-4a0b-9c1d-2e3f4a5b6c7d"


ACTIVE = Tenant(TENANT, "Contoso", TenantStatus.ACTIVE, None)


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def parts(stack):
    fake = FakeMicrosoftControl(stack)
    fake.reset()
    session = AllowListedSession({origin(stack.urls["entra"])})
    session.verify = stack.urls["ca"]
    clock = Clock()
    keys = JwksCache(session, jwks_url(stack.urls["entra"]), clock=clock)
    validator = TokenValidator(keys, stack.urls["entra"], tokens.ENTRA_CLIENT_ID, "access_as_user",
                               lambda tid: ACTIVE if tid == TENANT else None)
    original_kid = fake.call("GET", "keys")["current_kid"]
    yield fake, keys, validator, clock
    # Sign with the original key again and unpublish the rotated one: the functions of this session
    # cache the key set (a refetch at most every 30 s), so later tests must see the keys they know.
    fake.call("POST", "use-key", {"kid": original_kid})
    fake.call("POST", "reset", {"keys": True})


def test_steady_keys_are_fetched_once(stack, parts):
    fake, keys, validator, _ = parts
    for _ in range(20):
        assert validator.authenticate(f"Bearer {tokens.token(stack, TENANT)}").tenant_id == TENANT
    assert keys.fetches == 1


def test_rotated_key_is_picked_up_but_refetches_are_bounded(stack, parts):
    fake, keys, validator, clock = parts
    validator.authenticate(f"Bearer {tokens.token(stack, TENANT)}")
    fake.call("POST", "rotate-keys")
    fresh = tokens.token(stack, TENANT)
    # Within 30 s of the last fetch an unknown kid does not trigger a fetch (no JWKS flood by bad tokens).
    for _ in range(10):
        with pytest.raises(Unauthorized):
            validator.authenticate(f"Bearer {tokens.unknown_kid(stack, tokens.claims(stack, TENANT))}")
    with pytest.raises(Unauthorized):
        validator.authenticate(f"Bearer {fresh}")
    assert keys.fetches == 1
    clock.now += 31
    assert validator.authenticate(f"Bearer {fresh}").tenant_id == TENANT
    assert keys.fetches == 2


def test_caller_carries_no_user_claim(stack, parts):
    _, _, validator, _ = parts
    caller = validator.authenticate(f"Bearer {tokens.token(stack, TENANT)}")
    assert set(vars(caller)) == {"tenant_id", "settings", "user_key"}
    # The user is only a per-process keyed hash of `oid`: no claim value, stable within the process, and
    # different for another user.
    assert all(value.encode() not in caller.user_key for value in tokens.USER_CLAIMS.values())
    assert tokens.USER_CLAIMS["oid"] not in repr(caller)
    again = validator.authenticate(f"Bearer {tokens.token(stack, TENANT)}")
    other = validator.authenticate(f"Bearer {tokens.token(stack, TENANT, oid=str(uuid.uuid4()))}")
    assert again.user_key == caller.user_key != other.user_key and len(caller.user_key) == 16


def test_egress_refuses_other_origins_and_redirects(stack):
    session = AllowListedSession({origin(stack.urls["entra"])})
    session.verify = stack.urls["ca"]
    with pytest.raises(EgressRefused):
        session.get("https://example.com/")
    with pytest.raises(EgressRefused):  # same host, other port: the fake Graph is not Entra ID
        session.get(stack.urls["graph"] + "/users")
    with pytest.raises(EgressRefused):
        session.get(stack.urls["entra"].replace("https", "http") + "/common/discovery/v2.0/keys")
    assert session.get(jwks_url(stack.urls["entra"])).status_code == 200


def test_unreachable_signing_keys_are_503_not_401(stack, parts):
    from shared.errors import ServiceUnavailable

    fake, keys, validator, _ = parts
    fake.faults({"target": "jwks", "status": 503, "count": None})
    try:
        with pytest.raises(ServiceUnavailable) as refused:
            validator.authenticate(f"Bearer {tokens.token(stack, TENANT)}")
        assert refused.value.status == 503 and "Retry-After" in refused.value.headers
    finally:
        fake.faults()
    assert validator.authenticate(f"Bearer {tokens.token(stack, TENANT)}").tenant_id == TENANT
