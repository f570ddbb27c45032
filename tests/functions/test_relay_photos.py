"""Photos in relay_contacts through the real entry point: streamed from the fake Graph with ETag/304, 404 for
no photo / out of scope / photos off, and `POST /photos/changes` over $batch with inner throttling."""
from __future__ import annotations

import uuid

import pytest

from shared.store.schema import TENANTS
from tests import support
from tests.conftest import make_client, registered_device
from tests.fake_ms import FakeMicrosoftControl
from tests.openapi_contract import assert_conforms

TENANT = "9fa0b1c2-d3e4-4f5a-9b6c-7d8e9fa0b1c2"


@pytest.fixture
def fake(stack):
    control = FakeMicrosoftControl(stack)
    control.reset()
    control.directory(TENANT, 80)
    yield control
    control.faults()


@pytest.fixture
def admin(emulators, fake):
    client = make_client("manage_tenants")
    assert client.post("/tenants", json={"tenantId": TENANT, "name": "Photo GmbH"}).status_code == 201
    return client


@pytest.fixture
def relay(admin):
    return make_client("relay_contacts")


@pytest.fixture
def device(stack, relay):
    return registered_device(stack, TENANT)


def members(fake) -> list[str]:
    return [u["user"]["id"] for u in fake.users(TENANT)
            if u["user"] and u["user"]["accountEnabled"] and u["user"]["userType"] == "Member"]


def get_photo(relay, device, user_id, status, size=None, etag=None):
    path = f"/photos/{user_id}" + (f"?size={size}" if size else "")
    headers = {**device, **({"If-None-Match": etag} if etag else {})}
    response = relay.get(path, headers=headers)
    assert response.status_code == status, response.get_data()[:300]
    if status != 304:
        assert_conforms("GET", "/photos/{userId}", status, response.headers["Content-Type"], response.data,
                        "relay_contacts")
    return response


def test_photo_is_streamed_with_etag_and_revalidated(relay, device, fake):
    user = members(fake)[0]
    fake.photos(TENANT, set=[{"user": user, "largest": 240}])
    before = support.db().document(f"{TENANTS}/{TENANT}/devices/{device['X-Device-Id']}").get().to_dict()
    fake.reset_stats()
    response = get_photo(relay, device, user, 200, size="96x96")
    assert response.headers["Content-Type"] == "image/jpeg" and response.data[:3] == b"\xff\xd8\xff"
    etag = response.headers["ETag"]
    assert etag.startswith('"') and len(etag) < 40
    assert response.headers["Cache-Control"] == "private, no-cache"
    largest = get_photo(relay, device, user, 200)
    assert len(largest.data) > len(response.data) and largest.headers["ETag"] == etag
    # Revalidation: 304 without a byte of the photo.
    revalidated = get_photo(relay, device, user, 304, size="96x96", etag=etag)
    assert revalidated.data == b"" and revalidated.headers["ETag"] == etag
    # A new upload: a new ETag, so the app's copy is replaced.
    fake.photos(TENANT, set=[{"user": user, "largest": 240}])
    assert get_photo(relay, device, user, 200, size="96x96", etag=etag).headers["ETag"] != etag
    # Photo routes leave lastSeenAt alone.
    after = support.db().document(f"{TENANTS}/{TENANT}/devices/{device['X-Device-Id']}").get().to_dict()
    assert after["lastSeenAt"] == before["lastSeenAt"]


def test_no_photo_bigger_size_out_of_scope_and_photos_off_are_404(relay, device, fake, admin):
    users = members(fake)
    with_photo, without = users[0], users[1]
    fake.photos(TENANT, set=[{"user": with_photo, "largest": 96}], remove=[without])
    get_photo(relay, device, without, 404)
    get_photo(relay, device, with_photo, 404, size="648x648")  # above the uploaded size
    get_photo(relay, device, str(uuid.uuid4()), 404)  # no such user
    disabled = next(u["user"]["id"] for u in fake.users(TENANT) if u["user"] and not u["user"]["accountEnabled"])
    fake.photos(TENANT, set=[{"user": disabled, "largest": 96}])
    get_photo(relay, device, disabled, 404)  # out of scope: a disabled account
    group = fake.create_group(TENANT, users=[users[2]])
    fake.photos(TENANT, set=[{"user": users[2], "largest": 96}])
    assert admin.patch(f"/tenants/{TENANT}", json={"settings": {"scope": {"groups": [group]}}}).status_code == 200
    get_photo(relay, device, users[2], 200)
    get_photo(relay, device, with_photo, 404)  # not in the scoped group
    assert admin.patch(f"/tenants/{TENANT}", json={"settings": {"photos": False}}).status_code == 200
    response = get_photo(relay, device, users[2], 404)
    assert response.headers["Content-Type"] == "application/problem+json"
    changes = relay.post("/photos/changes", json={"etags": {users[2]: '"x"'}}, headers=device)
    assert changes.status_code == 404


