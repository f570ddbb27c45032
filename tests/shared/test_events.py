import json
import uuid

import pytest

from shared.errors import PoisonMessage
from shared.events import DeletionRequest, parse_deletion_message, receipt_subject

T, D, R = (str(uuid.uuid4()) for _ in range(3))


def test_round_trip_of_every_kind():
    for request in (DeletionRequest("tenant", T, R), DeletionRequest("device", T, R, D),
                    DeletionRequest("file", T, R, D)):
        assert parse_deletion_message(request.to_message()) == request


def test_a_continuation_keeps_the_request_and_counts_up():
    request = DeletionRequest("tenant", T, R)
    first = request.next_continuation()
    assert (first.request_id, first.continuation, first.next_continuation().continuation) == (R, 1, 2)
    assert json.loads(first.to_message()) == {"type": "tenant.delete", "tenantId": T, "requestId": R,
                                              "continuation": 1}
    assert "continuation" not in json.loads(request.to_message())
    for message in (first, DeletionRequest("device", T, R, D, 7)):
        assert parse_deletion_message(message.to_message()) == message


@pytest.mark.parametrize("value", [0, -1, "1", 1.0, 1.5, True, None, [], 2**31, 10**30])
def test_a_continuation_that_is_not_a_positive_integer_is_poison(value):
    body = {"type": "tenant.delete", "tenantId": T, "requestId": R, "continuation": value}
    with pytest.raises(PoisonMessage, match="continuation"):
        parse_deletion_message(json.dumps(body).encode())


def test_unknown_extra_keys_are_ignored():
    body = {"type": "tenant.delete", "tenantId": T, "requestId": R, "origin": "sweeper"}
    assert parse_deletion_message(json.dumps(body).encode()) == DeletionRequest("tenant", T, R)


@pytest.mark.parametrize("data", [
    b"", b"\xff", b"[]", b"null", b'"x"', b'{"type":"tenant.delete"}',
    json.dumps({"type": "tenant.remove", "tenantId": T, "requestId": R}).encode(),
    json.dumps({"type": "device.delete", "tenantId": T, "requestId": R}).encode(),
    json.dumps({"type": "tenant.delete", "tenantId": T.upper(), "requestId": R}).encode(),
    json.dumps({"type": "tenant.delete", "tenantId": T + "/..", "requestId": R}).encode(),
    json.dumps({"type": "file.delete", "tenantId": T, "requestId": R, "fileId": "*"}).encode(),
    json.dumps({"type": "tenant.delete", "tenantId": T, "requestId": R, "pad": "x" * 5000}).encode(),
])
def test_poison(data):
    with pytest.raises(PoisonMessage):
        parse_deletion_message(data)


def test_receipt_subject_is_keyed_and_hides_ids():
    request = DeletionRequest("device", T, R, D)
    subject = receipt_subject(b"k" * 32, request)
    assert len(subject) == 64 and T not in subject and D not in subject
    assert subject != receipt_subject(b"j" * 32, request)
