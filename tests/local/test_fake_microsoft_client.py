"""The one client of the fakes' control API (local/fake_microsoft/client.py), against fakes in this process."""
from __future__ import annotations

import jwt
import pytest

from local.fake_microsoft import start_servers
from local.fake_microsoft.client import FakeMicrosoftClient, FakeMicrosoftError

CLIENT_ID = "3a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
TENANT = "5e4d3c2b-1a09-4f8e-9d7c-6b5a4f3e2d1c"


@pytest.fixture(scope="module")
def fake(tmp_path_factory):
    with start_servers(tmp_path_factory.mktemp("fake-microsoft"), client_id=CLIENT_ID) as fakes:
        client = FakeMicrosoftClient(fakes.entra_url, fakes.ca_pem)
        client.reset()
        yield client


def test_refused_calls_raise_with_the_fakes_answer(fake):
    with pytest.raises(FakeMicrosoftError, match=r"fake GET tenants/not-a-guid: 40\d .*error"):
        fake.call("GET", "tenants/not-a-guid")


def test_users_pages_through_the_whole_directory(fake):
    fake.directory(TENANT, 2300)
    fake.changes(TENANT, remove=[{"index": 5, "reason": "deleted"}])
    users = fake.users(TENANT)
    assert [u["index"] for u in users] == list(range(2300))
    assert [u["index"] for u in users if u["removed"]] == [5]
    assert fake.demo_user(TENANT)["username"] == users[0]["user"]["userPrincipalName"]


def test_mint_faults_and_stats(fake):
    claims = jwt.decode(fake.mint("user", TENANT), options={"verify_signature": False})
    assert claims["tid"] == TENANT and claims["aud"] == CLIENT_ID
    fake.faults({"target": "jwks", "status": 503, "count": None}, page_delay_seconds=0.0)
    assert [rule["target"] for rule in fake.call("GET", "config")["faults"]] == ["jwks"]
    fake.faults()
    assert fake.call("GET", "config")["faults"] == []
    fake.reset_stats()
    assert fake.stats()["token_requests"] == 0
    fake.reset(keys=True)
    assert fake.call("GET", "keys")["published_kids"] == [fake.call("GET", "keys")["current_kid"]]
