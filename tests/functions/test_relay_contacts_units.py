"""Pure logic of the relay: cursor signing and binding, field allow-list, phone normalisation."""
import json
import uuid

import pytest

from functions.relay_contacts.cursor import Cursor, CursorCodec, settings_fingerprint
from functions.relay_contacts.service import ContactMapper
from shared.errors import BadRequest, Forbidden

T = str(uuid.uuid4())


def test_cursor_round_trip_and_binding():
    codec = CursorCodec(b"k" * 32)
    cursor = Cursor(T, "abc", "https://graph.example/v1.0/users/delta?$deltatoken=x")
    text = codec.encode(cursor)
    assert codec.decode(text, T) == cursor
    with pytest.raises(Forbidden):
        codec.decode(text, str(uuid.uuid4()))
    with pytest.raises(BadRequest):
        CursorCodec(b"j" * 32).decode(text, T)


@pytest.mark.parametrize("mangle", [
    lambda t: t[:-2] + ("AA" if not t.endswith("AA") else "BB"),
    lambda t: "x" + t,
    lambda t: t.replace(".", ""),
    lambda t: t + ".x",
    lambda t: "",
    lambda t: "a" * 9000,
])
def test_tampered_cursors_are_400(mangle):
    codec = CursorCodec(b"k" * 32)
    text = codec.encode(Cursor(T, "abc", "https://g/v1.0/users/delta?$deltatoken=x"))
    with pytest.raises(BadRequest):
        codec.decode(mangle(text), T)


def _stray(text: str, at: int, byte: str) -> str:
    return text[:at] + byte + text[at:]


@pytest.mark.parametrize("variant", [
    lambda t: _stray(t, 5, "="),  # padding base64 decoders skip
    lambda t: _stray(t, 5, "\n"),
    lambda t: _stray(t, len(t) // 2, " "),
    lambda t: _stray(t, len(t) - 3, "+"),  # standard-alphabet bytes a lenient decoder maps or drops
    lambda t: t + "=",
    lambda t: t.replace(".", ".="),
])
def test_a_cursor_is_accepted_only_in_its_canonical_form(variant):
    """A byte outside the cursor's alphabet anywhere is a 400, even where a lenient base64 decoder would
    still find the same signed payload."""
    codec = CursorCodec(b"k" * 32)
    text = codec.encode(Cursor(T, "abc", "https://g/v1.0/users/delta?$deltatoken=x"))
    assert codec.decode(text, T).delta_link.endswith("$deltatoken=x")
    with pytest.raises(BadRequest):
        codec.decode(variant(text), T)


def test_a_cursor_with_other_trailing_bits_is_not_canonical():
    """Base64's last character can carry bits the decoder ignores: such a twin decodes to the same bytes
    and the same valid signature, but is not the cursor that was handed out."""
    import base64

    codec = CursorCodec(b"k" * 32)
    text = codec.encode(Cursor(T, "abc", "https://g/v1.0/users/delta?$deltatoken=x"))
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    signature = text.rsplit(".", 1)[1]
    twins = [signature[:-1] + c for c in alphabet if c != signature[-1]
             and base64.urlsafe_b64decode(signature[:-1] + c + "=" * (-len(signature) % 4))
             == base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4))]
    assert twins  # a 32-byte signature in 43 characters leaves two bits free
    for twin in twins:
        with pytest.raises(BadRequest):
            codec.decode(text.rsplit(".", 1)[0] + "." + twin, T)


def test_fingerprint_changes_with_fields_or_region():
    base = settings_fingerprint({"fields": ["displayName"], "defaultRegion": "DE"})
    assert base != settings_fingerprint({"fields": ["displayName", "mail"], "defaultRegion": "DE"})
    assert base != settings_fingerprint({"fields": ["displayName"], "defaultRegion": "AT"})
    assert base == settings_fingerprint({"defaultRegion": "DE", "fields": ["displayName"]})


def test_mapper_keeps_allowed_fields_and_normalises_numbers():
    mapper = ContactMapper(["displayName", "mobilePhone", "businessPhones"], "DE")
    user = {"id": "u1", "displayName": "Erika", "mail": "erika@contoso.example", "jobTitle": "CEO",
            "mobilePhone": "0151 23456789", "businessPhones": ["030/1234567", "12", "+44 20 7946 0958"]}
    line = json.loads(mapper.line(user, full=True))
    assert line == {"op": "upsert", "id": "u1", "displayName": "Erika", "mobilePhone": "+4915123456789",
                    "businessPhones": ["+49301234567", "+442079460958"]}


