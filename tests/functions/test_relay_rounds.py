"""Shared rounds of relay_contacts (functions/relay_contacts/rounds.py) through the real entry point, the fake
Graph and the Firestore emulator: phones of one tenant and settings share one Graph read of the directory;
a phone joining mid-round gets the rest of it and the whole next round, with the earliest round's cursor;
slow, stalled and departing phones leave without holding the others back; Graph failures end every
listener; one lease per round. In-process, "another instance" is a freshly built service (its own rounds)."""
from __future__ import annotations

import json
import random
import time

import pytest

from functions.relay_contacts import handler as relay_handler
from shared.clock import utc_now
from shared.store.leases import SyncLeaseRepository
from tests import support
from tests.conftest import make_client, registered_device

pytestmark = pytest.mark.fresh_directories

TENANT = "8e9fa0b1-c2d3-4e4f-9a5b-6c7d8e9fa0b1"
OTHER_TENANT = "9fa0b1c2-d3e4-4f5a-8b6c-7d8e9fa0b1c3"
USERS = 2500  # three Graph pages of up to 999
PAGES = 3


@pytest.fixture
def settings_env(monkeypatch):
    """Sets relay settings for this test (the relay's components are rebuilt before and after)."""
    def apply(**variables: str) -> None:
        for name, value in variables.items():
            monkeypatch.setenv(name, value)
        relay_handler.validator_and_service.reset()

    yield apply
    monkeypatch.undo()
    relay_handler.validator_and_service.reset()


@pytest.fixture
def relay(emulators, fake, settings_env):
    settings_env()
    admin = make_client("manage_tenants")
    for tenant in (TENANT, OTHER_TENANT):
        assert admin.post("/tenants", json={"tenantId": tenant, "name": "Contoso",
                                            "settings": {"defaultRegion": "DE"}}).status_code == 201
        fake.directory(tenant, USERS)
    return make_client("relay_contacts")


class Phone:
    """One phone's sync, read chunk by chunk (a chunk is a line or one page of lines)."""

    def __init__(self, relay, headers, cursor=None):
        self.response = relay.get("/" + (f"?cursor={cursor}" if cursor else ""), headers=headers, buffered=False)
        assert self.response.status_code == 200, self.response.get_data(as_text=True)[:300]
        self._chunks = iter(self.response.response)
        self.lines: list[dict] = []
        self.pages = 0

    def read(self, chunks: int = 1) -> bool:
        """Reads up to `chunks` chunks; False once the stream has ended."""
        for _ in range(chunks):
            chunk = next(self._chunks, None)
            if chunk is None:
                return False
            lines = [json.loads(line) for line in chunk.decode().splitlines()]
            self.pages += any(line["op"] == "upsert" for line in lines)
            self.lines += lines
        return True

    def read_pages(self, pages: int) -> None:
        target = self.pages + pages
        while self.pages < target:
            assert self.read(), "the stream ended early"

    def finish(self) -> list[dict]:
        while self.read(50):
            pass
        return self.lines

    @property
    def done(self) -> bool:
        return bool(self.lines) and self.lines[-1]["op"] in ("end", "error")

    @property
    def ids(self) -> set[str]:
        return {line["id"] for line in self.lines if line["op"] == "upsert"}

    def close(self) -> None:
        self.response.close()


def finish_all(*phones: Phone) -> None:
    """Reads the phones' streams side by side, a chunk each in turn (as phones on a network would)."""
    reading = list(phones)
    while reading:
        reading = [phone for phone in reading if phone.read()]


def in_scope(fake, tenant=TENANT) -> dict[str, dict]:
    """The users a phone must hold (default scope: live, enabled members), by id."""
    return {e["user"]["id"]: e["user"] for e in fake.users(tenant)
            if e["user"] is not None and e["user"]["accountEnabled"] and e["user"]["userType"] == "Member"}


def delta_pages(fake, tenant=TENANT) -> int:
    return fake.stats()["per_tenant"].get(tenant, {}).get("graph_delta_pages", 0)


