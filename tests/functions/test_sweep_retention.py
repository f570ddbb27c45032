"""sweep_retention against the emulators with a controllable clock: exactly what passed its deadline is
requested (deterministic requestIds, pending receipts first), orphan objects older than a day go, and
nothing else is touched."""
from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta

import pytest

from functions.sweep_retention.service import RetentionSweeper, deterministic_request_id
from local.stack import DELETION_TOPIC, PROJECT
from shared import wiring
from shared.events import DeletionPublisher, DeletionRequest, receipt_subject
from shared.store.objects import object_name
from shared.wiring import publisher_client
from tests import seed, support
from tests.conftest import make_client

DAY = timedelta(days=1)


@pytest.fixture
def topic(emulators):
    """A topic of its own, so this test sees exactly what its sweeper published."""
    with support.own_topic("sweep-test") as (name, tap):
        yield name, tap


class Clock:
    def __init__(self, now: datetime):
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def sweeper(topic_name: str, clock: Clock, **options) -> RetentionSweeper:
    publisher = DeletionPublisher(publisher_client(), PROJECT, topic_name)
    store = support.store()
    requester = wiring.deletion_requester(support.settings(), store, clock, publisher)
    return RetentionSweeper(store, requester, clock,
                            device_inactivity_days=180, stuck_deletion_minutes=60, **options)


def as_request(message: dict) -> DeletionRequest:
    kind = message["type"].split(".")[0]
    return DeletionRequest(kind, message["tenantId"], message["requestId"],
                           message.get("deviceId") or message.get("fileId"))


def pulled(tap, count: int) -> set[DeletionRequest]:
    messages = tap.pull(count, timeout=10)
    assert len(messages) == count, messages
    return {as_request(m) for m in messages}


def expected(kind: str, tenant_id: str, target: str | None, deadline: datetime) -> DeletionRequest:
    request = DeletionRequest(kind, tenant_id, "", target)
    return DeletionRequest(kind, tenant_id, deterministic_request_id(request, deadline), target)


def receipt_ids() -> set[str]:
    return {path.split("/", 1)[1] for path in support.firestore_snapshot() if path.startswith("deletionReceipts/")}


def test_exactly_what_passed_its_deadline_is_requested(topic):
    topic_name, tap = topic
    now = datetime(2031, 3, 1, 12, 0, tzinfo=UTC)
    clock = Clock(now)
    active, other = seed.tenant(), seed.tenant()
    stuck_request = seed.new_id()
    stuck = seed.tenant(status="deleting", requested_at=now - timedelta(hours=2), request_id=stuck_request)
    recent = seed.tenant(status="deleting", requested_at=now - timedelta(minutes=10))
    boundary = seed.tenant(status="deleting", requested_at=now - timedelta(minutes=60))
    expired_file, _ = seed.technical_file(active, delete_after=now - timedelta(seconds=1), with_object=False)
    later_file, _ = seed.technical_file(active, delete_after=now + timedelta(hours=1), with_object=False)
    due_now_file, _ = seed.technical_file(active, delete_after=now, with_object=False)
    silent = seed.device(active, last_seen=now - 181 * DAY)
    recent_device = seed.device(active, last_seen=now - 179 * DAY)
    boundary_device = seed.device(active, last_seen=now - 180 * DAY)
    long_gone = seed.device(other, last_seen=now - 400 * DAY)
    other_expired, _ = seed.technical_file(other, long_gone, delete_after=now - 10 * DAY, with_object=False)
    before = support.world()

    report = sweeper(topic_name, clock).sweep()

    want = {
        expected("file", active, expired_file, now - timedelta(seconds=1)),
        expected("file", other, other_expired, now - 10 * DAY),
        expected("device", active, silent, now - DAY),
        expected("device", other, long_gone, now - 220 * DAY),
        DeletionRequest("tenant", stuck, stuck_request),
    }
    assert pulled(tap, len(want)) == want
    assert tap.pull(1, timeout=1) == []
    assert (report.files, report.devices, report.tenants, report.published) == (2, 2, 1, 5)
    # Pending receipts were written for each request; nothing else changed.
    documents, objects = support.world()
    receipts = {p.split("/", 1)[1]: d for p, d in documents.items() if p.startswith("deletionReceipts/")}
    assert set(receipts) == {r.request_id for r in want}
    key = os.environ["RECEIPT_KEY"].encode()
    for request in want:
        receipt = receipts[request.request_id]
        assert receipt["status"] == "pending" and receipt["kind"] == request.kind
        assert receipt["subject"] == receipt_subject(key, request)
    assert {p: d for p, d in documents.items() if p not in [f"deletionReceipts/{r}" for r in receipts]} == before[0]
    assert objects == before[1]

    # The same sweep again: the same requestIds, no new receipts.
    sweeper(topic_name, clock).sweep()
    assert pulled(tap, len(want)) == want and receipt_ids() == set(receipts)

    # Two days later the rest is due, and each request keeps its ID.
    clock.now = now + 2 * DAY
    sweeper(topic_name, clock).sweep()
    later = want | {
        expected("file", active, later_file, now + timedelta(hours=1)),
        expected("file", active, due_now_file, now),
        expected("device", active, recent_device, now + DAY),
        expected("device", active, boundary_device, now),
        DeletionRequest("tenant", recent, support.db().document(f"tenants/{recent}").get().get("deletionRequestId")),
        DeletionRequest("tenant", boundary,
                        support.db().document(f"tenants/{boundary}").get().get("deletionRequestId")),
    }
    assert pulled(tap, len(later)) == later


