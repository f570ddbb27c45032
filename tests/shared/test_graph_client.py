"""Graph client against the fake Graph: paging, retries within the deadline, and links it refuses."""
from __future__ import annotations

import json
import time

import pytest

from local.stack import ENTRA_CLIENT_ID
from shared.egress import AllowListedSession
from shared.graph.client import (
    PACE_MIN_BUDGET,
    PACE_TARGET,
    WINDOW_SECONDS,
    WINDOW_SLACK_SECONDS,
    AppTokens,
    GraphClient,
    GraphRefused,
    GraphUnavailable,
    TenantPacing,
    limit_percentage,
    resource_units,
)
from shared.origins import origin
from tests.fake_ms import FakeMicrosoftControl

TENANT = "1c2d3e4f-5a6b-4c7d-8e9f-0a1b2c3d4e5f"


@pytest.fixture
def graph(stack):
    fake = FakeMicrosoftControl(stack)
    fake.reset()
    fake.directory(TENANT, 2100)
    session = AllowListedSession({origin(stack.urls["entra"]), origin(stack.urls["graph"])})
    session.verify = stack.urls["ca"]
    tokens = AppTokens(stack.urls["entra"], ENTRA_CLIENT_ID, stack.env["ENTRA_CLIENT_SECRET"], session)
    waits: list[float] = []
    # A clock that the recorded waits move forward, as real sleeping would.
    client = GraphClient(session, stack.urls["graph"], tokens, deadline_seconds=5, sleep=waits.append,
                         clock=lambda: time.monotonic() + sum(waits))
    yield fake, client, tokens, waits
    fake.faults()


def test_pages_follow_next_links_to_the_delta_link_with_one_app_token(graph):
    fake, client, tokens, _ = graph
    pages = list(client.delta_pages(TENANT, ["id", "displayName"]))
    assert sum(len(p.items) for p in pages) == 2100 and len(pages) == 3
    assert pages[-1].delta_link and all(p.next_link for p in pages[:-1])
    assert tokens.requests == 1  # MSAL's in-memory cache served the rest


def test_retry_after_is_honoured_as_a_fractional_number(graph, log_lines):
    fake, client, _, waits = graph
    fake.faults({"target": "delta", "status": 429, "count": 2, "retry_after": "2.128"})
    pages = list(client.delta_pages(TENANT, ["id"]))
    assert sum(len(p.items) for p in pages) == 2100
    assert waits[:2] == [pytest.approx(2.128, abs=0.05)] * 2
    # One line per 429 (the Graph throttling alert counts them), with nothing but the tenant and the wait.
    throttled = [json.loads(line) for line in log_lines if '"graph throttled"' in line]
    assert len(throttled) == 2
    assert all(set(line) <= {"severity", "message", "time", "logger", "tenantId", "httpStatus", "retryAfter"}
               and line["tenantId"] == TENANT and line["retryAfter"] == 2.128 for line in throttled)
    assert all(wait < 0.25 for wait in waits[2:])  # then short pacing slots while the tenant calms down


def test_a_wait_beyond_the_deadline_gives_up_with_the_wait(graph):
    fake, client, _, waits = graph
    fake.faults({"target": "delta", "status": 503, "count": None, "retry_after": 30})
    with pytest.raises(GraphUnavailable) as error:
        next(client.delta_pages(TENANT, ["id"]))
    assert error.value.retry_after == 30 and waits == []


def test_links_outside_graphs_delta_endpoint_are_never_followed(graph, stack):
    _, client, _, _ = graph
    for link in ("https://example.com/users/delta?$deltatoken=x",
                 stack.urls["graph"] + "/users?$skiptoken=x",
                 stack.urls["graph"].replace("/v1.0", "/beta") + "/users/delta?$deltatoken=x"):
        with pytest.raises(GraphRefused):
            next(client.delta_pages(TENANT, ["id"], delta_link=link))


@pytest.mark.parametrize("skip", [0, 1])
def test_a_401_on_any_page_refreshes_the_app_token_once_and_goes_on(graph, skip):
    fake, client, tokens, _ = graph
    fake.faults({"target": "delta", "status": 401, "count": 1, "skip": skip})
    pages = list(client.delta_pages(TENANT, ["id"]))
    assert sum(len(p.items) for p in pages) == 2100  # the 401 (first or a later page) cost one new token
    assert tokens.requests == 2


@pytest.mark.parametrize("code, logged", [("Authorization_RequestDenied", "graph-Authorization_RequestDenied"),
                                          ("Erika Mustermann +49 151 23456789", "graph-unrecognised"),
                                          ("x" * 200, "graph-unrecognised")])
