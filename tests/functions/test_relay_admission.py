"""Sync admission of relay_contacts (functions/relay_contacts/admission.py) through the real entry point,
the fake Graph and the Firestore emulator: a shared round takes one of RELAY_FULL_SYNCS_PER_TENANT leases
(phones joining it take none), `503 sync-busy` before the first byte when a new round is needed past it,
leases released at the end and lapsing when an instance dies, incremental syncs never refused. In-process,
another instance is a freshly built service (`instance()`): rounds are never shared across processes."""
from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest

from functions.relay_contacts import handler as relay_handler
from shared.clock import utc_now
from shared.store.leases import SyncLeaseRepository
from tests import support
from tests.conftest import make_client, registered_device
from tests.openapi_contract import assert_conforms

pytestmark = pytest.mark.fresh_directories

TENANT = "7d8e9fa0-b1c2-4d3e-8f4a-5b6c7d8e9fa0"
LIMIT = 2


@pytest.fixture
def relay(emulators, fake, stack, monkeypatch):
    monkeypatch.setenv("RELAY_FULL_SYNCS_PER_TENANT", str(LIMIT))
    relay_handler.validator_and_service.reset()
    admin = make_client("manage_tenants")
    assert admin.post("/tenants", json={"tenantId": TENANT, "name": "Contoso",
                                        "settings": {"defaultRegion": "DE"}}).status_code == 201
    fake.directory(TENANT, 2500)  # three Graph pages: a stream not read on holds its lease
    yield make_client("relay_contacts")
    monkeypatch.delenv("RELAY_FULL_SYNCS_PER_TENANT")
    relay_handler.validator_and_service.reset()


def instance():
    """The relay of another instance (its own rounds)."""
    relay_handler.validator_and_service.reset()
    return make_client("relay_contacts")


def new_device(stack) -> dict[str, str]:
    return registered_device(stack, TENANT)


def start(relay, headers, cursor=None):
    """Opens a sync without reading its body (the stream stays open, as with a slow phone)."""
    return relay.get("/" + (f"?cursor={cursor}" if cursor else ""), headers=headers, buffered=False)


def lines_of(response) -> list[dict]:
    return [json.loads(line) for line in b"".join(response.response).decode().splitlines()]


def leases() -> dict[str, dict]:
    return {path.rsplit("/", 1)[1]: document for path, document in support.firestore_snapshot().items()
            if path.startswith(f"tenants/{TENANT}/syncLeases/")}


def held() -> int:
    return SyncLeaseRepository(support.db()).held(TENANT, utc_now())


def assert_busy(response) -> None:
    assert response.status_code == 503
    body = response.get_data()
    assert_conforms("GET", "/", 503, response.headers["Content-Type"], body, "relay_contacts")
    problem = json.loads(body)
    assert problem["type"] == "/problems/sync-busy" and problem["status"] == 503
    assert 5 <= int(response.headers["Retry-After"]) <= 120


def wait_until(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)


def test_rounds_take_slots_and_give_them_back(stack, relay):
    phones = [new_device(stack) for _ in range(LIMIT + 2)]
    cursor = lines_of(start(relay, phones[0]))[-1]["cursor"]  # a finished sync holds nothing
    assert held() == 0

    first = start(relay, phones[0])
    joined = start(relay, phones[1])  # the same round on the same instance: no lease of its own
    assert first.status_code == joined.status_code == 200 and held() == 1
    other = instance()
    second = start(other, phones[2])
    assert second.status_code == 200 and held() == LIMIT
    assert all(set(document) == {"expiresAt"} for document in leases().values())
    assert set(leases()) <= {str(slot) for slot in range(LIMIT)}

    refused = start(instance(), phones[3])  # a third instance needs a third round
    assert_busy(refused)
    # Incremental syncs are never limited, however busy the tenant is.
    incremental = start(other, phones[0], cursor)
    assert incremental.status_code == 200 and lines_of(incremental)[0]["op"] != "reset"

    for stream in (first, joined):
        finished = lines_of(stream)
        assert finished[0] == {"op": "reset"} and finished[-1]["op"] == "end"
    wait_until(lambda: held() == LIMIT - 1)
    admitted = start(instance(), phones[3])
    assert admitted.status_code == 200 and lines_of(admitted)[-1]["op"] == "end"
    lines_of(second)
    wait_until(lambda: held() == 0)


