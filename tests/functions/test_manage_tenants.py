"""manage_tenants through its real entry point against the emulators."""
from __future__ import annotations

import json
import uuid
from datetime import UTC

import pytest

from local.stack import DELETION_TOPIC
from tests import support

TENANT = "3f2504e0-4f89-41d3-9a0c-0305e82c3301"


def onboard(admin, tenant_id=TENANT, **extra):
    body = {"tenantId": tenant_id, "name": "Fabrikam AG", **extra}
    return admin.post("/tenants", json=body)


def assert_problem(response, status: int):
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.headers["Content-Type"] == "application/problem+json"
    problem = response.get_json(force=True)
    assert problem["status"] == status and problem["title"] and problem["detail"] and problem["type"]
    return problem


def test_onboard_then_read(admin):
    created = onboard(admin, settings={"defaultRegion": "DE"})
    assert created.status_code == 201
    view = created.get_json()
    assert view["tenantId"] == TENANT and view["status"] == "active" and view["name"] == "Fabrikam AG"
    assert view["settings"]["defaultRegion"] == "DE"
    assert len(view["settings"]["fields"]) == 10
    read = admin.get(f"/tenants/{TENANT}")
    assert read.status_code == 200 and read.get_json() == view
    stored = support.db().document(f"tenants/{TENANT}").get().to_dict()
    assert set(stored) == {"name", "status", "createdAt", "settings"}


def test_duplicate_onboarding_is_409_and_keeps_the_first(admin):
    assert onboard(admin).status_code == 201
    assert_problem(admin.post("/tenants", json={"tenantId": TENANT, "name": "Other"}), 409)
    assert admin.get(f"/tenants/{TENANT}").get_json()["name"] == "Fabrikam AG"


def test_patch_name_and_settings(admin):
    onboard(admin)
    patched = admin.patch(f"/tenants/{TENANT}", json={"name": "Fabrikam SE",
                                                       "settings": {"fields": ["displayName", "mobilePhone"]}})
    assert patched.status_code == 200
    view = patched.get_json()
    assert view["name"] == "Fabrikam SE" and view["settings"]["fields"] == ["displayName", "mobilePhone"]
    assert admin.get(f"/tenants/{TENANT}").get_json() == view


@pytest.mark.parametrize("request_args, status", [
    (("POST", "/tenants", {"json": {"tenantId": "not-a-guid", "name": "X"}}), 400),
    (("POST", "/tenants", {"json": {"tenantId": TENANT.upper(), "name": "X"}}), 400),
    (("POST", "/tenants", {"json": {"tenantId": TENANT, "name": "X", "extra": 1}}), 400),
    (("POST", "/tenants", {"json": {"tenantId": TENANT, "name": "x" * 257}}), 400),
    (("POST", "/tenants", {"json": {"tenantId": TENANT, "name": ""}}), 400),
    (("POST", "/tenants", {"json": {"tenantId": TENANT}}), 400),
    (("POST", "/tenants", {"json": {"tenantId": TENANT, "name": "X", "settings": {"fields": ["ssn"]}}}), 400),
    (("POST", "/tenants", {"json": {"tenantId": TENANT, "name": "X", "settings": {"defaultRegion": "XX"}}}),
     400),
    (("POST", "/tenants", {"json": ["not", "an", "object"]}), 400),
    (("POST", "/tenants", {"data": "{not json", "content_type": "application/json"}), 400),
    (("POST", "/tenants", {"data": json.dumps({"tenantId": TENANT, "name": "X"}), "content_type": "text/plain"}),
     415),
    (("POST", "/tenants", {"data": json.dumps({"tenantId": TENANT, "name": "X" + " " * 70000}),
                           "content_type": "application/json"}), 413),
    (("PUT", "/tenants", {}), 405),
    (("GET", "/nowhere", {}), 404),
    (("GET", "/tenants/../receipts", {}), 404),
    (("GET", f"/tenants/{uuid.uuid4()}", {}), 404),
    (("GET", "/tenants/%2e%2e", {}), 400),
    (("PATCH", f"/tenants/{uuid.uuid4()}", {"json": {"name": "X"}}), 404),
    (("DELETE", f"/tenants/{uuid.uuid4()}", {}), 404),
    (("GET", "/receipts/12345", {}), 400),
])
def test_bad_input_is_problem_json_and_changes_nothing(admin, request_args, status):
    method, path, kwargs = request_args
    before = support.world()
    response = admin.open(path, method=method, **kwargs)
    problem = assert_problem(response, status)
    if status == 405:
        assert "POST" in response.headers["Allow"]
    assert "x" * 100 not in problem["detail"]
    assert support.world() == before


