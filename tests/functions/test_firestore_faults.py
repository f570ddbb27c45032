"""What Firestore answers under load and contention, which the emulator never does (docs/architecture.md,
"What we rely on from Microsoft and Google"): bulk writes answered UNAVAILABLE or ABORTED per write, a
BatchWrite call failing as a whole, transactions aborted on a read or at commit. The answers are rewritten
in the test process (tests/faults.py, `FirestoreFaults`); the code under test gets a plain client.

A deletion must finish in one delivery with exact counts (every redelivery costs one of Pub/Sub's
`max_delivery_attempts`), and a registration in one request with one device and one count.
"""
from __future__ import annotations

import uuid

import pytest

from functions.handle_deletion.service import DeletionService
from shared.clock import utc_now
from shared.errors import TransientError
from shared.events import parse_deletion_message
from tests import seed, support, tokens
from tests.conftest import make_client
from tests.faults import ABORTED, UNAVAILABLE, FirestoreFaults

PERMISSION_DENIED = 7


class NoContinuations:
    def publish(self, request) -> str:
        raise AssertionError("a deletion with the whole budget never hands over")


def deletion_over(faults: FirestoreFaults) -> DeletionService:
    config = support.settings()
    store = support.store(db=faults.db, bucket=support.bucket())
    return DeletionService(store, config.receipt_key, utc_now, NoContinuations())


def receipt(request_id: str) -> dict:
    return support.db().document(f"deletionReceipts/{request_id}").get().to_dict()


def tenant_left(tenant_id: str) -> list[str]:
    documents, objects = support.world()
    return sorted(p for p in list(documents) + list(objects) if seed.belongs_to(p, tenant_id))


def deliveries_until_done(service: DeletionService, message: bytes, limit: int = 30) -> int:
    """How many deliveries Pub/Sub needs until one is acknowledged (a raise is a redelivery)."""
    for delivery in range(1, limit + 1):
        try:
            outcome = service.delete(parse_deletion_message(message))
        except Exception:  # noqa: BLE001 - Pub/Sub redelivers whatever the failure
            continue
        assert outcome.verified
        return delivery
    raise AssertionError(f"not done after {limit} deliveries")


# -- deletion: the BulkWriter ----------------------------------------------------------------------
@pytest.mark.parametrize("whole_batches", [0, 2], ids=["per-write faults", "and failed BatchWrite calls"])
def test_a_tenant_deletion_under_bulk_write_faults_completes_in_one_delivery_with_exact_counts(emulators,
                                                                                               whole_batches):
    shape = seed.populated_tenant(devices=120, files_per_device=1, tenant_files=5, stray_objects=2)
    neighbour = seed.populated_tenant(devices=3)
    untouched = {p: d for p, d in support.firestore_snapshot().items() if not seed.belongs_to(p, shape["tenantId"])}
    faults = FirestoreFaults(one_in=3, times=2, whole_batches=whole_batches)  # UNAVAILABLE, then ABORTED
    request_id = seed.new_id()

    deliveries = deliveries_until_done(deletion_over(faults),
                                       seed.deletion_message("tenant", shape["tenantId"], request_id))

    assert deliveries == 1
    # About a third of the documents (by the hash of their names) failed twice each.
    assert faults.faulted_writes >= shape["documents"] // 2 and faults.left("whole_batches") == 0
    assert tenant_left(shape["tenantId"]) == []
    done = receipt(request_id)
    assert done["status"] == "completed" and done["verified"] is True
    assert done["deleted"] == {"documents": shape["documents"], "files": shape["objects"]}
    assert {p: d for p, d in support.firestore_snapshot().items() if p in untouched} == untouched
    assert neighbour["tenantId"] in str(list(untouched))


def test_a_device_deletion_under_bulk_write_faults_completes_in_one_delivery_with_exact_counts(emulators):
    shape = seed.populated_tenant(devices=2, files_per_device=12, tenant_files=2)
    device_id = shape["devices"][0]
    faults = FirestoreFaults(one_in=2, times=2, whole_batches=1)
    request_id = seed.new_id()

    deliveries = deliveries_until_done(deletion_over(faults),
                                       seed.deletion_message("device", shape["tenantId"], request_id, device_id))

    assert deliveries == 1 and faults.faulted_writes > 0
    left = tenant_left(shape["tenantId"])
    assert not [p for p in left if device_id in p] and len(left) == shape["documents"] - 13 + shape["objects"] - 12
    assert receipt(request_id)["deleted"] == {"documents": 13, "files": 12}