def test_only_identifier_shaped_graph_codes_are_kept(graph, code, logged):
    fake, client, _, _ = graph
    fake.faults({"target": "delta", "status": 403, "count": 1, "code": code})
    with pytest.raises(GraphRefused) as error:
        next(client.delta_pages(TENANT, ["id"]))
    assert error.value.code == logged


def test_batches_of_twenty_retry_only_the_throttled_requests(graph):
    from shared.graph.batch import BatchRequest, GraphBatcher

    fake, client, _, waits = graph
    ids = [e["user"]["id"] for e in fake.users(TENANT)[:45]]
    fake.reset_stats()
    fake.faults({"target": "batch_item", "status": 429, "count": 3, "skip": 5, "retry_after": "1.5"})
    answers = GraphBatcher(client).run(TENANT, [BatchRequest(f"r{i}", f"/users/{u}?$select=id") for i, u in
                                                enumerate(ids)])
    assert sorted(answers) == sorted(f"r{i}" for i in range(45))
    assert all(a.status == 200 and a.body["id"] == ids[int(k[1:])] for k, a in answers.items())
    stats = fake.stats()
    assert stats["per_tenant"][TENANT]["graph_batch_items"] == 45 + 3  # only the three throttled ones again
    # Each batch with a throttled request waits its Retry-After once (the three batches run concurrently, so
    # the three throttled requests may fall into one, two or three of them).
    assert waits and set(waits) == {1.5} and len(waits) <= 3


@pytest.mark.parametrize("status", [500, 502, 503])
def test_inner_server_errors_of_a_batch_are_retried_like_top_level_ones(graph, status):
    from shared.graph.batch import BatchRequest, GraphBatcher

    fake, client, _, waits = graph
    ids = [e["user"]["id"] for e in fake.users(TENANT)[:4]]
    fake.reset_stats()
    fake.faults({"target": "batch_item", "status": status, "count": 2, "skip": 1})
    answers = GraphBatcher(client).run(TENANT, [BatchRequest(f"r{i}", f"/users/{u}?$select=id")
                                                for i, u in enumerate(ids)])
    assert {k: a.status for k, a in answers.items()} == {f"r{i}": 200 for i in range(4)}
    assert fake.stats()["per_tenant"][TENANT]["graph_batch_items"] == 4 + 2
    assert waits == [0.5]  # no Retry-After: the client's backoff


def test_the_pacing_counts_what_graph_charged_for_each_request_of_a_batch(graph):
    """checkMemberGroups costs 4 resource units (Graph's cost table): a $batch of five is charged 20, which
    the pacing counts (the envelope's own figure is not what it goes by: each inner answer says its cost)."""
    from shared.graph.batch import BatchRequest, GraphBatcher
    from shared.graph.client import charged_units

    fake, client, _, _ = graph
    group = fake.create_group(TENANT, users=[e["user"]["id"] for e in fake.users(TENANT)[:3]])
    ids = [e["user"]["id"] for e in fake.users(TENANT)[:5]]
    seen: list[float | None] = []
    observe = client._pacing.observe
    client._pacing.observe = lambda tenant, reservation, used, units=None: (seen.append(units),
                                                                           observe(tenant, reservation, used, units))
    answers = GraphBatcher(client).run(TENANT, [BatchRequest(f"m{i}", f"/users/{u}/checkMemberGroups", "POST",
                                                             {"groupIds": [group]}) for i, u in enumerate(ids)])
    assert all(a.headers["x-ms-resource-unit"] == "4" for a in answers.values())
    assert seen == [20.0]

    class Answer:
        headers = {"x-ms-resource-unit": "99"}

        @staticmethod
        def json():
            return {"responses": [{"id": "a", "status": 200, "headers": {"X-MS-Resource-Unit": "4"}},
                                  {"id": "b", "status": 429, "headers": {"x-ms-resource-unit": "1"}},
                                  {"id": "c", "status": 404, "headers": {"x-ms-resource-unit": "1"}}]}

    assert charged_units(Answer(), "https://graph.example/v1.0/$batch") == 5.0  # a 429 was not charged
    assert charged_units(Answer(), "https://graph.example/v1.0/users/delta") == 99.0


def test_batch_throttled_past_the_deadline_gives_up(graph):
    from shared.graph.batch import BatchRequest, GraphBatcher

    fake, client, _, waits = graph
    user = fake.users(TENANT)[0]["user"]["id"]
    fake.faults({"target": "batch_item", "status": 429, "count": None, "retry_after": 30})
    with pytest.raises(GraphUnavailable) as error:
        GraphBatcher(client).run(TENANT, [BatchRequest("a", f"/users/{user}")])
    assert error.value.retry_after == 30 and waits == []


