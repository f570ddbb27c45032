"""handle_deletion through its real entry point (real CloudEvents, structured and binary) against the
emulators, plus the reliability properties of the cascade: duplicates, crashes midway, poison,
tenant isolation, and registrations racing a tenant deletion."""
from __future__ import annotations

import json
import os
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.errors import Forbidden, TransientError
from shared.events import DeletionRequest, parse_deletion_message, receipt_subject
from tests import seed, support
from tests.conftest import make_client
from tests.faults import FaultyClients

MODES = ("structured", "binary")


@pytest.fixture
def handler(emulators):
    return make_client("handle_deletion")


def receipt_key() -> bytes:
    return os.environ["RECEIPT_KEY"].encode()


def receipts_for(request: DeletionRequest) -> list[str]:
    """IDs of the receipts about the same subject as `request` (whatever their requestId)."""
    subject = receipt_subject(receipt_key(), request)
    return [path.split("/", 1)[1] for path, doc in support.firestore_snapshot().items()
            if path.startswith("deletionReceipts/") and doc.get("subject") == subject]


def world_without(tenant_id: str, also: tuple[str, ...] = ()):
    """The world minus the tenant's documents/objects and minus receipts (which deletion writes)."""
    documents, objects = support.world()
    def keep(path):
        return not seed.belongs_to(path, tenant_id) and not path.startswith("deletionReceipts/") \
            and path not in also
    return ({p: d for p, d in documents.items() if keep(p)}, {n: o for n, o in objects.items() if keep(n)})


def tenant_leftovers(tenant_id: str) -> list[str]:
    documents, objects = support.world()
    return sorted(p for p in list(documents) + list(objects) if seed.belongs_to(p, tenant_id))


def send(handler, data: bytes, mode: str = "structured"):
    return seed.post_event(handler, seed.pubsub_event(data), mode)


def assert_receipt(request_id: str, kind: str, subject_request: DeletionRequest, documents: int | None,
                   files: int | None):
    receipt = support.db().document(f"deletionReceipts/{request_id}").get().to_dict()
    assert receipt["status"] == "completed" and receipt["verified"] is True and receipt["kind"] == kind
    assert receipt["subject"] == receipt_subject(receipt_key(), subject_request)
    assert receipt["completedAt"] >= receipt["requestedAt"]
    if documents is not None:
        assert receipt["deleted"] == {"documents": documents, "files": files}
    text = json.dumps(receipt, default=str)
    for value in (subject_request.tenant_id, subject_request.target_id):
        assert value is None or value not in text
    return receipt


# -- the cascade, kind by kind ---------------------------------------------------------------------
@pytest.mark.parametrize("mode", MODES)
def test_tenant_deletion_removes_everything_and_writes_a_verified_receipt(handler, log_lines, mode):
    doomed = seed.populated_tenant(devices=3, files_per_device=2, tenant_files=2, stray_objects=2)
    neighbour = seed.populated_tenant()
    before = world_without(doomed["tenantId"])
    request_id = seed.new_id()

    response = send(handler, seed.deletion_message("tenant", doomed["tenantId"], request_id), mode)

    assert response.status_code == 200, response.get_data(as_text=True)
    assert tenant_leftovers(doomed["tenantId"]) == []
    assert world_without(doomed["tenantId"]) == before
    assert tenant_leftovers(neighbour["tenantId"]) != []
    assert_receipt(request_id, "tenant", DeletionRequest("tenant", doomed["tenantId"], request_id),
                   doomed["documents"], doomed["objects"])
    completed = [json.loads(line) for line in log_lines if '"deletion completed"' in line]
    assert completed and completed[-1]["tenantId"] == doomed["tenantId"] and completed[-1]["verified"] is True