def held(tenant=TENANT) -> int:
    return SyncLeaseRepository(support.db()).held(tenant, utc_now())


def wait_until(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)


def complete(phone: Phone, expected: set[str]) -> str:
    """The phone ended a full sync holding exactly `expected`; its cursor."""
    assert phone.lines[0] == {"op": "reset"} and phone.lines[-1]["op"] == "end", phone.lines[-1]
    assert phone.ids == expected
    return phone.lines[-1]["cursor"]


def test_phones_joining_at_the_start_share_one_round(stack, relay, fake):
    expected = set(in_scope(fake))
    first = Phone(relay, registered_device(stack, TENANT))
    second = Phone(relay, registered_device(stack, TENANT))  # the round's first page is still there
    assert held() == 1  # one lease for the round; the joining phone takes none
    finish_all(first, second)
    assert complete(first, expected) == complete(second, expected)  # the same round, the same cursor
    assert delta_pages(fake) == PAGES  # the directory was read once for both
    wait_until(lambda: held() == 0)


def test_a_phone_joining_mid_round_gets_the_rest_and_the_whole_next_round(stack, relay, fake):
    expected = set(in_scope(fake))
    first = Phone(relay, registered_device(stack, TENANT))
    first.read_pages(1)
    late = Phone(relay, registered_device(stack, TENANT))
    late.read_pages(1)  # a page of the first round
    finish_all(first, late)
    first_cursor = complete(first, expected)
    # Its cursor is the earliest round's (the one it joined), so nothing changed meanwhile is lost.
    assert complete(late, expected) == first_cursor
    assert late.pages > PAGES  # the rest of round 1, then all of round 2
    assert delta_pages(fake) == 2 * PAGES
    assert held() == 0
    again = Phone(relay, registered_device(stack, TENANT), first_cursor).finish()
    assert again[0]["op"] != "reset" and again[-1]["op"] == "end"


def test_a_phone_joining_at_the_end_of_a_round_gets_the_whole_next_round(stack, relay, fake):
    expected = set(in_scope(fake))
    first = Phone(relay, registered_device(stack, TENANT))
    first.read_pages(PAGES)  # everything but the end line
    late = Phone(relay, registered_device(stack, TENANT))
    finish_all(first, late)
    complete(first, expected)
    cursor = complete(late, expected)
    assert PAGES <= late.pages <= PAGES + 1
    assert delta_pages(fake) == 2 * PAGES
    follow_up = Phone(relay, registered_device(stack, TENANT), cursor).finish()
    assert follow_up[0]["op"] != "reset" and follow_up[-1]["op"] == "end"


def apply(state: dict[str, dict], lines: list[dict]) -> None:
    """What the app does with a stream: reset, merge upserts by id, remove."""
    for line in lines:
        if line["op"] == "reset":
            state.clear()
        elif line["op"] == "upsert":
            state.setdefault(line["id"], {}).update({k: v for k, v in line.items() if k != "op"})
        elif line["op"] == "remove":
            state.pop(line["id"], None)