def test_collection_links_outside_the_expected_endpoint_are_refused(graph, stack):
    fake, client, _, _ = graph
    group = fake.create_group(TENANT, users={"range": [0, 5]})
    pages = list(client.collection_pages(TENANT, client.url(f"groups/{group}/transitiveMembers?$top=2"),
                                         f"groups/{group}/transitiveMembers"))
    assert len(pages) == 3 and sum(len(p.items) for p in pages) == 5
    with pytest.raises(GraphRefused):  # Graph's next links point under groups/{id}/, not under users/
        list(client.collection_pages(TENANT, client.url(f"groups/{group}/transitiveMembers?$top=2"), "users/"))


def test_every_graph_request_is_marked_low_priority_background_work(graph):
    fake, client, _, _ = graph
    fake.call("DELETE", "stats")
    list(client.delta_pages(TENANT, ["id"]))
    assert fake.stats()["graph_requests_by_priority"] == {"low": 3}


def test_paging_holds_back_when_the_window_would_pass_the_budget_graph_reported(graph):
    """The fake enforces a per-tenant resource-unit budget (25 RU per 10 s here) and sends
    x-ms-throttle-limit-percentage from 0.8 of it. Page 20 reports 0.8: the client learns the budget (its
    20 units / 0.8 = 25) and keeps its own window under 0.85 of it, so page 22 waits until page 1 has left
    the 10 s window, and Graph refuses nothing."""
    fake, client, tokens, waits = graph
    # Time that only the recorded waits move (the fake's budget window runs on real time, well within 10 s).
    client = GraphClient(client._session, client._base, tokens, deadline_seconds=5, sleep=waits.append,
                         clock=lambda: sum(waits))
    fake.directory(TENANT, 999 * 23 + 1)  # 24 pages of 1 RU each (delta with $select)
    fake.configure(tenant=TENANT, ru_limit_per_10s=25)
    fake.call("DELETE", "stats")
    pages = list(client.delta_pages(TENANT, ["id"]))
    assert len(pages) == 24 and fake.stats()["throttled"] == 0
    assert waits == [pytest.approx(WINDOW_SECONDS + WINDOW_SLACK_SECONDS)]


@pytest.mark.parametrize("header, used", [(None, None), ("", None), ("0.8", 0.8), ("1.25", 1.25),
                                          ("junk", None), ("nan", None)])
def test_the_limit_percentage_header_is_read_as_a_number(header, used):
    assert limit_percentage(header) == used


@pytest.mark.parametrize("header, units", [(None, None), ("4", 4.0), ("1", 1.0), ("-1", None), ("x", None)])
def test_the_resource_unit_header_is_read_as_a_number(header, units):
    assert resource_units(header) == units


def _send(pacing, count, units=1.0):
    """`count` requests of the tenant reserved at once; their reservations."""
    return [pacing.reserve(TENANT, units) for _ in range(count)]


def test_pacing_holds_nothing_until_graph_has_reported_the_budget():
    pacing = TenantPacing(lambda: 100.0)
    sent = _send(pacing, 200)
    for reservation in sent:
        pacing.observe(TENANT, reservation, None, 1)  # no header: under 0.8 of a budget not known yet
    assert {r.wait for r in sent} == {0.0} and pacing.reserve(TENANT).wait == 0.0


def test_pacing_keeps_the_instances_window_under_the_learnt_budget():
    now = [100.0]
    pacing = TenantPacing(lambda: now[0])
    sent = _send(pacing, 80)
    pacing.observe(TENANT, sent[-1], 0.8, 1)  # 80 units in the window were 0.8: the budget is 100
    # 85 % of it: five more go at once, the 86th when the first has left the window (10 s + slack).
    later = _send(pacing, 6)
    assert [r.wait for r in later] == pytest.approx([0] * 5 + [WINDOW_SECONDS + WINDOW_SLACK_SECONDS])
    assert pacing.reserve("other-tenant").wait == 0.0  # another tenant has its own budget
    now[0] += 30.0  # the window emptied: a burst of 85 again, no more
    assert [r.wait for r in _send(pacing, 86)].count(0.0) == 85


def test_no_header_near_the_learnt_budget_means_the_budget_is_larger():
    pacing = TenantPacing(lambda: 100.0)
    sent = _send(pacing, 80)
    pacing.observe(TENANT, sent[-1], 0.8, 1)  # budget 100, target 85
    more = _send(pacing, 5)
    pacing.observe(TENANT, more[-1], None, 1)  # 85 units and Graph says < 0.8: the budget is 106.25 or more
    # 0.85 × 106.25 = 90.3: five more at once, then the wait for the window.
    assert [r.wait for r in _send(pacing, 6)] == pytest.approx([0] * 5 + [WINDOW_SECONDS + WINDOW_SLACK_SECONDS])