@pytest.mark.parametrize("mode", MODES)
def test_device_deletion_removes_the_device_and_its_files_only(handler, mode):
    shape = seed.populated_tenant(devices=3, files_per_device=2, tenant_files=1, stray_objects=0)
    tenant_id, doomed, *_others = shape["tenantId"], *shape["devices"]
    seed.put_object(f"tenants/{tenant_id}/devices/{doomed}/written-without-manifest.json")
    doomed_files = [path.rsplit("/", 1)[1] for path, document in support.firestore_snapshot().items()
                    if "/files/" in path and document.get("deviceId") == doomed]
    request_id = seed.new_id()
    before = world_without("-", ())

    response = send(handler, seed.deletion_message("device", tenant_id, request_id, doomed), mode)

    assert response.status_code == 200
    documents, objects = support.world()
    gone = {f"tenants/{tenant_id}/devices/{doomed}"} | {f"tenants/{tenant_id}/files/{f}" for f in doomed_files}
    assert not gone & set(documents)
    assert not [name for name in objects if f"/devices/{doomed}/" in name]
    expected_documents = {p: d for p, d in before[0].items() if p not in gone}
    assert {p: d for p, d in documents.items() if not p.startswith("deletionReceipts/")} == expected_documents
    assert objects == {n: o for n, o in before[1].items() if f"/devices/{doomed}/" not in n}
    assert documents[f"tenants/{tenant_id}"]["status"] == "active"
    assert_receipt(request_id, "device", DeletionRequest("device", tenant_id, request_id, doomed),
                   1 + len(doomed_files), len(doomed_files) + 1)


@pytest.mark.parametrize("mode", MODES)
def test_file_deletion_removes_manifest_and_object(handler, mode):
    tenant_id = seed.tenant()
    device_id = seed.device(tenant_id)
    file_id, name = seed.technical_file(tenant_id, device_id)
    kept_id, kept_name = seed.technical_file(tenant_id)
    request_id = seed.new_id()

    response = send(handler, seed.deletion_message("file", tenant_id, request_id, file_id), mode)

    assert response.status_code == 200
    documents, objects = support.world()
    assert f"tenants/{tenant_id}/files/{file_id}" not in documents and name not in objects
    assert f"tenants/{tenant_id}/files/{kept_id}" in documents and kept_name in objects
    assert f"tenants/{tenant_id}/devices/{device_id}" in documents
    assert_receipt(request_id, "file", DeletionRequest("file", tenant_id, request_id, file_id), 1, 1)


def test_a_manifest_naming_another_tenants_object_never_deletes_it(handler, log_lines):
    victim = seed.tenant()
    _, victim_object = seed.technical_file(victim)
    attacker = seed.tenant()
    file_id, _ = seed.technical_file(attacker, name=victim_object, with_object=False)
    before = world_without(attacker)

    assert send(handler, seed.deletion_message("file", attacker, seed.new_id(), file_id)).status_code == 200
    assert send(handler, seed.deletion_message("tenant", attacker)).status_code == 200

    assert world_without(attacker) == before and victim_object in support.bucket_snapshot()
    assert any("outside its tenant" in line for line in log_lines)


@pytest.mark.parametrize("kind", ["tenant", "device", "file"])
def test_deleting_what_is_already_gone_completes_with_zero_counts(handler, kind):
    tenant_id = seed.tenant() if kind != "tenant" else seed.new_id()
    target = seed.new_id() if kind != "tenant" else None
    request_id = seed.new_id()
    before = world_without("-")

    assert send(handler, seed.deletion_message(kind, tenant_id, request_id, target)).status_code == 200

    assert world_without("-") == before
    assert_receipt(request_id, kind, DeletionRequest(kind, tenant_id, request_id, target), 0, 0)


def test_the_tenant_admin_request_is_finished_under_its_own_receipt(handler, emulators):
    admin = make_client("manage_tenants")
    tenant_id = seed.new_id()
    assert admin.post("/tenants", json={"tenantId": tenant_id, "name": "Fabrikam AG"}).status_code == 201
    seed.device(tenant_id)
    request_id = admin.delete(f"/tenants/{tenant_id}").get_json()["requestId"]

    assert send(handler, seed.deletion_message("tenant", tenant_id, request_id)).status_code == 200

    view = admin.get(f"/receipts/{request_id}").get_json()
    assert view["status"] == "completed" and view["verified"] is True and view["deleted"]["documents"] >= 1
    assert tenant_leftovers(tenant_id) == []
    assert receipts_for(DeletionRequest("tenant", tenant_id, request_id)) == [request_id]