def test_completed_requests_are_not_published_again(topic):
    topic_name, tap = topic
    now = datetime(2031, 3, 1, tzinfo=UTC)
    tenant_id = seed.tenant()
    file_id, _ = seed.technical_file(tenant_id, delete_after=now - DAY, with_object=False)
    clock = Clock(now)
    sweeper(topic_name, clock).sweep()
    (request,) = pulled(tap, 1)
    support.db().document(f"deletionReceipts/{request.request_id}").update({"status": "completed"})

    report = sweeper(topic_name, clock).sweep()

    assert report.skipped == 1 and report.published == 0 and report.files == 0


def test_a_long_deletion_that_makes_progress_is_not_driven_again(topic, log_lines):
    """Only a tenant deletion whose receipt shows no progress for STUCK_DELETION_MINUTES is re-published:
    a deletion going through continuations keeps setting `progressAt`."""
    topic_name, tap = topic
    now = datetime(2031, 3, 1, tzinfo=UTC)
    requested = now - timedelta(hours=5)
    key = os.environ["RECEIPT_KEY"].encode()
    tenants = {}
    for label, progress in (("busy", now - timedelta(minutes=2)), ("quiet", now - timedelta(minutes=61)),
                            ("never", None), ("no receipt", "missing")):
        request_id = seed.new_id()
        tenant_id = seed.tenant(status="deleting", requested_at=requested, request_id=request_id)
        tenants[label] = DeletionRequest("tenant", tenant_id, request_id)
        if progress != "missing":
            support.store().receipts.create_pending(request_id, "tenant", receipt_subject(
                key, tenants[label]), requested)
        if isinstance(progress, datetime):
            support.store().receipts.progressed(request_id, progress)

    report = sweeper(topic_name, Clock(now)).sweep()

    assert pulled(tap, 3) == {tenants["quiet"], tenants["never"], tenants["no receipt"]}
    assert tap.pull(1, timeout=1) == []
    assert (report.tenants, report.progressing) == (3, 1)
    # One line per re-driven deletion (the "deletion stuck" alert counts them): IDs only.
    stuck_lines = [json.loads(line) for line in log_lines if '"stuck tenant deletion published again"' in line]
    assert {(line["tenantId"], line["requestId"]) for line in stuck_lines} == {
        (r.tenant_id, r.request_id) for r in (tenants["quiet"], tenants["never"], tenants["no receipt"])}