@pytest.mark.parametrize("seed", range(1, 6))
def test_every_phone_holds_exactly_the_directory_after_a_full_and_an_incremental_sync(stack, relay, fake, seed):
    """Property: phones start and read at random moments while the directory changes (updates, removals,
    additions); rounds overlap and repeat. After its full sync (retried after `slow-client`) and one
    incremental sync, every phone holds exactly the users in scope, with their current values."""
    rng = random.Random(seed)
    fake.directory(TENANT, 6000)  # seven pages a round
    # A full round lists no removed users (as Graph's first round need not): a user removed while the rounds
    # run leaves the phone only through the incremental sync from the earliest round's cursor.
    fake.configure(tenant=TENANT, delta_initial_removed=False)
    headers = [registered_device(stack, TENANT) for _ in range(5)]
    phones: dict[int, Phone] = {}
    cursors: dict[int, str] = {}
    states: dict[int, dict] = {i: {} for i in range(len(headers))}
    ids = list(in_scope(fake))
    added = 0
    for _step in range(400):
        action = rng.random()
        idle = [i for i in range(len(headers)) if i not in phones and i not in cursors]
        if idle and action < 0.08:
            i = rng.choice(idle)
            phones[i] = Phone(relay, headers[i])
        elif action < 0.45:
            kind = rng.choice(["update", "remove", "remove", "add"])
            if kind == "update":
                fake.changes(TENANT, update=[{"id": rng.choice(ids), "fields": {"jobTitle": f"Title {_step}"}}])
            elif kind == "remove":
                fake.changes(TENANT, remove=[{"id": rng.choice(ids), "reason": "deleted"}])
            else:
                added += 1
                new = fake.changes(TENANT, add=[{"fields": {"displayName": f"New {seed} {added}",
                                                           "jobTitle": "Newcomer"}}])["added"]
                ids += [user["id"] for user in new]
        elif phones:
            i = rng.choice(sorted(phones))
            phone = phones[i]
            phone.read(rng.choice([1, 1, 2]))
            if phone.done:
                del phones[i]
                if phone.lines[-1]["op"] == "end":
                    apply(states[i], phone.lines)
                    cursors[i] = phone.lines[-1]["cursor"]
                else:  # slow-client: the app retries
                    assert phone.lines[-1] == {"op": "error", "code": "slow-client", "retryable": True}
        if len(cursors) == len(headers):
            break
    finish_all(*phones.values())  # the rest read on to their end (or retry after slow-client, below)
    for i, phone in phones.items():
        if phone.lines[-1]["op"] == "end":
            apply(states[i], phone.lines)
            cursors[i] = phone.lines[-1]["cursor"]
    for i in range(len(headers)):
        if i not in cursors:
            lines = Phone(relay, headers[i]).finish()
            apply(states[i], lines)
            cursors[i] = lines[-1]["cursor"]
    truth = in_scope(fake)
    for i, cursor in cursors.items():
        incremental = Phone(relay, headers[i], cursor).finish()
        assert incremental[-1]["op"] == "end"
        apply(states[i], incremental)
        assert set(states[i]) == set(truth), f"phone {i}"
        for user_id, user in truth.items():
            assert states[i][user_id]["jobTitle"] == user.get("jobTitle"), (i, user_id)
            assert states[i][user_id]["displayName"] == user.get("displayName"), (i, user_id)


def test_changed_settings_mid_round_get_a_round_of_their_own(stack, relay, fake):
    expected = set(in_scope(fake))
    first = Phone(relay, registered_device(stack, TENANT))
    first.read_pages(1)
    assert make_client("manage_tenants").patch(f"/tenants/{TENANT}", json={
        "settings": {"fields": ["displayName", "mobilePhone"]}}).status_code == 200
    second = Phone(relay, registered_device(stack, TENANT))
    assert held() == 2  # another fingerprint: another round, another lease
    finish_all(first, second)
    complete(first, expected)
    complete(second, expected)
    assert all(set(line) == {"op", "id", "displayName", "mobilePhone"} for line in second.lines
               if line["op"] == "upsert")
    assert all("jobTitle" in line for line in first.lines if line["op"] == "upsert")
    assert first.pages == PAGES and second.pages == PAGES


def test_two_tenants_at_once_never_share(stack, relay, fake):
    ours, theirs = set(in_scope(fake)), set(in_scope(fake, OTHER_TENANT))
    assert not ours & theirs
    phones = [Phone(relay, registered_device(stack, TENANT)), Phone(relay, registered_device(stack, OTHER_TENANT)),
              Phone(relay, registered_device(stack, TENANT)), Phone(relay, registered_device(stack, OTHER_TENANT))]
    assert held(TENANT) == 1 and held(OTHER_TENANT) == 1
    for phone in phones:
        phone.read_pages(1)
    finish_all(*phones)
    for index, phone in enumerate(phones):
        complete(phone, ours if index % 2 == 0 else theirs)
    assert delta_pages(fake) == PAGES and delta_pages(fake, OTHER_TENANT) == PAGES