def test_a_completed_receipt_is_final_even_if_the_tenant_is_onboarded_again(handler):
    tenant_id = seed.tenant()
    message = seed.deletion_message("tenant", tenant_id)
    assert send(handler, message).status_code == 200
    seed.tenant(tenant_id)  # onboarded again later; an old duplicate must not delete the new tenant
    seed.device(tenant_id)

    assert send(handler, message).status_code == 200

    assert len(tenant_leftovers(tenant_id)) == 2


# -- idempotency -----------------------------------------------------------------------------------
def test_the_same_event_three_times_gives_one_receipt(handler):
    shape = seed.populated_tenant()
    request_id = seed.new_id()
    message = seed.deletion_message("tenant", shape["tenantId"], request_id)

    statuses = [send(handler, message, MODES[i % 2]).status_code for i in range(3)]

    assert statuses == [200, 200, 200]
    assert tenant_leftovers(shape["tenantId"]) == []
    assert receipts_for(DeletionRequest("tenant", shape["tenantId"], request_id)) == [request_id]
    assert_receipt(request_id, "tenant", DeletionRequest("tenant", shape["tenantId"], request_id),
                   shape["documents"], shape["objects"])


@pytest.mark.parametrize("kind", ["tenant", "device"])
def test_the_same_event_delivered_concurrently_gives_one_receipt_and_exact_counts(emulators, kind):
    shape = seed.populated_tenant(devices=4, files_per_device=3, tenant_files=3)
    target = shape["devices"][0] if kind == "device" else None
    request_id = seed.new_id()
    message = seed.deletion_message(kind, shape["tenantId"], request_id, target)
    clients = [make_client("handle_deletion") for _ in range(4)]
    barrier = threading.Barrier(len(clients))

    def deliver(index: int) -> int:
        barrier.wait()
        return send(clients[index], message, MODES[index % 2]).status_code

    with ThreadPoolExecutor(len(clients)) as pool:
        statuses = list(pool.map(deliver, range(len(clients))))

    assert statuses == [200] * len(clients)
    assert receipts_for(DeletionRequest(kind, shape["tenantId"], request_id, target)) == [request_id]
    if kind == "tenant":
        assert tenant_leftovers(shape["tenantId"]) == []
        counts = (shape["documents"], shape["objects"])
    else:
        assert not [p for p in tenant_leftovers(shape["tenantId"]) if target in p]
        counts = (1 + 3, 3)
    assert_receipt(request_id, kind, DeletionRequest(kind, shape["tenantId"], request_id, target), *counts)


def test_a_request_id_reused_for_another_subject_is_poison(handler, log_lines):
    first, second = seed.populated_tenant(), seed.populated_tenant()
    request_id = seed.new_id()
    assert send(handler, seed.deletion_message("tenant", first["tenantId"], request_id)).status_code == 200
    before = support.world()

    for kind, target in (("tenant", None), ("device", second["devices"][0]), ("file", second["files"][0])):
        response = send(handler, seed.deletion_message(kind, second["tenantId"], request_id, target))
        assert response.status_code == 200  # acknowledged: redelivery could never succeed

    assert support.world() == before
    assert sum('"ERROR"' in line and "poison" in line for line in log_lines) == 3