def test_the_sweep_pages_through_every_tenant(topic):
    topic_name, tap = topic
    now = datetime(2031, 3, 1, tzinfo=UTC)
    want = set()
    for _ in range(4):
        tenant_id = seed.tenant()
        for index in range(3):
            deadline = now - timedelta(hours=index + 1)
            file_id, _ = seed.technical_file(tenant_id, delete_after=deadline, with_object=False)
            want.add(expected("file", tenant_id, file_id, deadline))

    report = sweeper(topic_name, Clock(now), page_size=5).sweep()

    assert pulled(tap, len(want)) == want
    assert report.batches == 3 and report.files == 12


def test_orphan_objects_older_than_a_day_are_removed_and_nothing_else(emulators):
    tenant_id, other = seed.tenant(), seed.tenant()
    device_id = seed.device(tenant_id)
    kept = [seed.technical_file(tenant_id)[1], seed.technical_file(tenant_id, device_id, fmt="csv")[1]]
    manifest_only_id, _ = seed.technical_file(tenant_id, with_object=False)
    foreign_id, _ = seed.technical_file(other, with_object=False)
    orphans = [
        object_name(tenant_id, seed.new_id(), "json"),
        object_name(tenant_id, seed.new_id(), "xml", device_id),
        object_name(tenant_id, foreign_id, "json"),  # a manifest with this ID exists, but in another tenant
        object_name(tenant_id, manifest_only_id, "xml"),  # the manifest names another object
        f"tenants/{tenant_id}/tenant/not-an-id.json",
        "tenants/../outside.json",
        "elsewhere/thing.csv",
    ]
    for name in orphans:
        seed.put_object(name, b"{}")
    before = support.world()
    real_now = seed.now()

    young = sweeper(DELETION_TOPIC, Clock(real_now + timedelta(hours=23))).sweep()
    assert support.world() == before and young.orphans == 0 and young.scanned == len(orphans) + len(kept)

    report = sweeper(DELETION_TOPIC, Clock(real_now + 2 * DAY)).sweep()

    documents, objects = support.world()
    assert documents == before[0]
    assert objects == {name: value for name, value in before[1].items() if name not in orphans}
    assert sorted(objects) == sorted(kept) and report.orphans == len(orphans)


def test_the_orphan_scan_is_bounded_per_run(emulators):
    tenant_id = seed.tenant()
    for _ in range(6):
        seed.put_object(object_name(tenant_id, seed.new_id(), "json"))
    clock = Clock(seed.now() + 2 * DAY)

    first = sweeper(DELETION_TOPIC, clock, orphan_scan_limit=4).sweep()

    assert first.scanned == 4 and first.orphans == 4
    assert len(support.bucket_snapshot()) == 2
    second = sweeper(DELETION_TOPIC, clock, orphan_scan_limit=4).sweep()
    assert second.orphans == 2 and support.bucket_snapshot() == {}


@pytest.mark.parametrize("mode", ["structured", "binary"])
def test_the_scheduler_tick_runs_the_sweep_through_the_entry_point(emulators, mode):
    tap = support.Tap(DELETION_TOPIC)
    try:
        stuck_request = seed.new_id()
        stuck = seed.tenant(status="deleting", requested_at=seed.now() - timedelta(hours=3),
                            request_id=stuck_request)
        tenant_id = seed.tenant()
        file_id, _ = seed.technical_file(tenant_id, delete_after=seed.now() - timedelta(minutes=5))
        tick = seed.pubsub_event(b'{"type":"retention.sweep"}')

        response = seed.post_event(make_client("sweep_retention"), tick, mode)

        assert response.status_code == 200, response.get_data(as_text=True)
        messages = tap.pull(2)
        assert {"type": "tenant.delete", "tenantId": stuck, "requestId": stuck_request} in messages
        (file_message,) = [m for m in messages if m["type"] == "file.delete"]
        assert file_message["tenantId"] == tenant_id and file_message["fileId"] == file_id
        receipt = support.db().document(f"deletionReceipts/{file_message['requestId']}").get().to_dict()
        assert receipt["status"] == "pending" and receipt["kind"] == "file"
    finally:
        tap.close()
