"""The relay process streams page by page and stops fetching from Graph when the client goes away."""
from __future__ import annotations

import json
import time
import uuid

import pytest
import requests

from tests import tokens
from tests.fake_ms import FakeMicrosoftControl

TENANT = "9fa0b1c2-d3e4-4f5a-8b6c-7d8e9fa0b1c2"


@pytest.mark.e2e
def test_client_gone_stops_fetching(stack, emulators):
    fake = FakeMicrosoftControl(stack)
    fake.reset()
    fake.directory(TENANT, 30000)  # 31 pages of 999
    admin, devices, relay = (stack.urls[n] for n in ("manage_tenants", "register_device", "relay_contacts"))
    requests.post(f"{admin}/tenants", json={"tenantId": TENANT, "name": "Streaming AG"}).raise_for_status()
    auth = {"Authorization": f"Bearer {tokens.token(stack, TENANT)}"}
    device_id = str(uuid.uuid4())
    requests.post(f"{devices}/", json={"deviceId": device_id}, headers=auth).raise_for_status()
    fake.call("POST", "config", {"page_delay_seconds": 0.1})
    try:
        started = time.monotonic()
        response = requests.get(f"{relay}/", headers={**auth, "X-Device-Id": device_id}, stream=True, timeout=60)
        assert response.status_code == 200
        lines = response.iter_lines()
        first = json.loads(next(lines))
        time_to_first_line = time.monotonic() - started
        assert first == {"op": "reset"}
        for _ in range(1500):  # a page and a half
            assert json.loads(next(lines))["op"] == "upsert"
        response.close()  # the app goes away mid-sync
        pages_at_close = fake.stats()["graph_delta_pages"]
        time.sleep(2.0)  # long enough for ~20 more pages had the relay kept fetching
        pages_later = fake.stats()["graph_delta_pages"]
    finally:
        fake.call("POST", "config", {"page_delay_seconds": 0.0})
    assert time_to_first_line < 5
    assert pages_later <= pages_at_close + 3, (pages_at_close, pages_later)
    assert pages_later < 31