# -- poison ----------------------------------------------------------------------------------------
def poison_events() -> list:
    t, d, f, r = (seed.new_id() for _ in range(4))
    bad_ids = ["", " ", "null", t.upper(), t[:-1], t + "0", "{" + t + "}", t.replace("-", ""), f"{t}/..",
               f"../{t}", "..", ".", "/", f"{t}/devices/{d}", f"{t}%2F..", "%2F", "*", "?", "[a-z]*", "**/*",
               f"{t}\x00", f"{t}\n", "x" * 10000, "tenants/" + t, t[:-1] + "g", "0" * 36]
    bad_ids = [bad for bad in bad_ids if bad != t]  # t.upper() of an all-digit ID would be valid
    events = []
    for bad in bad_ids:  # every ID field, malformed in every way
        events.append(seed.deletion_message("tenant", bad, r))
        events.append(seed.deletion_message("device", t, r, bad))
        events.append(seed.deletion_message("file", t, bad, f))
    events += [
        json.dumps({"type": "tenant.delete", "requestId": r}).encode(),
        json.dumps({"type": "device.delete", "tenantId": t, "requestId": r}).encode(),
        json.dumps({"type": "file.delete", "tenantId": t, "requestId": r}).encode(),
        json.dumps({"tenantId": t, "requestId": r}).encode(),
        json.dumps({"type": None, "tenantId": t, "requestId": r}).encode(),
        json.dumps({"type": "tenant.purge", "tenantId": t, "requestId": r}).encode(),
        json.dumps({"type": "TENANT.DELETE", "tenantId": t, "requestId": r}).encode(),
        json.dumps({"type": "*.delete", "tenantId": t, "requestId": r}).encode(),
        json.dumps({"type": "tenant.delete", "tenantId": [t], "requestId": r}).encode(),
        json.dumps({"type": "tenant.delete", "tenantId": {"id": t}, "requestId": r}).encode(),
        json.dumps({"type": "tenant.delete", "tenantId": 42, "requestId": r}).encode(),
        json.dumps({"type": "tenant.delete", "tenantId": t, "requestId": r, "pad": "x" * 5000}).encode(),
        json.dumps([{"type": "tenant.delete", "tenantId": t, "requestId": r}]).encode(),
        b"null", b"42", b'"tenant.delete"', b"{", b"{}", b"\xff\xfe", "é".encode("latin-1"), b"\x00" * 10,
    ]
    events = [seed.pubsub_event(data) for data in events]
    events += [seed.pubsub_event(encoded=e) for e in ("!!!not base64!!!", "abc", "====", "", "YWJj\n=", 12)]
    events += [seed.pubsub_event(message=m) for m in (None, "x", {"messageId": "1"}, {"data": None})]
    events += [seed.pubsub_event(event_data=d) for d in ("plain", 7, {"nomessage": True})]
    return events


def test_a_hundred_poison_messages_are_acknowledged_and_delete_nothing(handler, log_lines):
    for _ in range(2):
        seed.populated_tenant()
    # Tenant-shaped targets that prefix tricks could reach if IDs were not validated first.
    seed.put_object("tenants/stray.json")
    seed.put_object("tenants/..%2F/x.json")
    before = support.world()
    events = poison_events()
    assert len(events) >= 100

    statuses = [seed.post_event(handler, event, MODES[i % 2]).status_code for i, event in enumerate(events)]

    assert statuses == [200] * len(events)
    assert support.world() == before
    errors = [json.loads(line) for line in log_lines if '"ERROR"' in line and "poison" in line]
    assert len(errors) == len(events)
    assert all("x" * 100 not in line and "tenants/" not in line for line in log_lines)


# -- crashes midway --------------------------------------------------------------------------------
def _count_steps(shape_factory, message_factory) -> int:
    shape = shape_factory()
    faulty = FaultyClients()
    faulty.service().delete(parse_deletion_message(message_factory(shape)))
    return faulty.calls