def test_patch_unknown_field_changes_nothing(admin):
    onboard(admin)
    before = support.world()
    assert_problem(admin.patch(f"/tenants/{TENANT}", json={"status": "deleting"}), 400)
    assert_problem(admin.patch(f"/tenants/{TENANT}", json={"name": "y" * 300}), 400)
    assert support.world() == before


def test_tenant_deletion_request_marks_writes_receipt_and_publishes(admin):
    tap = support.Tap(DELETION_TOPIC)
    try:
        onboard(admin)
        response = admin.delete(f"/tenants/{TENANT}")
        assert response.status_code == 202
        request_id = response.get_json()["requestId"]
        tenant = support.db().document(f"tenants/{TENANT}").get().to_dict()
        assert tenant["status"] == "deleting" and tenant["deletionRequestId"] == request_id
        receipt = admin.get(f"/receipts/{request_id}").get_json()
        assert receipt["status"] in ("pending", "completed") and receipt["kind"] == "tenant"
        messages = tap.pull(1)
        assert {"type": "tenant.delete", "tenantId": TENANT, "requestId": request_id} in messages
        # Asking again keeps the first request and does not fork receipts.
        again = admin.delete(f"/tenants/{TENANT}")
        assert again.status_code == 202 and again.get_json()["requestId"] == request_id
        assert_problem(admin.patch(f"/tenants/{TENANT}", json={"name": "New"}), 409)
        stored_receipt = support.db().document(f"deletionReceipts/{request_id}").get().to_dict()
        assert TENANT not in json.dumps(stored_receipt, default=str)
    finally:
        tap.close()


def test_device_listing_pages_and_revocation(admin):
    onboard(admin)
    db = support.db()
    device_ids = sorted(str(uuid.uuid4()) for _ in range(5))
    from datetime import datetime
    now = datetime.now(UTC)
    for device_id in device_ids:
        db.document(f"tenants/{TENANT}/devices/{device_id}").set({"registeredAt": now, "lastSeenAt": now})
    first = admin.get(f"/tenants/{TENANT}/devices?pageSize=3").get_json()
    assert [d["deviceId"] for d in first["devices"]] == device_ids[:3]
    second = admin.get(f"/tenants/{TENANT}/devices?pageSize=3&pageToken={first['nextPageToken']}").get_json()
    assert [d["deviceId"] for d in second["devices"]] == device_ids[3:] and second["nextPageToken"] is None
    assert_problem(admin.get(f"/tenants/{TENANT}/devices?pageSize=0"), 400)
    assert_problem(admin.get(f"/tenants/{TENANT}/devices?pageToken=../../x"), 400)
    assert_problem(admin.delete(f"/tenants/{TENANT}/devices/{uuid.uuid4()}"), 404)
    tap = support.Tap(DELETION_TOPIC)
    try:
        revoked = admin.delete(f"/tenants/{TENANT}/devices/{device_ids[0]}")
        assert revoked.status_code == 202
        request_id = revoked.get_json()["requestId"]
        assert {"type": "device.delete", "tenantId": TENANT, "deviceId": device_ids[0],
                "requestId": request_id} in tap.pull(1)
        assert admin.get(f"/receipts/{request_id}").get_json()["kind"] == "device"
    finally:
        tap.close()


