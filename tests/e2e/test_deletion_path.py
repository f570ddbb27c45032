"""The deletion path through the processes of the local stack: manage_tenants / register_device →
Pub/Sub emulator → push subscription → handle_deletion → receipt `completed` and `verified`; and a
handler that keeps failing ends in `deletion-requests-dead-letter`, from where an operator replays it."""
from __future__ import annotations

import base64
import json
import urllib.request

import pytest

from local.stack import BUCKET, DEAD_LETTER_SUBSCRIPTION, DELETION_TOPIC, MAX_DELIVERY_ATTEMPTS, PROJECT, LocalStack
from tests import seed, support
from tests.e2e.processes import Processes

pytestmark = pytest.mark.e2e


def others(tenant_id: str):
    documents, objects = support.world()

    def keep(path: str) -> bool:
        return not seed.belongs_to(path, tenant_id) and not path.startswith("deletionReceipts/")

    return {p: d for p, d in documents.items() if keep(p)}, {n: o for n, o in objects.items() if keep(n)}


def leftovers(tenant_id: str) -> list[str]:
    documents, objects = support.world()
    return [p for p in list(documents) + list(objects) if seed.belongs_to(p, tenant_id)]


def test_a_tenant_deletion_travels_from_the_api_to_a_verified_receipt(deletion_push):
    processes = Processes(deletion_push)
    doomed, kept = processes.onboard("Fabrikam AG"), processes.onboard("Contoso GmbH")
    for tenant_id in (doomed, kept):
        for _ in range(2):
            processes.diagnostics(tenant_id, processes.register(tenant_id))
        processes.attach(tenant_id, b"id,value\n1,2\n", "text/csv")
    before = others(doomed)
    rate_windows = len(list(support.db().collection(f"tenants/{doomed}/rateWindows").stream()))
    assert rate_windows in (1, 2)  # the registrations' UTC minute(s)

    response = processes.admin("DELETE", f"/tenants/{doomed}")

    assert response.status_code == 202
    request_id = response.json()["requestId"]
    receipt = processes.receipt(request_id)
    assert receipt["verified"] is True and receipt["kind"] == "tenant"
    # The tenant, 2 devices, 3 manifests, the registration counters and the audit events of its onboarding
    # and of this deletion request: every document is counted.
    assert receipt["deleted"] == {"documents": 1 + 2 + 3 + rate_windows + 2, "files": 3}
    assert leftovers(doomed) == [] and others(doomed) == before
    assert processes.admin("GET", f"/tenants/{doomed}").status_code == 404
    log = (deletion_push.state_dir / "handle_deletion.log").read_text()
    assert any(request_id in line and "deletion completed" in line for line in log.splitlines())
    # The receipt proves what was deleted without naming it.
    assert doomed not in json.dumps(support.db().document(f"deletionReceipts/{request_id}").get().to_dict(),
                                    default=str)


def test_revoking_and_unregistering_devices_travel_the_same_path(deletion_push):
    processes = Processes(deletion_push)
    tenant_id = processes.onboard()
    revoked, unregistered, kept = (processes.register(tenant_id) for _ in range(3))
    for device_id in (revoked, unregistered, kept):
        processes.diagnostics(tenant_id, device_id)

    revoke = processes.admin("DELETE", f"/tenants/{tenant_id}/devices/{revoked}")
    unregister = processes.app(tenant_id, "DELETE", f"/{unregistered}")

    assert revoke.status_code == 202 and unregister.status_code == 202
    for request_id in (revoke.json()["requestId"], unregister.json()["requestId"]):
        receipt = processes.receipt(request_id)
        assert receipt["kind"] == "device" and receipt["verified"] is True
        assert receipt["deleted"] == {"documents": 2, "files": 1}
    left = leftovers(tenant_id)
    assert not [p for p in left if revoked in p or unregistered in p]
    assert len([p for p in left if kept in p]) == 2  # the device document and its object


# -- dead letters ----------------------------------------------------------------------------------
MISSING_BUCKET = "technical-files-not-created"


@pytest.fixture(scope="module")
def misconfigured_stack(stack, tmp_path_factory):
    """A second, separate stack whose functions are pointed at a bucket that does not exist.

    Nothing in the code knows about this: every Storage call of handle_deletion fails as it would in
    production with a wrong TECHNICAL_FILES_BUCKET, so every delivery fails and Pub/Sub gives up.
    """
    second = LocalStack(state_dir=tmp_path_factory.mktemp("misconfigured-stack"),
                        extra_env={"TECHNICAL_FILES_BUCKET": MISSING_BUCKET})
    second.start()
    yield second
    second.stop()


def test_a_deletion_that_keeps_failing_ends_in_the_dead_letter_topic_and_can_be_replayed(misconfigured_stack):
    processes = Processes(misconfigured_stack)
    tenant_id = processes.onboard()

    response = processes.admin("DELETE", f"/tenants/{tenant_id}")

    assert response.status_code == 202
    request_id = response.json()["requestId"]
    dead = processes.pull(DEAD_LETTER_SUBSCRIPTION, timeout=120)
    assert [m["data"] for m in dead] == [{"type": "tenant.delete", "tenantId": tenant_id, "requestId": request_id}]
    log = (misconfigured_stack.state_dir / "handle_deletion.log").read_text().splitlines()
    assert len([line for line in log if "deletion failed" in line]) >= MAX_DELIVERY_ATTEMPTS
    # Nothing was claimed: the receipt is pending, the tenant is still marked.
    assert processes.admin("GET", f"/receipts/{request_id}").json()["status"] == "pending"
    assert processes.admin("GET", f"/tenants/{tenant_id}").json()["status"] == "deleting"

    # The operator fixes the cause (here: creates the bucket) and replays the dead letter as it is.
    bucket = urllib.request.Request(f"{misconfigured_stack.urls['gcs']}/storage/v1/b?project={PROJECT}",
                                    method="POST", data=json.dumps({"name": MISSING_BUCKET}).encode(),
                                    headers={"Content-Type": "application/json"})
    urllib.request.urlopen(bucket, timeout=10).close()
    processes.pubsub("POST", f"topics/{DELETION_TOPIC}:publish", {"messages": [
        {"data": base64.b64encode(json.dumps(dead[0]["data"]).encode()).decode()}]})

    receipt = processes.receipt(request_id)
    assert receipt["verified"] is True and processes.admin("GET", f"/tenants/{tenant_id}").status_code == 404
    assert MISSING_BUCKET != BUCKET
