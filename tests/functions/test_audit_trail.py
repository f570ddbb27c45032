"""The tenant's audit trail through manage_tenants' real entry point against the emulators: each change
writes exactly one event (in the write of the change), a refused change writes none, an event names no
person and no contact data, and the operators' route pages one tenant's events only."""
from __future__ import annotations

import base64
import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from shared.audit import OPERATOR_ROLE, after_audit_event, audit_page_token
from shared.errors import BadRequest
from shared.store import schema
from tests import seed, support
from tests.conftest import make_client

TENANT = "3f2504e0-4f89-41d3-9a0c-0305e82c3301"
OTHER = "7c9e6679-7425-40de-944b-e07fc1f90ae7"
NAME = "Fabrikam AG"


def events(tenant_id: str = TENANT) -> list[dict]:
    return [s.to_dict() | {"eventId": s.id}
            for s in support.db().collection(f"tenants/{tenant_id}/auditEvents").stream()]


def onboard(admin, tenant_id: str = TENANT, **extra):
    return admin.post("/tenants", json={"tenantId": tenant_id, "name": NAME, **extra})


def assert_problem(response, status: int) -> dict:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.headers["Content-Type"] == "application/problem+json"
    return response.get_json(force=True)


def assert_operator_event(event: dict, action: str, target: str | None) -> None:
    assert set(event) - {"eventId"} == schema.AUDIT_EVENT_FIELDS
    assert (event["action"], event["target"]) == (action, target)
    assert (event["actorKind"], event["actorRole"], event["session"]) == ("operator", OPERATOR_ROLE, "operator")
    assert abs(event["at"] - datetime.now(UTC)) < timedelta(minutes=1)
    assert event["expiresAt"] - event["at"] == timedelta(days=365)


def test_each_operator_change_writes_exactly_one_event(admin):
    assert onboard(admin, settings={"defaultRegion": "DE"}).status_code == 201
    (onboarded,) = events()
    assert_operator_event(onboarded, "tenant.onboard", None)

    assert admin.patch(f"/tenants/{TENANT}", json={"name": "Fabrikam SE", "settings": {
        "photos": False, "defaultRegion": None, "fields": list(schema.RELAY_FIELDS)}}).status_code == 200
    (updated,) = [e for e in events() if e["action"] == "settings.update"]
    # fields was sent unchanged: only what changed is named, never a value.
    assert_operator_event(updated, "settings.update", "defaultRegion,name,photos")

    device_id = seed.device(TENANT)
    revoke = admin.delete(f"/tenants/{TENANT}/devices/{device_id}")
    assert revoke.status_code == 202
    (revoked,) = [e for e in events() if e["action"] == "device.revoke"]
    assert_operator_event(revoked, "device.revoke", device_id)

    deletion = admin.delete(f"/tenants/{TENANT}")
    assert deletion.status_code == 202
    (requested,) = [e for e in events() if e["action"] == "tenant.delete.request"]
    assert_operator_event(requested, "tenant.delete.request", deletion.get_json()["requestId"])
    assert len(events()) == 4


def test_a_refused_or_empty_change_writes_no_event(admin):
    assert onboard(admin).status_code == 201
    before = events()
    assert_problem(onboard(admin), 409)  # already onboarded
    assert_problem(admin.patch(f"/tenants/{TENANT}", json={"settings": {"fields": ["ssn"]}}), 400)
    assert_problem(admin.patch(f"/tenants/{TENANT}", json={"name": ""}), 400)
    assert admin.patch(f"/tenants/{TENANT}", json={"name": NAME}).status_code == 200  # no change
    assert_problem(admin.delete(f"/tenants/{TENANT}/devices/{uuid.uuid4()}"), 404)
    assert_problem(admin.delete(f"/tenants/{TENANT}/devices/not-an-id"), 400)
    assert_problem(admin.post("/tenants", json={"tenantId": OTHER, "name": NAME, "settings": {"x": 1}}), 400)
    assert events() == before and events(OTHER) == []

    request_id = admin.delete(f"/tenants/{TENANT}").get_json()["requestId"]
    assert admin.delete(f"/tenants/{TENANT}").get_json()["requestId"] == request_id  # asked again: no change
    assert_problem(admin.patch(f"/tenants/{TENANT}", json={"name": "Fabrikam SE"}), 409)  # being deleted
    assert [e["action"] for e in events()] .count("tenant.delete.request") == 1
    assert len(events()) == len(before) + 1


def test_events_name_no_person_and_no_contact_data(admin):
    assert onboard(admin, settings={"defaultRegion": "DE", "fields": ["displayName", "mail"]}).status_code == 201
    assert admin.patch(f"/tenants/{TENANT}", json={"name": "Erika Mustermann GmbH", "settings": {
        "scope": {"groups": [str(uuid.uuid4())], "requirePhone": True}}}).status_code == 200
    stored = json.dumps(events(), default=str)
    for value in (NAME, "Erika", "Mustermann", "displayName", '"DE"', "mail", "oid", "@"):
        assert value not in stored
    assert {e["target"] for e in events()} == {None, "name,scope"}