@pytest.mark.parametrize("kind", ["tenant", "device", "file"])
def test_a_deletion_killed_after_k_steps_is_finished_by_redelivery(handler, emulators, kind):
    def shape_factory():
        emulators.reset_data()
        return seed.populated_tenant(devices=2, files_per_device=1, tenant_files=1, stray_objects=1)

    def target_of(shape):
        return {"tenant": None, "device": shape["devices"][0], "file": shape["files"][0]}[kind]

    request_id = seed.new_id()
    def message_of(shape):
        return seed.deletion_message(kind, shape["tenantId"], request_id, target_of(shape))
    steps = _count_steps(shape_factory, message_of)
    assert steps >= 8

    for k in range(steps):  # die after k calls to Firestore or Storage, then Pub/Sub delivers again
        shape = shape_factory()
        neighbour = seed.populated_tenant(devices=1, tenant_files=1)
        untouched = world_without(shape["tenantId"])
        faulty = FaultyClients(fail_after=k)
        with pytest.raises(Exception):  # noqa: B017 - a crash at step k, whatever the client library makes of it
            faulty.service().delete(parse_deletion_message(message_of(shape)))
        faulty.expire_open_transactions()

        response = send(handler, message_of(shape), MODES[k % 2])

        assert response.status_code == 200, f"redelivery after a crash at step {k} failed"
        target = target_of(shape)
        left = tenant_leftovers(shape["tenantId"])
        if kind == "tenant":
            assert left == [], k
        else:
            assert not [p for p in left if target in p], k
        assert world_without(shape["tenantId"]) == untouched, k
        assert neighbour["tenantId"] in json.dumps(list(support.firestore_snapshot()))
        receipt = support.db().document(f"deletionReceipts/{request_id}").get().to_dict()
        assert receipt["status"] == "completed" and receipt["verified"] is True, k
        assert receipt["deleted"]["documents"] <= (shape["documents"] if kind == "tenant" else 2)


def test_a_single_transient_fault_anywhere_is_retried_to_exact_counts(emulators):
    def fresh():
        emulators.reset_data()
        return seed.populated_tenant(devices=2, files_per_device=1, tenant_files=1, stray_objects=1)

    request_id = seed.new_id()
    steps = _count_steps(fresh, lambda s: seed.deletion_message("tenant", s["tenantId"], request_id))
    for k in range(0, steps, 2):
        shape = fresh()
        message = seed.deletion_message("tenant", shape["tenantId"], request_id)
        glitchy = FaultyClients(fail_after=k, failures=1)
        service = glitchy.service()
        for _attempt in range(3):
            try:
                service.delete(parse_deletion_message(message))
                break
            except Exception:  # noqa: BLE001 - redelivered, as Pub/Sub would
                continue
        assert tenant_leftovers(shape["tenantId"]) == [], k
        assert_receipt(request_id, "tenant", DeletionRequest("tenant", shape["tenantId"], request_id),
                       None, None)


def test_a_missing_bucket_fails_the_delivery_instead_of_claiming_success(emulators):
    shape = seed.populated_tenant()
    request_id = seed.new_id()
    service = FaultyClients(bucket_name="no-such-bucket").service()

    with pytest.raises(TransientError):
        file_message = seed.deletion_message("file", shape["tenantId"], request_id, shape["files"][0])
        service.delete(parse_deletion_message(file_message))
    with pytest.raises(TransientError):
        service.delete(parse_deletion_message(seed.deletion_message("tenant", shape["tenantId"])))

    receipt = support.db().document(f"deletionReceipts/{request_id}").get().to_dict()
    assert receipt["status"] == "pending" and receipt["verified"] is False


# -- isolation -------------------------------------------------------------------------------------
def _similar_ids(draw, count: int) -> list[str]:
    """IDs that share their first 33 characters (and so would collide under any prefix trick)."""
    base = str(draw(st.uuids()))[:-3]
    suffixes = draw(st.lists(st.integers(0, 0xFFF), min_size=count, max_size=count, unique=True))
    return [f"{base}{suffix:03x}" for suffix in suffixes]


