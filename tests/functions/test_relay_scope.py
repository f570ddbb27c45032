"""Directory scope in relay_contacts, through its real entry point against the fake Graph and the emulators:
groups (nested, overlapping, up to 20), disabled and guest accounts, requirePhone; full and incremental."""
from __future__ import annotations

import pytest

from shared.phones import to_e164
from tests.conftest import make_client, registered_device
from tests.fake_ms import FakeMicrosoftControl
from tests.functions.test_relay_contacts import sync

TENANT = "7d8e9fa0-b1c2-4d3e-8f4a-5b6c7d8e9fa0"
SIZE = 160


@pytest.fixture
def fake(stack):
    control = FakeMicrosoftControl(stack)
    control.reset()
    control.directory(TENANT, SIZE)
    yield control
    control.faults()


@pytest.fixture
def admin(emulators):
    client = make_client("manage_tenants")
    assert client.post("/tenants", json={"tenantId": TENANT, "name": "Scoped AG",
                                         "settings": {"defaultRegion": "DE"}}).status_code == 201
    return client


@pytest.fixture
def relay(admin, fake):
    return make_client("relay_contacts")


@pytest.fixture
def device(stack, relay):
    return registered_device(stack, TENANT)


def set_scope(admin, **scope):
    response = admin.patch(f"/tenants/{TENANT}", json={"settings": {"scope": scope}})
    assert response.status_code == 200, response.get_data(as_text=True)


def users(fake) -> dict[str, dict]:
    return {u["user"]["id"]: u["user"] for u in fake.users(TENANT) if u["user"] is not None}


def ids_by_index(fake) -> list[str]:
    return [u["user"]["id"] if u["user"] else None for u in fake.users(TENANT)]


def enabled_members(fake, indexes) -> list[str]:
    """IDs of enabled, non-guest users among `indexes` (so scope tests act on users the flags keep)."""
    entries = fake.users(TENANT)
    return [entries[i]["user"]["id"] for i in indexes
            if entries[i]["user"] and entries[i]["user"]["accountEnabled"]
            and entries[i]["user"]["userType"] == "Member"]


def expected(fake, groups: list[str], require_phone: bool = False) -> set[str]:
    everyone = users(fake)
    members: set[str] = set()
    for group in groups:
        members |= set(fake.transitive_user_ids(TENANT, group))
    out = set()
    for user_id in members:
        user = everyone.get(user_id)
        if user is None or not user["accountEnabled"] or user["userType"] != "Member":
            continue
        if require_phone and not any(to_e164(n, "DE") for n in [user["mobilePhone"], *user["businessPhones"]] if n):
            continue
        out.add(user_id)
    return out


def upserts(lines) -> list[str]:
    return [line["id"] for line in lines if line["op"] == "upsert"]


def body(lines) -> list[dict]:
    return [line for line in lines if line["op"] in ("upsert", "remove")]


def test_full_sync_is_exactly_the_transitive_members_each_once(relay, device, fake, admin):
    ids = ids_by_index(fake)
    inner = fake.create_group(TENANT, users=ids[40:60], devices=3)
    middle = fake.create_group(TENANT, users=ids[30:45], groups=[inner], servicePrincipals=2)
    top = fake.create_group(TENANT, users=ids[0:20] + ids[55:58], groups=[middle], orgContacts=1)
    fake.create_group(TENANT, users=ids[100:120])  # not in scope
    set_scope(admin, groups=[top])
    lines = sync(relay, device)
    assert lines[0] == {"op": "reset"} and lines[-1]["op"] == "end"
    sent = upserts(lines)
    assert len(sent) == len(set(sent))  # each user once
    assert set(sent) == expected(fake, [top])
    assert set(sent) <= set(ids[0:20] + ids[30:60])
    assert len(lines[-1]["cursor"]) < 4096


def test_twenty_overlapping_groups_send_each_user_once(relay, device, fake, admin):
    ids = ids_by_index(fake)
    groups = [fake.create_group(TENANT, users=ids[i * 5: i * 5 + 15]) for i in range(20)]  # each overlaps the next
    set_scope(admin, groups=groups)
    fake.reset_stats()
    lines = sync(relay, device)
    sent = upserts(lines)
    assert len(sent) == len(set(sent)) and set(sent) == expected(fake, groups)
    stats = fake.stats()["per_tenant"][TENANT]
    # Overlaps were checked exactly (checkMemberGroups), not by keeping who was sent.
    assert stats.get("graph_member_checks", 0) > 0