def test_operators_page_the_trail_newest_first(admin):
    assert onboard(admin).status_code == 201
    for index in range(4):
        assert admin.patch(f"/tenants/{TENANT}", json={"name": f"Fabrikam {index}"}).status_code == 200
    first = admin.get(f"/tenants/{TENANT}/audit?pageSize=2")
    assert first.status_code == 200
    page = first.get_json()
    assert len(page["events"]) == 2 and page["nextPageToken"]
    rest = admin.get(f"/tenants/{TENANT}/audit?pageSize=2&pageToken={page['nextPageToken']}").get_json()
    last = admin.get(f"/tenants/{TENANT}/audit?pageSize=2&pageToken={rest['nextPageToken']}").get_json()
    assert last["nextPageToken"] is None
    listed = page["events"] + rest["events"] + last["events"]
    assert [e["action"] for e in listed] == ["settings.update"] * 4 + ["tenant.onboard"]
    assert [e["at"] for e in listed] == sorted((e["at"] for e in listed), reverse=True)
    assert {e["eventId"] for e in listed} == {e["eventId"] for e in events()}
    assert set(listed[0]) == {"eventId", "at", "action", "target", "actorKind", "actorRole", "session"}
    assert admin.get(f"/tenants/{TENANT}/audit").get_json()["events"] == listed


def test_another_tenants_events_are_never_listed(admin):
    assert onboard(admin).status_code == 201
    assert onboard(admin, OTHER).status_code == 201
    assert admin.patch(f"/tenants/{OTHER}", json={"name": "Contoso"}).status_code == 200
    mine = admin.get(f"/tenants/{TENANT}/audit").get_json()["events"]
    theirs = {e["eventId"] for e in events(OTHER)}
    assert len(mine) == 1 and len(theirs) == 2 and not theirs & {e["eventId"] for e in mine}
    # A token taken from the other tenant's trail is only a position: it never shows their events.
    token = admin.get(f"/tenants/{OTHER}/audit?pageSize=1").get_json()["nextPageToken"]
    assert not {e["eventId"] for e in admin.get(f"/tenants/{TENANT}/audit?pageToken={token}").get_json()[
        "events"]} & theirs


@pytest.mark.parametrize("query", ["pageSize=0", "pageSize=1001", "pageSize=x", "pageToken=../../x",
                                   "pageToken=" + base64.urlsafe_b64encode(b"1.x").decode().rstrip("="),
                                   "pageToken=" + "A" * 200, "extra=1"])
def test_bad_paging_is_a_problem_400(admin, query):
    assert onboard(admin).status_code == 201
    problem = assert_problem(admin.get(f"/tenants/{TENANT}/audit?{query}"), 400)
    assert "../" not in json.dumps(problem)


def test_unknown_or_invalid_tenant(admin):
    assert_problem(admin.get(f"/tenants/{uuid.uuid4()}/audit"), 404)
    assert_problem(admin.get("/tenants/not-a-tenant/audit"), 400)


def test_page_tokens_round_trip_and_refuse_anything_else():
    at, event_id = datetime(2026, 12, 7, 23, 59, 1, 123456, tzinfo=UTC), str(uuid.uuid4())
    assert after_audit_event(audit_page_token((at, event_id))) == (at, event_id)
    assert after_audit_event(None) is None and after_audit_event("") is None
    good = audit_page_token((at, event_id))
    for bad in (good + "A", good.upper(), "%2e", base64.urlsafe_b64encode(f"0{at.timestamp()}.{event_id}".encode())
                .decode().rstrip("="), base64.urlsafe_b64encode(b"99999999999999999999." + event_id.encode())
                .decode().rstrip("=")):
        with pytest.raises(BadRequest):
            after_audit_event(bad)


def test_the_events_go_with_the_tenant_and_are_counted_in_its_receipt(admin):
    handler = make_client("handle_deletion")
    assert onboard(admin).status_code == 201
    assert onboard(admin, OTHER).status_code == 201
    seed.device(TENANT)
    assert admin.patch(f"/tenants/{TENANT}", json={"name": "Fabrikam SE"}).status_code == 200
    request_id = admin.delete(f"/tenants/{TENANT}").get_json()["requestId"]
    assert len(events()) == 3  # onboarding, update, deletion request

    delivered = seed.post_event(handler, seed.pubsub_event(seed.deletion_message("tenant", TENANT, request_id)))

    assert delivered.status_code == 200
    receipt = admin.get(f"/receipts/{request_id}").get_json()
    # The tenant, its device and its three events.
    assert receipt["deleted"] == {"documents": 1 + 1 + 3, "files": 0} and receipt["verified"] is True
    assert events() == [] and len(events(OTHER)) == 1