def test_a_write_refused_for_good_is_not_retried_and_fails_the_delivery(emulators):
    """Only transient codes are retried: PERMISSION_DENIED is tried once, and the attempt fails (Pub/Sub
    redelivers; nothing is counted that was not deleted)."""
    shape = seed.populated_tenant(devices=6, files_per_device=0, tenant_files=0, stray_objects=0)
    faults = FirestoreFaults(one_in=1, times=1000, codes=(PERMISSION_DENIED,))
    request_id = seed.new_id()

    message = seed.deletion_message("tenant", shape["tenantId"], request_id)
    with pytest.raises(TransientError):
        deletion_over(faults).delete(parse_deletion_message(message))

    assert faults.faulted_writes == shape["documents"] - 1  # each device once; the tenant document waits
    assert len(tenant_left(shape["tenantId"])) == shape["documents"]
    assert receipt(request_id)["deleted"] == {"documents": 0, "files": 0}


# -- registration: the transaction under contention ------------------------------------------------
@pytest.fixture
def register(emulators, monkeypatch):
    """register_device's entry point, its process-wide Firestore client answering through `FirestoreFaults`."""
    from functions.register_device.handler import validator_and_service
    from shared import wiring

    admin = make_client("manage_tenants")
    tenant_id = str(uuid.uuid4())
    assert admin.post("/tenants", json={"tenantId": tenant_id, "name": "Contoso"}).status_code == 201
    db = wiring.firestore_client(support.settings().project)
    monkeypatch.setattr(db, "_firestore_api_internal", db._firestore_api)
    validator_and_service.reset()

    def faulty(**faults: int) -> FirestoreFaults:
        return FirestoreFaults(db, **faults)

    yield tenant_id, make_client("register_device"), faulty
    validator_and_service.reset()


@pytest.mark.parametrize(("reads", "commits", "writes"), [(3, 0, 0), (0, 7, 0), (4, 6, 2)])
def test_a_registration_under_contention_succeeds_in_one_request_with_one_device_and_one_count(stack, register,
                                                                                               reads, commits, writes):
    tenant_id, app, faulty = register
    access = {"Authorization": f"Bearer {tokens.token(stack, tenant_id)}"}
    faults = faulty(aborted_reads=reads, aborted_commits=commits, aborted_writes=writes)
    device_id = str(uuid.uuid4())

    response = app.post("/", json={"deviceId": device_id}, headers=access)

    assert response.status_code == 201, response.get_data(as_text=True)
    assert faults.left("aborted_reads") == faults.left("aborted_commits") == faults.left("aborted_writes") == 0
    devices = list(support.db().collection(f"tenants/{tenant_id}/devices").stream())
    assert [d.id for d in devices] == [device_id]
    [window] = list(support.db().collection(f"tenants/{tenant_id}/rateWindows").stream())
    assert window.get("count") == 1
    # The same device again under contention: a refresh (200), still one device and one count.
    faulty(aborted_reads=reads, aborted_commits=commits)
    assert app.post("/", json={"deviceId": device_id}, headers=access).status_code == 200
    assert len(list(support.db().collection(f"tenants/{tenant_id}/devices").stream())) == 1
    assert support.db().document(window.reference.path).get().get("count") == 1


def test_contention_that_does_not_end_is_a_503_with_retry_after_and_writes_nothing(stack, register):
    tenant_id, app, faulty = register
    access = {"Authorization": f"Bearer {tokens.token(stack, tenant_id)}"}
    faulty(aborted_commits=10_000)
    before = support.world()

    response = app.post("/", json={"deviceId": str(uuid.uuid4())}, headers=access)

    assert response.status_code == 503 and int(response.headers["Retry-After"]) >= 1
    assert support.world() == before


def test_the_fault_injection_answers_as_documented():
    """The injector itself: which writes fail, with which codes, and that nothing failed was sent."""
    faults = FirestoreFaults(one_in=1, times=2)
    assert [faults._code_for("a"), faults._code_for("a"), faults._code_for("a")] == [UNAVAILABLE, ABORTED, None]
