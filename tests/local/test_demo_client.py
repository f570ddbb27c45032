"""The demo client as a new user runs it on `make dev`, scoped to a demo group: only that group's members
and their photos come through."""
from __future__ import annotations

import sys

from local import demo_client
from local.stack import DEMO_TENANT_ID
from tests.conftest import make_client
from tests.fake_ms import FakeMicrosoftControl


def test_demo_client_with_a_group_scope(stack, emulators, capsys, monkeypatch):
    FakeMicrosoftControl(stack).reset()
    assert make_client("manage_tenants").post("/tenants", json={
        "tenantId": DEMO_TENANT_ID, "name": "Contoso Demo GmbH", "settings": {"defaultRegion": "DE"}}
    ).status_code == 201
    monkeypatch.setattr(sys, "argv", ["demo_client", "--stack-file", str(stack.state_dir / "stack.json"),
                                      "--scope-demo-group"])
    assert demo_client.main() == 0
    out = capsys.readouterr().out
    assert "scope set to the group" in out and ": 200" in out
    assert "full sync: 25 contacts" in out  # 15 direct members + 10 through the nested group
    assert "  photo of " in out and "photo changes: 200" in out