def test_a_slow_phone_leaves_with_slow_client_and_holds_nobody_back(stack, relay, fake, settings_env):
    settings_env(RELAY_ROUND_BUFFER_PAGES="2")
    relay = make_client("relay_contacts")
    fake.directory(TENANT, 5000)  # six pages
    expected = set(in_scope(fake))
    slow = Phone(relay, registered_device(stack, TENANT))
    fast = Phone(relay, registered_device(stack, TENANT))
    slow.read()  # the reset line, then nothing for a while
    fast.finish()
    complete(fast, expected)
    slow.finish()
    assert slow.lines[-1] == {"op": "error", "code": "slow-client", "retryable": True}
    assert not any(line["op"] == "end" for line in slow.lines)
    retry = Phone(relay, registered_device(stack, TENANT))  # its retry joins or starts a round
    retry.finish()
    complete(retry, expected)
    wait_until(lambda: held() == 0)


def test_a_phone_that_disconnects_leaves_at_once(stack, relay, fake):
    expected = set(in_scope(fake))
    staying = Phone(relay, registered_device(stack, TENANT))
    leaving = Phone(relay, registered_device(stack, TENANT))
    leaving.read_pages(1)
    leaving.close()
    staying.finish()
    complete(staying, expected)
    assert delta_pages(fake) == PAGES  # nobody needed a second round
    # When the last phone goes, the round stops reading and gives its lease back.
    fake.directory(TENANT, 20000)
    alone = Phone(relay, registered_device(stack, TENANT))
    alone.read_pages(1)
    alone.close()
    wait_until(lambda: held() == 0)
    pages = delta_pages(fake)
    time.sleep(1.0)
    settled = delta_pages(fake)
    assert settled <= pages + 1 < PAGES + 22  # at most the page in flight when the last phone left
    time.sleep(1.0)
    assert delta_pages(fake) == settled  # and then no further read


def test_a_phone_that_stops_reading_is_dropped_after_the_write_timeout(stack, relay, fake, settings_env):
    settings_env(RELAY_WRITE_TIMEOUT_SECONDS="1")
    relay = make_client("relay_contacts")
    stalled = Phone(relay, registered_device(stack, TENANT))
    stalled.read_pages(1)
    assert held() == 1
    wait_until(lambda: held() == 0, timeout=5)  # dropped: the round stopped and gave its lease back
    pages = delta_pages(fake)
    assert pages <= PAGES
    stalled.finish()
    assert stalled.lines[-1] == {"op": "error", "code": "slow-client", "retryable": True}


@pytest.mark.parametrize("fault, line", [
    ({"status": 429, "retry_after": 120}, {"op": "error", "code": "graph-unavailable", "retryable": True}),
    ({"status": 503, "retry_after": 120}, {"op": "error", "code": "graph-unavailable", "retryable": True}),
    ({"status": 401, "code": "InvalidAuthenticationToken"},
     {"op": "error", "code": "graph-refused", "retryable": False}),
])
def test_a_graph_failure_mid_round_ends_every_listener(stack, relay, fake, fault, line):
    phones = [Phone(relay, registered_device(stack, TENANT)) for _ in range(3)]
    for phone in phones:
        phone.read()  # the reset line: the first page is in
    fake.faults({"target": "delta", "count": None, "pages": "next", "skip": 0, **fault})
    finish_all(*phones)
    for phone in phones:
        assert phone.lines[0] == {"op": "reset"} and phone.lines[-1] == line
        assert not any(entry["op"] == "end" for entry in phone.lines)
    fake.faults()
    wait_until(lambda: held() == 0)
    after = Phone(relay, registered_device(stack, TENANT))  # a failed round takes nobody any more
    after.finish()
    complete(after, set(in_scope(fake)))