def test_tenant_files_are_stored_with_manifest_and_metadata(admin):
    onboard(admin)
    response = admin.post(f"/tenants/{TENANT}/files?retentionDays=7", data=b"id,value\n1,2\n",
                          content_type="text/csv")
    assert response.status_code == 201
    file_id = response.get_json()["fileId"]
    manifest = support.db().document(f"tenants/{TENANT}/files/{file_id}").get().to_dict()
    assert manifest["objectName"] == f"tenants/{TENANT}/tenant/{file_id}.csv" and manifest["owner"] == "tenant"
    blob = support.bucket().get_blob(manifest["objectName"])
    assert blob.metadata == {"tenant-id": TENANT, "owner": "tenant"}
    assert blob.custom_time == manifest["deleteAfter"]
    listed = admin.get(f"/tenants/{TENANT}/files").get_json()["files"]
    assert [f["fileId"] for f in listed] == [file_id]
    before = support.world()
    assert_problem(admin.post(f"/tenants/{TENANT}/files?retentionDays=7", data=b"<a><b></a>",
                              content_type="application/xml"), 400)
    assert_problem(admin.post(f"/tenants/{TENANT}/files?retentionDays=0", data=b"{}",
                              content_type="application/json"), 400)
    assert_problem(admin.post(f"/tenants/{TENANT}/files", data=b"{}", content_type="application/json"), 400)
    assert_problem(admin.post(f"/tenants/{uuid.uuid4()}/files?retentionDays=3", data=b"{}",
                              content_type="application/json"), 403)
    assert support.world() == before


def test_tenant_list_pages_with_an_opaque_token(admin):
    from tests.openapi_contract import assert_conforms

    tenant_ids = sorted(str(uuid.uuid4()) for _ in range(5))
    for index, tenant_id in enumerate(tenant_ids):
        assert onboard(admin, tenant_id, name=f"Tenant {index}").status_code == 201
    admin.delete(f"/tenants/{tenant_ids[1]}")
    first = admin.get("/tenants?pageSize=2")
    assert_conforms("GET", "/tenants?pageSize=2", first.status_code, first.headers["Content-Type"], first.data,
                    "manage_tenants")
    page = first.get_json()
    assert [t["tenantId"] for t in page["tenants"]] == tenant_ids[:2]
    assert page["tenants"][1]["status"] == "deleting" and page["tenants"][0]["status"] == "active"
    assert set(page["tenants"][0]) == {"tenantId", "name", "status", "createdAt"}
    assert page["tenants"][0]["createdAt"].endswith("Z")
    token = page["nextPageToken"]
    assert token and tenant_ids[1] not in token  # opaque: not the ID in clear
    seen = [t["tenantId"] for t in page["tenants"]]
    while token:
        response = admin.get(f"/tenants?pageSize=2&pageToken={token}")
        assert_conforms("GET", "/tenants", response.status_code, response.headers["Content-Type"], response.data,
                        "manage_tenants")
        page = response.get_json()
        seen += [t["tenantId"] for t in page["tenants"]]
        token = page["nextPageToken"]
    assert seen == tenant_ids
    names = {t["tenantId"]: t["name"] for t in admin.get("/tenants").get_json()["tenants"]}
    assert names == {tenant_id: f"Tenant {index}" for index, tenant_id in enumerate(tenant_ids)}


def test_tenant_list_of_an_exact_page_ends_without_token(admin):
    assert admin.get("/tenants").get_json() == {"tenants": [], "nextPageToken": None}
    onboard(admin)
    assert admin.get("/tenants?pageSize=1").get_json()["nextPageToken"] is None


@pytest.mark.parametrize("query, slug", [
    ("pageSize=0", "invalid-page-size"),
    ("pageSize=1001", "invalid-page-size"),
    ("pageSize=ten", "invalid-page-size"),
    ("pageSize=-1", "invalid-page-size"),
    (f"pageToken={TENANT}", "invalid-page-token"),  # an ID in clear is not a token this API returns
    ("pageToken=Li4vLi4veA", "invalid-page-token"),  # base64url of "../../x"
    ("pageToken=%2E%2E", "invalid-page-token"),
    ("pageToken=" + "A" * 65, "invalid-page-token"),
    ("pageToken=M2YyNTA0ZTAtNGY4OS00MWQzLTlhMGMtMDMwNWU4MmMzMzAx=", "invalid-page-token"),  # padded
    ("cursor=x", "unknown-parameter"),
])
def test_tenant_list_bad_parameters_are_problems(admin, query, slug):
    onboard(admin)
    before = support.world()
    problem = assert_problem(admin.get(f"/tenants?{query}"), 400)
    assert problem["type"] == f"/problems/{slug}"
    assert support.world() == before