def test_incremental_sync_follows_membership_and_flags(relay, device, fake, admin):
    ids_by_index(fake)
    kept = enabled_members(fake, range(80))
    nested = fake.create_group(TENANT, users=kept[10:20])
    scoped = fake.create_group(TENANT, users=kept[0:12], groups=[nested])
    other = fake.create_group(TENANT, users=kept[40:50])
    set_scope(admin, groups=[scoped])
    first = sync(relay, device)
    in_scope = set(upserts(first))
    assert in_scope == expected(fake, [scoped]) and kept[15] in in_scope
    cursor = first[-1]["cursor"]

    # Nothing changed: two Graph requests (groups/delta and users/delta), no lines.
    fake.reset_stats()
    quiet = sync(relay, device, cursor)
    assert [line["op"] for line in quiet] == ["end"]
    assert fake.stats()["graph_requests"] == 2

    newcomer = kept[30]
    fake.group_members(TENANT, nested, add={"users": [newcomer]})  # enters through the nested group
    fake.group_members(TENANT, scoped, remove={"users": [kept[1]]})  # leaves its last scoped group
    fake.group_members(TENANT, scoped, remove={"users": [kept[11]]})  # still in scope through `nested`
    fake.changes(TENANT, update=[{"id": kept[2], "fields": {"accountEnabled": False}},
                                 {"id": kept[3], "fields": {"userType": "Guest"}},
                                 {"id": kept[4], "fields": {"jobTitle": "Head of Calls"}},
                                 {"id": kept[45], "fields": {"jobTitle": "Out of scope"}}],
                 remove=[{"id": kept[5], "reason": "deleted"}])
    lines = sync(relay, device, quiet[-1]["cursor"])
    assert lines[0]["op"] != "reset" and lines[-1]["op"] == "end"
    ops = {(line["op"], line["id"]) for line in body(lines)}
    assert ("upsert", newcomer) in ops
    newcomer_line = next(line for line in lines if line.get("id") == newcomer)
    assert set(newcomer_line) == {"op", "id", "displayName", "givenName", "surname", "jobTitle", "department",
                                  "companyName", "mail", "mobilePhone", "businessPhones", "officeLocation"}
    for gone in (kept[1], kept[2], kept[3], kept[5]):
        assert ("remove", gone) in ops, gone
    assert ("upsert", kept[4]) in ops
    assert not any(line_id in (kept[45], kept[11]) for _, line_id in ops)  # nothing for out-of-scope changes
    assert {line_id for _, line_id in ops} <= {newcomer, kept[1], kept[2], kept[3], kept[4], kept[5]}

    # A group nested afterwards cannot be followed as changes: the next sync is a full one.
    fake.group_members(TENANT, scoped, add={"groups": [other]})
    again = sync(relay, device, lines[-1]["cursor"])
    assert again[0] == {"op": "reset"} and set(upserts(again)) == expected(fake, [scoped])


def test_scope_change_resets_and_flags_apply(relay, device, fake, admin):
    first = sync(relay, device)  # default scope: the whole directory without disabled and guest accounts
    everyone = users(fake)
    assert set(upserts(first)) == {i for i, u in everyone.items() if u["accountEnabled"] and u["userType"] == "Member"}
    set_scope(admin, excludeDisabled=False, excludeGuests=False)
    second = sync(relay, device, first[-1]["cursor"])
    assert second[0] == {"op": "reset"} and set(upserts(second)) == set(everyone)
    set_scope(admin, excludeDisabled=True, excludeGuests=True, requirePhone=True)
    third = sync(relay, device, second[-1]["cursor"])
    with_phone = {i for i, u in everyone.items() if u["accountEnabled"] and u["userType"] == "Member"
                  and any(to_e164(n, "DE") for n in [u["mobilePhone"], *u["businessPhones"]] if n)}
    assert third[0] == {"op": "reset"} and set(upserts(third)) == with_phone
    assert 0 < len(with_phone) < len(everyone)