def test_bad_photo_requests(relay, device, fake):
    user = members(fake)[0]
    before = support.world()
    get_photo(relay, device, user, 400, size="50x50")
    get_photo(relay, device, "not-a-user", 400)
    assert relay.get("/photos/changes", headers=device).status_code == 405  # the literal route is POST only
    assert relay.get(f"/photos/{user}", headers={**device, "X-Device-Id": str(uuid.uuid4())}).status_code == 403
    assert relay.get(f"/photos/{user}", headers={"X-Device-Id": device["X-Device-Id"]}).status_code == 401
    assert relay.get(f"/photos/{user}?size=48x48&x=1", headers=device).status_code == 400
    for bad in ({"etags": {"nope": '"a"'}}, {"etags": {user: 5}}, {"etags": []}, {"tags": {}},
                {"etags": {str(uuid.uuid4()): '"a"' for _ in range(201)}}):
        response = relay.post("/photos/changes", json=bad, headers=device)
        assert response.status_code == 400, bad
        assert response.headers["Content-Type"] == "application/problem+json"
    assert support.world() == before


def test_photo_changes_over_batch_with_partial_throttling(relay, device, fake):
    users = members(fake)[:45]
    fake.photos(TENANT, set=[{"user": u, "largest": 96} for u in users[:40]], remove=users[40:])
    known = {}
    for user in users[:40]:
        known[user] = get_photo(relay, device, user, 200, size="48x48").headers["ETag"]
    fake.photos(TENANT, set=[{"user": u, "largest": 96} for u in users[:5]], remove=users[5:8])
    etags = {**known, **dict.fromkeys(users[40:], '"old"')}
    fake.reset_stats()
    fake.faults({"target": "batch_item", "status": 429, "retry_after": 0.2, "count": 7, "skip": 3},
                photo_delay_seconds=0.01)
    response = relay.post("/photos/changes", json={"etags": etags}, headers=device)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert_conforms("POST", "/photos/changes", 200, response.headers["Content-Type"], response.data, "relay_contacts")
    answer = response.get_json()
    assert sorted(answer["changed"]) == sorted(users[:5])
    assert sorted(answer["gone"]) == sorted(users[5:8] + users[40:])
    stats = fake.stats()
    assert stats["batch_statuses"]["429"] == 7  # only the throttled requests were sent again
    # 45 users: 45 photo metadata requests and ⌈45 / 15⌉ = 3 lookups of the flags' state, 20 per batch, and
    # the 7 sent again.
    assert stats["per_tenant"][TENANT]["graph_batch_items"] == 45 + 3 + 7
    assert stats["per_tenant"][TENANT]["graph_batches"] >= 3 + 1  # 20 + 20 + 8, then the throttled ones again
    assert 1 <= stats["photo_requests_max_in_flight"] <= 4  # at most 4 batches in flight toward Graph
    fake.configure(photo_delay_seconds=0.0)


def test_batch_throttled_beyond_the_deadline_is_503(relay, device, fake):
    user = members(fake)[0]
    fake.faults({"target": "batch_item", "status": 429, "retry_after": 120, "count": None})
    response = relay.post("/photos/changes", json={"etags": {user: '"a"'}}, headers=device)
    assert response.status_code == 503 and int(response.headers["Retry-After"]) >= 1


def test_a_photo_keeps_graphs_content_type(relay, device, fake):
    user = members(fake)[1]
    fake.photos(TENANT, set=[{"user": user, "largest": 96, "content_type": "image/png"}])
    response = get_photo(relay, device, user, 200)
    assert response.headers["Content-Type"] == "image/png"


def test_one_user_whose_photo_check_fails_does_not_fail_the_others(relay, device, fake):
    users = members(fake)[:6]
    fake.photos(TENANT, set=[{"user": u, "largest": 96} for u in users[:4]], remove=users[4:])
    etags = dict.fromkeys(users, '"old"')
    # One inner request of the $batch (a user's photo metadata) is refused for good.
    fake.faults({"target": "batch_item", "status": 403, "count": 1})
    response = relay.post("/photos/changes", json={"etags": etags}, headers=device)
    assert response.status_code == 200, response.get_data(as_text=True)
    answer = response.get_json()
    assert fake.stats()["batch_statuses"]["403"] == 1
    failed = set(users) - set(answer["changed"]) - set(answer["gone"])
    assert len(failed) == 1  # the failing user is in neither list; every other one is answered
    assert sorted(answer["changed"]) == sorted(set(users[:4]) - failed)
    assert sorted(answer["gone"]) == sorted(set(users[4:]) - failed)