def fill(stack) -> list:
    """Every lease of the tenant held by a round of its own instance; the streams, to read at the end."""
    return [start(instance(), new_device(stack)) for _ in range(LIMIT)]


def test_the_retry_after_is_jittered(stack, relay):
    phone = new_device(stack)
    streams = fill(stack)
    relay = instance()
    waits = set()
    for _ in range(6):
        response = start(relay, phone)
        assert_busy(response)
        waits.add(int(response.headers["Retry-After"]))
    assert len(waits) > 1
    for stream in streams:
        lines_of(stream)


def test_a_lease_is_released_when_the_phone_goes_away(stack, relay):
    stream = start(relay, new_device(stack))
    assert held() == 1
    next(iter(stream.response))  # the phone reads a little, then disconnects
    stream.close()
    wait_until(lambda: held() == 0)


def test_leases_of_a_dead_instance_lapse(stack, relay):
    now = utc_now()
    for slot in range(LIMIT):  # every slot held by an instance that died a while ago
        support.db().document(f"tenants/{TENANT}/syncLeases/{slot}").set({"expiresAt": now - timedelta(seconds=1)})
    response = start(relay, new_device(stack))
    assert response.status_code == 200
    assert held() == 1
    lines_of(response)
    for slot in range(LIMIT):  # held and not lapsed: refused
        support.db().document(f"tenants/{TENANT}/syncLeases/{slot}").set({"expiresAt": now + timedelta(minutes=5)})
    assert_busy(start(relay, new_device(stack)))


def test_a_full_sync_from_an_expired_cursor_or_changed_settings_needs_a_round(stack, relay, fake):
    phone = new_device(stack)
    cursor = lines_of(start(relay, phone))[-1]["cursor"]
    streams = fill(stack)
    assert held() == LIMIT

    fake.call("POST", f"tenants/{TENANT}/expire-delta-tokens")
    relay = instance()
    assert_busy(start(relay, phone, cursor))
    for stream in streams:
        lines_of(stream)
    wait_until(lambda: held() == 0)
    again = lines_of(start(relay, phone, cursor))
    assert again[0] == {"op": "reset"} and again[-1]["op"] == "end"

    cursor = again[-1]["cursor"]
    streams = fill(stack)
    assert make_client("manage_tenants").patch(f"/tenants/{TENANT}", json={
        "settings": {"defaultRegion": "AT"}}).status_code == 200
    assert_busy(start(instance(), phone, cursor))
    for stream in streams:
        lines_of(stream)


def test_concurrent_acquisitions_never_exceed_the_limit(emulators):
    repository = SyncLeaseRepository(support.db())
    barrier = threading.Barrier(12)

    def acquire(_):
        barrier.wait()
        return repository.acquire(TENANT, 3, utc_now(), 600)

    with ThreadPoolExecutor(12) as pool:
        granted = [lease for lease in pool.map(acquire, range(12)) if lease is not None]

    assert len(granted) == 3 and {lease.lease_id for lease in granted} == {"0", "1", "2"}
    # A release only frees our own lease: one that lapsed and was taken over stays with its new holder.
    taken_over = repository.acquire(TENANT, 3, utc_now() + timedelta(seconds=601), 600)  # every slot lapsed
    assert taken_over is not None
    for lease in granted:
        repository.release(lease)
    assert repository.held(TENANT, utc_now() + timedelta(seconds=601)) == 1


def test_a_group_scoped_round_takes_a_lease_too(stack, relay, fake):
    """A scoped full sync reads group members, not /users/delta: its round is admitted all the same."""
    group = fake.create_group(TENANT, users={"range": [0, 1500]})  # two member pages: the stream stays open
    assert make_client("manage_tenants").patch(f"/tenants/{TENANT}", json={
        "settings": {"scope": {"groups": [group]}}}).status_code == 200
    streams = fill(stack)
    assert all(r.status_code == 200 for r in streams) and held() == LIMIT
    assert_busy(start(instance(), new_device(stack)))
    for stream in streams:
        assert lines_of(stream)[-1]["op"] == "end"
    wait_until(lambda: held() == 0)