def test_require_phone_removes_a_user_who_lost_the_last_number(relay, device, fake, admin):
    ids_by_index(fake)
    kept = enabled_members(fake, range(60))
    group = fake.create_group(TENANT, users=kept[:30])
    set_scope(admin, groups=[group], requirePhone=True)
    first = sync(relay, device)
    assert set(upserts(first)) == expected(fake, [group], require_phone=True)
    holder = next(i for i in upserts(first))
    fake.changes(TENANT, update=[{"id": holder, "fields": {"mobilePhone": None, "businessPhones": ["12"]}}])
    lines = sync(relay, device, first[-1]["cursor"])
    assert {"op": "remove", "id": holder} in lines
    newcomer = next(u for u in kept[:30] if u not in upserts(first))  # in the group, without a valid number
    fake.changes(TENANT, update=[{"id": newcomer, "fields": {"mobilePhone": "+49 151 23456789"}}])
    lines = sync(relay, device, lines[-1]["cursor"])
    entered = next(line for line in lines if line.get("id") == newcomer)
    assert entered["op"] == "upsert" and entered["mobilePhone"] == "+4915123456789" and "displayName" in entered


def test_whole_directory_incremental_removes_disabled_and_guests(relay, device, fake, admin):
    kept = enabled_members(fake, range(40))
    first = sync(relay, device)
    fake.changes(TENANT, update=[{"id": kept[0], "fields": {"accountEnabled": False}},
                                 {"id": kept[1], "fields": {"userType": "Guest"}},
                                 {"id": kept[2], "fields": {"jobTitle": "Still here"}}])
    lines = sync(relay, device, first[-1]["cursor"])
    assert {"op": "remove", "id": kept[0]} in lines and {"op": "remove", "id": kept[1]} in lines
    assert next(line for line in lines if line.get("id") == kept[2])["jobTitle"] == "Still here"
    fake.changes(TENANT, update=[{"id": kept[0], "fields": {"accountEnabled": True}},
                                 {"id": kept[1], "fields": {"displayName": "Invisible Guest"}}])
    lines = sync(relay, device, lines[-1]["cursor"])
    back = next(line for line in lines if line.get("id") == kept[0])
    assert back["op"] == "upsert" and "displayName" in back and "mobilePhone" in back  # every field again
    # Graph's whole item does not say what changed: a guest's change sends at most a remove, never an upsert
    assert [line["op"] for line in lines if line.get("id") == kept[1]] in ([], ["remove"])


def test_batched_scope_checks_ride_out_inner_throttling(relay, device, fake, admin):
    kept = enabled_members(fake, range(60))
    group = fake.create_group(TENANT, users=kept[:20])
    set_scope(admin, groups=[group])
    first = sync(relay, device)
    fake.changes(TENANT, update=[{"id": u, "fields": {"jobTitle": "Batch"}} for u in kept[:15]])
    fake.faults({"target": "batch_item", "status": 429, "retry_after": 0.2, "count": 5})
    lines = sync(relay, device, first[-1]["cursor"])
    assert lines[-1]["op"] == "end"
    assert {line["id"] for line in lines if line["op"] == "upsert"} == set(kept[:15])
    assert fake.stats()["batch_statuses"].get("429") == 5


def test_changed_users_need_no_lookup_when_the_delta_item_carries_the_flags(relay, device, fake, admin):
    """Graph's delta item carries every selected property that is set, so the flags are decided on it:
    40 changed users cost the delta page alone, no per-user request. Disabled and guest accounts among them
    get no upsert."""
    entries = fake.users(TENANT)[:60]
    changed = [e["user"]["id"] for e in entries if e["user"]][:40]
    excluded = {e["user"]["id"] for e in entries if e["user"] and e["user"]["id"] in changed
                and (not e["user"]["accountEnabled"] or e["user"]["userType"] != "Member")}
    first = sync(relay, device)
    fake.changes(TENANT, update=[{"id": u, "fields": {"jobTitle": "Decided here"}} for u in changed])
    fake.reset_stats()
    lines = sync(relay, device, first[-1]["cursor"])
    assert lines[-1]["op"] == "end" and lines[0]["op"] != "reset"
    sent = {line["id"]: line for line in lines if line["op"] == "upsert"}
    assert set(sent) == set(changed) - excluded and excluded  # the fixture's directory has both kinds
    assert all(line["jobTitle"] == "Decided here" for line in sent.values())
    stats = fake.stats()
    assert stats["graph_requests"] == 1  # the one delta page
    assert not stats["per_tenant"][TENANT].get("graph_batch_items")