@st.composite
def worlds(draw):
    tenant_ids = _similar_ids(draw, draw(st.integers(2, 4)))
    tenants = []
    for tenant_id in tenant_ids:
        device_ids = _similar_ids(draw, draw(st.integers(0, 3)))
        files = [(draw(st.sampled_from([None, *device_ids])), draw(st.sampled_from(["json", "xml", "csv"])))
                 for _ in range(draw(st.integers(0, 3)))]
        tenants.append((tenant_id, device_ids, files))
    victim = draw(st.integers(0, len(tenants) - 1))
    kinds = ["tenant"] + (["device"] if tenants[victim][1] else []) + (["file"] if tenants[victim][2] else [])
    return tenants, victim, draw(st.sampled_from(kinds)), draw(st.integers(0, 10))


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(worlds())
def test_deleting_one_thing_leaves_every_other_tenant_byte_for_byte_unchanged(handler, emulators, spec):
    tenants, victim, kind, pick = spec
    emulators.reset_data()
    created = []
    for tenant_id, device_ids, files in tenants:
        seed.tenant(tenant_id)
        for device_id in device_ids:
            seed.device(tenant_id, device_id)
        file_ids = [seed.technical_file(tenant_id, owner, fmt)[0] for owner, fmt in files]
        created.append((tenant_id, device_ids, file_ids))
    tenant_id, device_ids, file_ids = created[victim]
    target = {"tenant": None, "device": device_ids[pick % len(device_ids)] if device_ids else None,
              "file": file_ids[pick % len(file_ids)] if file_ids else None}[kind]
    others_before = world_without(tenant_id)

    assert send(handler, seed.deletion_message(kind, tenant_id, seed.new_id(), target)).status_code == 200

    assert world_without(tenant_id) == others_before
    left = tenant_leftovers(tenant_id)
    if kind == "tenant":
        assert left == []
    else:
        assert not [p for p in left if target in p] and f"tenants/{tenant_id}" in left


# -- registration racing a tenant deletion ---------------------------------------------------------
def test_registrations_racing_a_tenant_deletion_never_leave_an_orphan_device(handler, emulators):
    store = support.store()
    tenants, devices = store.tenants, store.devices
    outcomes = {"registered": 0, "refused": 0, "raced": 0}
    lock = threading.Lock()
    for trial in range(12):
        shape = seed.populated_tenant(devices=3, files_per_device=1, tenant_files=1, stray_objects=0)
        tenant_id = shape["tenantId"]
        stop = threading.Event()
        first_registration = threading.Event()
        deleting = threading.Event()

        def register_until_refused(stop: threading.Event = stop, tenant_id: str = tenant_id,
                                   deleting: threading.Event = deleting,
                                   first_registration: threading.Event = first_registration) -> None:
            while not stop.is_set():
                try:
                    devices.register(tenant_id, seed.new_id(), seed.now(), max_devices=10000)
                    with lock:
                        outcomes["registered"] += 1
                        outcomes["raced"] += deleting.is_set()
                    first_registration.set()
                except Forbidden:
                    with lock:
                        outcomes["refused"] += 1
                    return
                except Exception:  # noqa: BLE001 - contention (ABORTED) is a failed registration, not an orphan
                    continue

        with ThreadPoolExecutor(4) as pool:
            futures = [pool.submit(register_until_refused) for _ in range(4)]
            assert first_registration.wait(10)
            time.sleep(random.uniform(0, 0.05))  # land the deletion at a different point of the stream
            deleting.set()
            message = seed.deletion_message("tenant", tenant_id)
            for _attempt in range(5):  # Pub/Sub would redeliver a failed attempt
                if send(handler, message, MODES[trial % 2]).status_code == 200:
                    break
            stop.set()
            for future in futures:
                future.result(timeout=30)

        assert tenant_leftovers(tenant_id) == [], f"orphan after trial {trial}"
        assert tenants.get(tenant_id) is None
    # Registrations went on while the deletion ran, and were refused from the mark onwards.
    assert outcomes["raced"] > 0 and outcomes["refused"] > 0


@pytest.mark.parametrize("event_type", ["google.cloud.storage.object.v1.finalized",
                                        "google.cloud.pubsub.topic.v1.messagePublished.extra", "x"])
def test_a_valid_deletion_message_in_another_event_type_is_poison_and_deletes_nothing(handler, log_lines,
                                                                                       event_type):
    shape = seed.populated_tenant()
    message = seed.deletion_message("tenant", shape["tenantId"])
    event = seed.pubsub_event(message)
    event["type"] = event_type
    before = support.world()
    assert seed.post_event(handler, event).status_code == 200  # acknowledged: redelivery cannot help
    assert support.world() == before
    assert any('"ERROR"' in line and "message-published" in line for line in log_lines)