def test_a_charge_above_the_reserved_units_is_counted():
    pacing = TenantPacing(lambda: 100.0)
    sent = _send(pacing, 80)
    pacing.observe(TENANT, sent[-1], 0.8, 1)  # budget 100, target 85
    batch = pacing.reserve(TENANT)
    pacing.observe(TENANT, batch, 0.85, 5)  # a $batch charged 5 units, not 1: 85 in the window now
    assert pacing.reserve(TENANT).wait == pytest.approx(WINDOW_SECONDS + WINDOW_SLACK_SECONDS)


def test_a_429_holds_every_stream_of_the_tenant_and_lowers_the_budget():
    now = [0.0]
    pacing = TenantPacing(lambda: now[0])
    pacing.observe(TENANT, _send(pacing, 80)[-1], 0.8, 1)  # budget 100
    now[0] = 20.0  # the window emptied
    sent = _send(pacing, 30)
    pacing.throttled(TENANT, sent[-1], 2.5)  # Graph refused at 30 units: the budget is below 30
    now[0] = 31.0  # the window emptied again
    waits = [r.wait for r in _send(pacing, 27)]
    # Nothing waits for the Retry-After that has passed; 0.85 × 30 = 25.5 units go, the 26th waits.
    assert waits[:25] == [0.0] * 25 and waits[25] == pytest.approx(WINDOW_SECONDS + WINDOW_SLACK_SECONDS)
    pacing.throttled(TENANT, sent[-1], 2.5)
    assert pacing.reserve("other-tenant").wait == 0.0 and pacing.reserve(TENANT).wait >= 2.5


def test_pacing_believes_in_no_budget_below_its_floor():
    pacing = TenantPacing(lambda: 0.0)
    first = pacing.reserve(TENANT)
    pacing.throttled(TENANT, first, 1.0)  # other instances used the budget: one unit of ours was too many
    floor = int(PACE_MIN_BUDGET * PACE_TARGET)  # units a window still takes
    assert [r.wait for r in _send(pacing, floor - 1)][-1] == pytest.approx(1.0)


def _simulate(instances: int, streams: int, budget: float, seconds: float = 120.0, latency: float = 0.25):
    """`streams` syncs per instance paging back to back through their instance's TenantPacing against a
    model of Graph's sliding window (`budget` units per 10 s, x-ms-throttle-limit-percentage from 0.8 to
    one decimal, a throttled request not charged). Returns (requests, 429s, units charged after 30 s)."""
    import heapq
    from collections import deque

    now = [0.0]
    pacings = [TenantPacing(lambda: now[0]) for _ in range(instances)]
    charged: deque[tuple[float, int]] = deque()
    events: list = []  # (time, order, pacing, reservation answered or None, answer)
    order = 0
    for pacing in pacings:
        for _ in range(streams):
            order += 1
            heapq.heappush(events, (0.0, order, pacing, None, None))
    requests = throttled = late_units = 0
    while events:
        at, _, pacing, reservation, answer = heapq.heappop(events)
        now[0] = at
        if at > seconds:
            break
        if reservation is not None:  # the answer to the stream's last request arrives
            if answer == 429:
                pacing.throttled(TENANT, reservation, 1.0)
            else:
                pacing.observe(TENANT, reservation, answer, 1)
        reservation = pacing.reserve(TENANT)
        send = at + reservation.wait
        while charged and charged[0][0] <= send - 10:
            charged.popleft()
        used = sum(units for _, units in charged)
        requests += 1
        if used + 1 > budget:
            throttled += 1
            answer = 429
        else:
            charged.append((send, 1))
            late_units += send > 30
            ratio = (used + 1) / budget
            answer = float(f"{ratio:.1f}") if ratio >= 0.8 else None
        order += 1
        heapq.heappush(events, (send + latency, order, pacing, reservation, answer))
    return requests, throttled, late_units


@pytest.mark.parametrize("instances, streams", [(1, 20), (2, 10), (4, 5)])
def test_pacing_holds_graphs_window_without_429s_and_uses_most_of_the_budget(instances, streams):
    budget = 150  # units per 10 s, while 20 streams alone would ask 80 per second
    requests, throttled, late_units = _simulate(instances, streams, budget)
    assert throttled / requests < 0.01
    # After the first 30 s, the instances together use 70–100 % of the budget.
    assert 0.7 * budget * 9 <= late_units <= budget * 9


@pytest.mark.parametrize("status", [500, 503])
def test_a_server_error_of_the_token_endpoint_is_unavailable_not_a_crash(graph, status):
    # MSAL raises MsalServiceError for a 5xx of the token endpoint instead of returning an error answer.
    fake, _, tokens, _ = graph
    fake.faults({"target": "token", "status": status, "count": 1, "tenant": TENANT})
    with pytest.raises(GraphUnavailable):
        tokens.token(TENANT, refresh=True)
    assert tokens.token(TENANT, refresh=True)  # the next attempt gets its token