def test_changed_users_are_looked_up_fifteen_at_a_time(relay, device, fake, admin):
    """When a delta item lacks the flags' properties (Graph sending only what changed, as with
    `Prefer: return=minimal`), the user is checked with `GET /users?$filter=id in (…)`, 15 per request:
    40 changed users cost 3 batched requests (3 resource units), not 40."""
    entries = fake.users(TENANT)[:60]
    changed = [e["user"]["id"] for e in entries if e["user"]][:40]
    excluded = {e["user"]["id"] for e in entries if e["user"] and e["user"]["id"] in changed
                and (not e["user"]["accountEnabled"] or e["user"]["userType"] != "Member")}
    first = sync(relay, device)
    fake.configure(tenant=TENANT, delta_return_minimal=True)
    fake.changes(TENANT, update=[{"id": u, "fields": {"jobTitle": "Looked up"}} for u in changed])
    fake.reset_stats()
    lines = sync(relay, device, first[-1]["cursor"])
    assert lines[-1]["op"] == "end" and lines[0]["op"] != "reset"
    sent = {line["id"]: line for line in lines if line["op"] == "upsert"}
    assert set(sent) == set(changed) - excluded and excluded  # the fixture's directory has both kinds
    assert all(line["jobTitle"] == "Looked up" for line in sent.values())
    stats = fake.stats()
    assert stats["per_tenant"][TENANT]["graph_batch_items"] == 3  # ⌈40 / 15⌉
    assert stats["per_tenant"][TENANT]["graph_users_by_id"] == 40


def test_too_many_changed_users_to_check_make_a_full_sync(relay, device, fake, admin):
    """Each changed user of a group-scoped tenant costs a `checkMemberGroups`: past MAX_MEMBER_CHANGES of
    them on the first pages of /users/delta, the sync is a full one (reading the groups' members is
    cheaper); below it, an incremental one."""
    from functions.relay_contacts.syncs import MAX_MEMBER_CHANGES

    fake.directory(TENANT, 2600)
    group = fake.create_group(TENANT, users={"range": [0, 1000]})
    set_scope(admin, groups=[group])
    first = sync(relay, device)
    assert set(upserts(first)) == expected(fake, [group])
    everyone = [e["user"]["id"] for e in fake.iter_users(TENANT) if e["user"]]

    # 1,000 group members (indexes 0-999) and the users after them: the last 100 changed are outside it
    changed = everyone[:MAX_MEMBER_CHANGES - 100] + everyone[-100:]
    fake.changes(TENANT, update=[{"id": u, "fields": {"jobTitle": "Some"}} for u in changed])
    fake.reset_stats()
    some = sync(relay, device, first[-1]["cursor"])
    assert some[0]["op"] != "reset" and some[-1]["op"] == "end"
    # the members among them are sent; the 100 outside the group send nothing
    assert set(upserts(some)) == expected(fake, [group]) & set(changed)
    assert not {line.get("id") for line in some} & set(everyone[-100:])
    assert fake.stats()["per_tenant"][TENANT]["graph_member_checks"] == MAX_MEMBER_CHANGES
    assert not fake.stats()["per_tenant"][TENANT].get("graph_users_by_id")  # no lookup: the items decide

    fake.changes(TENANT, update=[{"id": u, "fields": {"jobTitle": "Many"}} for u in everyone[:MAX_MEMBER_CHANGES + 1]])
    fake.reset_stats()
    many = sync(relay, device, some[-1]["cursor"])
    assert many[0] == {"op": "reset"} and many[-1]["op"] == "end"
    assert set(upserts(many)) == expected(fake, [group])
    assert fake.stats()["per_tenant"][TENANT].get("graph_member_checks", 0) == 0
