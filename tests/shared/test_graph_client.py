"""Graph client against the fake Graph: paging, retries within the deadline, and links it refuses."""
from __future__ import annotations

import json
import time

import pytest

from local.stack import ENTRA_CLIENT_ID
from shared.egress import AllowListedSession, origin
from shared.graph.client import (AppTokens, GraphClient, GraphRefused, GraphUnavailable, TenantPacing,
                                 limit_percentage)
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
    assert sum(len(p.users) for p in pages) == 2100 and len(pages) == 3
    assert pages[-1].delta_link and all(p.next_link for p in pages[:-1])
    assert tokens.requests == 1  # MSAL's in-memory cache served the rest


def test_retry_after_is_honoured_as_a_fractional_number(graph, log_lines):
    fake, client, _, waits = graph
    fake.faults({"target": "delta", "status": 429, "count": 2, "retry_after": "2.128"})
    pages = list(client.delta_pages(TENANT, ["id"]))
    assert sum(len(p.users) for p in pages) == 2100
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
    assert sum(len(p.users) for p in pages) == 2100  # the 401 (first or a later page) cost one new token
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
    assert waits == [1.5]


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
    assert len(pages) == 3 and sum(len(p.users) for p in pages) == 5
    with pytest.raises(GraphRefused):  # Graph's next links point under groups/{id}/, not under users/
        list(client.collection_pages(TENANT, client.url(f"groups/{group}/transitiveMembers?$top=2"), "users/"))


def test_every_graph_request_is_marked_low_priority_background_work(graph):
    fake, client, _, _ = graph
    fake.call("DELETE", "stats")
    list(client.delta_pages(TENANT, ["id"]))
    assert fake.stats()["graph_requests_by_priority"] == {"low": 3}


def test_paging_slows_down_when_graph_reports_the_budget_nearly_used(graph):
    """The fake enforces a per-tenant resource-unit budget and sends x-ms-throttle-limit-percentage from
    0.8 of it; from 0.9 the client holds back the tenant's next request (any stream's), and no request is
    refused."""
    fake, client, tokens, waits = graph
    # Time that only the recorded waits move (the fake's budget window runs on real time, well within 10 s).
    client = GraphClient(client._session, client._base, tokens, deadline_seconds=5, sleep=waits.append,
                         clock=lambda: sum(waits))
    fake.directory(TENANT, 999 * 8 + 1)  # 9 pages of 1 RU each (delta with $select)
    fake.configure(tenant=TENANT, ru_limit_per_10s=10)
    fake.call("DELETE", "stats")
    pages = list(client.delta_pages(TENANT, ["id"]))
    # Pages 8 and 9 used 0.8 and 0.9 of the budget: pacing starts (0.05 s, then 0.2 s between requests).
    assert len(pages) == 9 and waits == [pytest.approx(0.05, abs=0.02)]

    another_stream = next(client.delta_pages(TENANT, ["id"]))  # e.g. another phone's sync of the tenant

    assert len(another_stream.users) == 999 and fake.stats()["throttled"] == 0
    # The tenant's next free slot, whichever stream asks (reserved at the spacing of the time: 0.05 s).
    assert waits[1:] == [pytest.approx(0.05, abs=0.02)]


@pytest.mark.parametrize("header, used", [(None, None), ("", None), ("0.8", 0.8), ("1.25", 1.25),
                                          ("junk", None), ("nan", None)])
def test_the_limit_percentage_header_is_read_as_a_number(header, used):
    assert limit_percentage(header) == used


def test_pacing_spaces_a_tenants_requests_near_the_budget_and_lets_go_below_it():
    now = [100.0]
    pacing = TenantPacing(lambda: now[0])
    assert pacing.reserve(TENANT) == 0.0
    pacing.observe(TENANT, None)  # no header (under 0.8): nothing changes
    assert pacing.reserve(TENANT) == 0.0
    pacing.observe(TENANT, 0.85)
    # 0.85: 0.1 s between two requests. Streams asking at once get successive slots, not one burst.
    assert [pacing.reserve(TENANT) for _ in range(3)] == pytest.approx([0.1, 0.2, 0.3])
    pacing.observe(TENANT, 0.9)  # 0.2 s from now on
    assert pacing.reserve(TENANT) == pytest.approx(0.4) and pacing.reserve(TENANT) == pytest.approx(0.6)
    assert pacing.reserve("other-tenant") == 0.0  # another tenant has its own budget
    now[0] += 2.0  # the header stays away: the spacing halves every 2 s ...
    pacing.observe(TENANT, None)
    assert pacing.reserve(TENANT) == 0.0 and pacing.reserve(TENANT) == pytest.approx(0.1)
    now[0] += 10.0  # ... and pacing ends
    pacing.observe(TENANT, None)
    assert pacing.reserve(TENANT) == 0.0 and pacing.reserve(TENANT) == 0.0


def test_a_429_holds_every_stream_of_the_tenant_until_its_retry_after():
    now = [0.0]
    pacing = TenantPacing(lambda: now[0])
    pacing.throttled(TENANT, 2.5)
    assert pacing.reserve(TENANT) == pytest.approx(2.5)
    assert pacing.reserve(TENANT) == pytest.approx(2.5 + 0.05)


@pytest.mark.parametrize("status", [500, 503])
def test_a_server_error_of_the_token_endpoint_is_unavailable_not_a_crash(graph, status):
    # MSAL raises MsalServiceError for a 5xx of the token endpoint instead of returning an error answer.
    fake, _, tokens, _ = graph
    fake.faults({"target": "token", "status": status, "count": 1, "tenant": TENANT})
    with pytest.raises(GraphUnavailable):
        tokens.token(TENANT, refresh=True)
    assert tokens.token(TENANT, refresh=True)  # the next attempt gets its token