def test_mapper_without_region_keeps_only_international_numbers():
    mapper = ContactMapper(["mobilePhone", "businessPhones"], None)
    line = json.loads(mapper.line({"id": "u", "mobilePhone": "0151 23456789",
                                   "businessPhones": ["+49 30 1234567"]}, full=True))
    assert line["mobilePhone"] is None and line["businessPhones"] == ["+49301234567"]


def test_incremental_upserts_carry_only_reported_fields_and_removals():
    mapper = ContactMapper(["displayName", "jobTitle", "mobilePhone"], "DE")
    assert json.loads(mapper.line({"id": "u", "jobTitle": None}, full=False)) == {
        "op": "upsert", "id": "u", "jobTitle": None}
    assert json.loads(mapper.line({"id": "u", "@removed": {"reason": "deleted"}}, full=False)) == {
        "op": "remove", "id": "u"}
    full = json.loads(mapper.line({"id": "u"}, full=True))
    assert full == {"op": "upsert", "id": "u", "displayName": None, "jobTitle": None, "mobilePhone": None}


def test_seen_filter_is_certain_about_unseen_users_and_fixed_in_size():
    from functions.relay_contacts.scope import SeenFilter

    seen = SeenFilter()
    streamed = [str(uuid.uuid4()) for _ in range(100_000)]
    for user_id in streamed:
        seen.add(user_id)
    assert all(seen.maybe_seen(user_id) for user_id in streamed)  # no false negatives, ever
    others = [str(uuid.uuid4()) for _ in range(100_000)]
    assert sum(seen.maybe_seen(user_id) for user_id in others) < 20  # ~5e-6 expected; each is checked exactly
    assert len(seen._bits) == 1 << 20  # 1 MiB, whatever the directory's size


def test_fingerprint_changes_with_the_scope():
    base = settings_fingerprint({"fields": ["displayName"]})
    assert base == settings_fingerprint({"fields": ["displayName"], "scope": {"groups": []}})  # the defaults
    assert base != settings_fingerprint({"fields": ["displayName"], "scope": {"excludeGuests": False}})
    groups = {"scope": {"groups": ["b", "a"]}}
    assert settings_fingerprint(groups) == settings_fingerprint({"scope": {"groups": ["a", "b"]}})
    assert settings_fingerprint(groups) != settings_fingerprint({"scope": {"groups": ["a"]}})
    assert settings_fingerprint({}) == settings_fingerprint({"photos": False})  # photos do not reset syncs


class _RecordingBatcher:
    """Answers `$batch` runs like Graph would for a directory holding `existing` (the collaborator the
    ScopeResolver is given), and records what was asked."""

    def __init__(self, existing: set[str]):
        self.existing = existing
        self.asked: list = []

    def run(self, tenant_id, requests):
        from urllib.parse import parse_qs, urlsplit

        from shared.graph.batch import BatchResponse

        self.asked += requests
        answers = {}
        for request in requests:
            expression = parse_qs(urlsplit(request.url).query)["$filter"][0]
            ids = [part.strip(" '") for part in expression[len("id in ("):-1].split(",")]
            value = [{"id": i, "accountEnabled": True} for i in ids if i in self.existing]
            answers[request.id] = BatchResponse(request.id, 200, {"value": value}, {})
        return answers


def test_scope_lookups_ask_fifteen_users_per_request_and_never_send_a_non_guid():
    from functions.relay_contacts.scope import USERS_PER_LOOKUP, ScopeResolver

    users = [str(uuid.uuid4()) for _ in range(31)]
    batcher = _RecordingBatcher(set(users[1:]))  # users[0] was deleted meanwhile
    odd = "x') or (id eq 'y"
    answers = ScopeResolver(batcher, T, ["displayName", "accountEnabled"]).resolve(users + [odd], True, ())
    assert USERS_PER_LOOKUP == 15 and len(batcher.asked) == 3  # ⌈31 / 15⌉
    assert all(r.url.startswith("/users?$filter=id%20in%20('")
               and r.url.endswith("&$select=id,displayName,accountEnabled") for r in batcher.asked)
    assert not any("x'" in r.url or "%27y" in r.url for r in batcher.asked)
    assert answers[users[0]].gone and answers[odd].gone and not answers[odd].member
    assert all(not answers[u].gone and answers[u].user == {"id": u, "accountEnabled": True} for u in users[1:])
