"""Deletion of any size (docs/deletion.md, "Long deletions (any size)"): an attempt that reaches
`DELETION_ATTEMPT_SECONDS` records its counts, publishes a continuation with the same requestId and
returns; the receipt stays `pending` until the attempt that verifies completes it, once.

Attempts run against the emulators; continuations go through a real Pub/Sub topic (a tap pulls them) and
are delivered again the way Pub/Sub would, including twice, late, and after a crash.
"""
from __future__ import annotations

import json
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import pytest

from functions.handle_deletion import handler as deletion_handler
from functions.handle_deletion.service import DeletionService
from local.stack import DELETION_TOPIC, PROJECT
from shared.clock import utc_now
from shared.errors import TransientError
from shared.events import DeletionPublisher, DeletionRequest, parse_deletion_message
from shared.store.erasure import DocumentEraser
from shared.wiring import publisher_client
from tests import seed, support
from tests.conftest import make_client

TINY = 1e-9  # every attempt stops after its first step: the most continuations a deletion can have


@pytest.fixture
def topic(emulators):
    """A topic of its own for continuations, and a tap that sees what was published to it."""
    with support.own_topic("continuations") as (name, tap):
        yield name, tap


class OneDeleteAtATime:
    """The bucket, with its deletes serialized. Cloud Storage answers the second of two concurrent deletes of
    one object 404; fake-gcs-server's memory backend sometimes answers both 200 (measured: 1 in 200 triples
    of concurrent deletes), which would count an object twice. Tests that race attempts over one tenant use
    this so they measure the service, not the fake's race."""

    def __init__(self, bucket):
        self._bucket = bucket
        self._lock = threading.Lock()

    def __getattr__(self, name):
        return getattr(self._bucket, name)

    def delete_blob(self, *args, **kwargs):
        with self._lock:
            return self._bucket.delete_blob(*args, **kwargs)


def service(topic_name: str, attempt_seconds: float = TINY, chunk_size: int = 4,
            racing: bool = False) -> DeletionService:
    config = support.settings()
    db = support.db()
    bucket = OneDeleteAtATime(support.bucket()) if racing else None
    store = replace(support.store(db=db, bucket=bucket), eraser=DocumentEraser(db, 500, 10000, chunk_size))
    return DeletionService(store, config.receipt_key, utc_now, DeletionPublisher(publisher_client(), PROJECT,
                                                                                 topic_name), attempt_seconds)


def receipt(request_id: str) -> dict:
    return support.db().document(f"deletionReceipts/{request_id}").get().to_dict()


def tenant_left(tenant_id: str) -> list[str]:
    documents, objects = support.world()
    return sorted(p for p in list(documents) + list(objects) if seed.belongs_to(p, tenant_id))


def big_tenant() -> dict:
    # 1 tenant + 6 devices + 12 device files + 3 tenant files = 22 documents; 15 manifests' objects + 2 strays.
    return seed.populated_tenant(devices=6, files_per_device=2, tenant_files=3, stray_objects=2)


def run_to_the_end(deletion: DeletionService, tap, first: bytes, limit: int = 40) -> list[dict]:
    """Delivers `first`, then each continuation it publishes, until one attempt finishes; returns the
    continuations seen (as published)."""
    seen, message = [], first
    for _ in range(limit):
        outcome = deletion.delete(parse_deletion_message(message))
        if not outcome.continued:
            assert tap.pull(1, timeout=1) == []
            return seen
        [published] = tap.pull(1)
        seen.append(published)
        message = json.dumps(published).encode()
    raise AssertionError("the deletion did not finish")


def test_counts_add_up_exactly_across_continuations_and_the_receipt_completes_once(topic):
    name, tap = topic
    shape, neighbour = big_tenant(), seed.populated_tenant()
    untouched = {p: d for p, d in support.firestore_snapshot().items() if not seed.belongs_to(p, shape["tenantId"])}
    request_id = seed.new_id()
    deletion = service(name)

    first = deletion.delete(parse_deletion_message(seed.deletion_message("tenant", shape["tenantId"], request_id)))
    assert first.continued and not first.verified
    progress = receipt(request_id)
    assert progress["status"] == "pending" and progress["completedAt"] is None and progress["progressAt"]
    [published] = tap.pull(1)
    assert published == {"type": "tenant.delete", "tenantId": shape["tenantId"], "requestId": request_id,
                         "continuation": 1}

    rest = run_to_the_end(deletion, tap, json.dumps(published).encode())

    assert [m["continuation"] for m in rest] == list(range(2, len(rest) + 2))
    assert {m["requestId"] for m in rest} == {request_id}
    assert len(rest) >= shape["documents"] // 4  # chunks of 4 documents, one chunk per attempt
    done = receipt(request_id)
    assert done["status"] == "completed" and done["verified"] is True
    # Every document (the tenant's own included) and every object, each counted once.
    assert done["deleted"] == {"documents": shape["documents"], "files": shape["objects"]}
    assert done["progressAt"] >= progress["progressAt"]
    assert tenant_left(shape["tenantId"]) == []
    after = {p: d for p, d in support.firestore_snapshot().items() if not p.startswith("deletionReceipts/")}
    assert after == {p: d for p, d in untouched.items() if not p.startswith("deletionReceipts/")}
    assert neighbour["tenantId"] in json.dumps(list(after))


