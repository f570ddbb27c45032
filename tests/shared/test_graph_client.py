"""Graph client against the fake Graph: paging, retries within the deadline, and links it refuses."""
from __future__ import annotations

import pytest

from local.stack import ENTRA_CLIENT_ID
from shared.egress import AllowListedSession, origin
from shared.graph.client import AppTokens, GraphClient, GraphRefused, GraphUnavailable
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
    client = GraphClient(session, stack.urls["graph"], tokens, deadline_seconds=5, sleep=waits.append)
    yield fake, client, tokens, waits
    fake.faults()


def test_pages_follow_next_links_to_the_delta_link_with_one_app_token(graph):
    fake, client, tokens, _ = graph
    pages = list(client.delta_pages(TENANT, ["id", "displayName"]))
    assert sum(len(p.users) for p in pages) == 2100 and len(pages) == 3
    assert pages[-1].delta_link and all(p.next_link for p in pages[:-1])
    assert tokens.requests == 1  # MSAL's in-memory cache served the rest


def test_retry_after_is_honoured_as_a_fractional_number(graph):
    fake, client, _, waits = graph
    fake.faults({"target": "delta", "status": 429, "count": 2, "retry_after": "2.128"})
    pages = list(client.delta_pages(TENANT, ["id"]))
    assert sum(len(p.users) for p in pages) == 2100
    assert waits == [2.128, 2.128]


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


@pytest.mark.parametrize("status", [500, 503])
def test_a_server_error_of_the_token_endpoint_is_unavailable_not_a_crash(graph, status):
    # MSAL raises MsalServiceError for a 5xx of the token endpoint instead of returning an error answer.
    fake, _, tokens, _ = graph
    fake.faults({"target": "token", "status": status, "count": 1, "tenant": TENANT})
    with pytest.raises(GraphUnavailable):
        tokens.token(TENANT, refresh=True)
    assert tokens.token(TENANT, refresh=True)  # the next attempt gets its token