def test_one_lease_per_round_released_when_it_ends(stack, relay, fake, settings_env):
    settings_env(RELAY_FULL_SYNCS_PER_TENANT="1")
    relay = make_client("relay_contacts")
    expected = set(in_scope(fake))
    first = Phone(relay, registered_device(stack, TENANT))
    first.read_pages(1)
    # The round's phones and the rounds that follow for them take no further lease (the limit is 1).
    joiners = [Phone(relay, registered_device(stack, TENANT)) for _ in range(3)]
    assert held() == 1
    # Another instance needs a round of its own: the tenant has none left.
    relay_handler.validator_and_service.reset()
    refused = make_client("relay_contacts").get("/", headers=registered_device(stack, TENANT))
    assert refused.status_code == 503 and refused.get_json()["type"] == "/problems/sync-busy"
    finish_all(first, *joiners)
    for phone in [first, *joiners]:
        complete(phone, expected)
    wait_until(lambda: held() == 0)
    assert delta_pages(fake) == 2 * PAGES


def test_each_round_logs_one_line_with_counts_only(stack, relay, fake, log_lines):
    first = Phone(relay, registered_device(stack, TENANT))
    first.read_pages(1)
    late = Phone(relay, registered_device(stack, TENANT))
    finish_all(first, late)
    wait_until(lambda: sum('"round streamed"' in line for line in log_lines) == 2)
    rounds = [json.loads(line) for line in log_lines if '"round streamed"' in line]
    assert [r["round"] for r in rounds] == [1, 2]
    for entry in rounds:
        assert set(entry) == {"severity", "message", "time", "logger", "tenantId", "round", "pages", "listeners",
                              "graphRequests", "completed", "durationMs"}
        assert entry["tenantId"] == TENANT and entry["pages"] == PAGES and entry["completed"] is True
        assert entry["graphRequests"] >= PAGES
    assert rounds[0]["listeners"] == 2 and rounds[1]["listeners"] == 1


def test_a_group_scoped_full_sync_shares_rounds_too(stack, relay, fake):
    group = fake.create_group(TENANT, users={"range": [0, 2200]})
    assert make_client("manage_tenants").patch(f"/tenants/{TENANT}", json={
        "settings": {"scope": {"groups": [group]}}}).status_code == 200
    members = set(fake.transitive_user_ids(TENANT, group))
    expected = members & set(in_scope(fake))
    first = Phone(relay, registered_device(stack, TENANT))
    second = Phone(relay, registered_device(stack, TENANT))
    assert held() == 1
    first.read_pages(1)
    late = Phone(relay, registered_device(stack, TENANT))
    finish_all(first, second, late)
    cursor = complete(first, expected)
    assert complete(second, expected) == cursor
    complete(late, expected)
    pages = fake.stats()["per_tenant"][TENANT]
    assert pages.get("graph_delta_pages", 0) <= 4  # the delta links "from now" of two rounds, no directory read
    follow_up = Phone(relay, registered_device(stack, TENANT), late.lines[-1]["cursor"]).finish()
    assert follow_up[0]["op"] != "reset" and follow_up[-1]["op"] == "end"


def test_phones_asking_for_gzip_share_the_round_and_its_compressed_pages(stack, relay, fake):
    """Each page is compressed once for the round; every gzip stream is still a complete gzip member that
    inflates to the same lines as a plain one."""
    import zlib

    headers = [{**registered_device(stack, TENANT), "Accept-Encoding": "gzip"} for _ in range(2)]
    plain = Phone(relay, registered_device(stack, TENANT))
    zipped = [relay.get("/", headers=h, buffered=False) for h in headers]
    assert all(r.headers["Content-Encoding"] == "gzip" for r in zipped)
    streams = [iter(r.response) for r in zipped]
    inflaters = [zlib.decompressobj(16 + zlib.MAX_WBITS) for _ in zipped]
    bodies = [b"", b""]
    reading = True
    while reading:
        reading = plain.read()
        for index, stream in enumerate(streams):
            chunk = next(stream, None)
            if chunk is not None:
                bodies[index] += inflaters[index].decompress(chunk)
                reading = True
    assert all(inflater.eof and not inflater.unused_data for inflater in inflaters)
    expected = "".join(json.dumps(line, ensure_ascii=False, separators=(",", ":")) + "\n" for line in plain.lines)
    assert bodies[0] == bodies[1] == expected.encode()
    complete(plain, set(in_scope(fake)))
    assert delta_pages(fake) == PAGES