def test_a_continuation_delivered_twice_changes_no_count(topic):
    name, tap = topic
    shape = big_tenant()
    request_id = seed.new_id()
    deletion = service(name)
    deletion.delete(parse_deletion_message(seed.deletion_message("tenant", shape["tenantId"], request_id)))
    [continuation] = tap.pull(1)
    message = json.dumps(continuation).encode()

    # Pub/Sub delivers continuation 1 twice (one after the other, and then twice at once).
    deletion.delete(parse_deletion_message(message))
    deletion.delete(parse_deletion_message(message))
    barrier = threading.Barrier(2)

    def deliver(_):
        barrier.wait()
        for _delivery in range(3):
            try:
                return deletion.delete(parse_deletion_message(message))
            except TransientError:  # every attempt's receipt transaction aborted by the others: Pub/Sub redelivers
                continue
        raise AssertionError("three deliveries of one attempt did not get through")

    with ThreadPoolExecutor(2) as pool:
        list(pool.map(deliver, range(2)))
    duplicates = tap.pull(4)
    assert len(duplicates) == 4 and {m["continuation"] for m in duplicates} == {2}

    # Every duplicate chain goes on to the end; the counts stay exact and the receipt completes once.
    chains = [run_to_the_end(deletion, tap, json.dumps(m).encode()) for m in duplicates]
    assert sum(not chain for chain in chains) >= 1
    done = receipt(request_id)
    assert done["status"] == "completed" and done["verified"] is True
    assert done["deleted"] == {"documents": shape["documents"], "files": shape["objects"]}
    assert tenant_left(shape["tenantId"]) == []


def test_duplicate_final_attempts_complete_the_receipt_once(emulators):
    shape = big_tenant()
    request_id = seed.new_id()
    message = seed.deletion_message("tenant", shape["tenantId"], request_id, continuation=3)
    deletion = service(DELETION_TOPIC, attempt_seconds=600, racing=True)  # long enough to finish in one attempt
    barrier = threading.Barrier(3)

    def deliver(_):
        barrier.wait()
        for _delivery in range(3):
            try:
                return deletion.delete(parse_deletion_message(message))
            except TransientError:  # every attempt's receipt transaction aborted by the others: Pub/Sub redelivers
                continue
        raise AssertionError("three deliveries of one attempt did not get through")

    with ThreadPoolExecutor(3) as pool:
        outcomes = list(pool.map(deliver, range(3)))

    assert not any(o.continued for o in outcomes)
    assert [o.already_completed for o in outcomes].count(False) == 1
    done = receipt(request_id)
    assert done["status"] == "completed" and done["deleted"] == {"documents": shape["documents"],
                                                                 "files": shape["objects"]}


def test_a_continuation_after_completion_does_nothing(topic):
    name, tap = topic
    shape = big_tenant()
    request_id = seed.new_id()
    deletion = service(name)
    deletion.delete(parse_deletion_message(seed.deletion_message("tenant", shape["tenantId"], request_id)))
    [early] = tap.pull(1)
    run_to_the_end(deletion, tap, json.dumps(early).encode())
    done = receipt(request_id)
    # The tenant is onboarded again under the same ID: a late continuation must not touch it.
    seed.tenant(shape["tenantId"])
    world = support.world()

    late = deletion.delete(parse_deletion_message(json.dumps(early).encode()))

    assert late.already_completed and not late.continued and (late.documents, late.files) == (0, 0)
    assert tap.pull(1, timeout=1) == []
    assert receipt(request_id) == done and support.world() == world


def test_a_crash_between_recording_counts_and_publishing_is_healed_by_redelivery(topic):
    name, tap = topic
    shape = big_tenant()
    request_id = seed.new_id()
    message = seed.deletion_message("tenant", shape["tenantId"], request_id)

    # The continuation cannot be published (its topic does not exist): the attempt's counts are on the
    # receipt, and the delivery fails, so Pub/Sub delivers the same message again.
    with pytest.raises(TransientError):
        service(f"missing-{uuid.uuid4().hex[:8]}").delete(parse_deletion_message(message))
    crashed = receipt(request_id)
    assert crashed["status"] == "pending"
    assert crashed["deleted"]["files"] == shape["objects"]  # the first step: every object (one page)

    run_to_the_end(service(name), tap, message)

    done = receipt(request_id)
    assert done["status"] == "completed" and done["verified"] is True
    assert done["deleted"] == {"documents": shape["documents"], "files": shape["objects"]}
    assert tenant_left(shape["tenantId"]) == []


def test_the_entry_point_hands_over_through_the_deletion_topic(emulators, monkeypatch, log_lines):
    """`handle_deletion` wired from its settings: a tiny DELETION_ATTEMPT_SECONDS makes it publish
    continuations to `deletion-requests`, which the next deliveries finish."""
    monkeypatch.setenv("DELETION_ATTEMPT_SECONDS", "0.000001")
    deletion_handler.deletion_service.reset()
    tap = support.Tap(DELETION_TOPIC)
    try:
        shape = seed.populated_tenant()
        request_id = seed.new_id()
        client = make_client("handle_deletion")
        message = seed.deletion_message("tenant", shape["tenantId"], request_id)
        continuations = 0
        for _ in range(10):
            assert seed.post_event(client, seed.pubsub_event(message)).status_code == 200
            published = tap.pull(1, timeout=2)
            if not published:
                break
            continuations += 1
            assert parse_deletion_message(json.dumps(published[0]).encode()) == DeletionRequest(
                "tenant", shape["tenantId"], request_id, None, continuations)
            message = json.dumps(published[0]).encode()
        assert continuations >= 2
        done = receipt(request_id)
        assert done["status"] == "completed"
        assert done["deleted"] == {"documents": shape["documents"], "files": shape["objects"]}
        handed_over = [json.loads(line) for line in log_lines
                       if '"deletion continues in a new attempt"' in line]
        assert [line["continuation"] for line in handed_over] == list(range(continuations))
        assert all(shape["tenantId"] == line["tenantId"] for line in handed_over)
    finally:
        tap.close()
        monkeypatch.delenv("DELETION_ATTEMPT_SECONDS")
        deletion_handler.deletion_service.reset()