def test_tenant_page_token_round_trip():
    from functions.manage_tenants.service import after_tenant, tenant_page_token

    token = tenant_page_token(TENANT)
    assert after_tenant(token) == TENANT and TENANT not in token
    assert after_tenant(None) is None and after_tenant("") is None
    # Not canonical (upper case) inside a well-formed encoding: refused before any path is built.
    from shared.errors import BadRequest
    with pytest.raises(BadRequest):
        after_tenant(tenant_page_token(TENANT.upper()))


GROUP_A = "0a1b2c3d-4e5f-4a6b-8c7d-8e9f0a1b2c3d"
GROUP_B = "1b2c3d4e-5f6a-4b7c-9d8e-9f0a1b2c3d4e"


def test_scope_and_photos_default_then_merge_and_store(admin):
    view = onboard(admin).get_json()
    assert view["settings"]["scope"] == {"groups": [], "excludeDisabled": True, "excludeGuests": True,
                                         "requirePhone": False}
    assert view["settings"]["photos"] is True
    stored = support.db().document(f"tenants/{TENANT}").get().to_dict()["settings"]
    assert "scope" not in stored and "photos" not in stored  # defaults apply without being stored
    patched = admin.patch(f"/tenants/{TENANT}", json={"settings": {
        "scope": {"groups": [GROUP_A, GROUP_B.upper()], "requirePhone": True}, "photos": False}})
    assert patched.status_code == 200, patched.get_data(as_text=True)
    settings = patched.get_json()["settings"]
    assert settings["scope"] == {"groups": [GROUP_A, GROUP_B], "excludeDisabled": True, "excludeGuests": True,
                                 "requirePhone": True}
    assert settings["photos"] is False
    # A later partial scope keeps what it does not name.
    again = admin.patch(f"/tenants/{TENANT}", json={"settings": {"scope": {"excludeGuests": False}}}).get_json()
    assert again["settings"]["scope"] == {"groups": [GROUP_A, GROUP_B], "excludeDisabled": True,
                                          "excludeGuests": False, "requirePhone": True}
    stored = support.db().document(f"tenants/{TENANT}").get().to_dict()["settings"]
    assert stored["scope"] == again["settings"]["scope"] and stored["photos"] is False
    assert admin.get(f"/tenants/{TENANT}").get_json() == again


@pytest.mark.parametrize("settings, problem_type", [
    ({"scope": {"groups": ["not-a-guid"]}}, "invalid-scope-group"),
    ({"scope": {"groups": [GROUP_A, GROUP_A]}}, "duplicate-scope-group"),
    ({"scope": {"groups": [GROUP_A, GROUP_A.upper()]}}, "duplicate-scope-group"),
    ({"scope": {"groups": [str(uuid.UUID(int=i)) for i in range(21)]}}, "too-many-scope-groups"),
    ({"scope": {"groups": GROUP_A}}, "invalid-scope-group"),
    ({"scope": {"groups": [7]}}, "invalid-scope-group"),
    ({"scope": {"excludeDisabled": "yes"}}, "invalid-settings"),
    ({"scope": {"requirePhone": 1}}, "invalid-settings"),
    ({"scope": {"excludeGuests": None}}, "invalid-settings"),
    ({"scope": {"departments": ["Sales"]}}, "unknown-field"),
    ({"scope": ["groups"]}, "invalid-settings"),
    ({"photos": "true"}, "invalid-settings"),
    ({"photos": None}, "invalid-settings"),
])
def test_invalid_scope_or_photos_is_400_and_changes_nothing(admin, settings, problem_type):
    onboard(admin)
    before = support.world()
    problem = assert_problem(admin.patch(f"/tenants/{TENANT}", json={"settings": settings}), 400)
    assert problem["type"] == f"/problems/{problem_type}"
    assert_problem(admin.post("/tenants", json={"tenantId": str(uuid.uuid4()), "name": "X", "settings": settings}),
                   400)
    assert support.world() == before


def test_twenty_groups_are_accepted(admin):
    groups = [str(uuid.UUID(int=i + 1)) for i in range(20)]
    created = onboard(admin, settings={"scope": {"groups": groups}})
    assert created.status_code == 201 and created.get_json()["settings"]["scope"]["groups"] == groups
