import json
import logging

import pytest

from shared.logs import JsonFormatter, get_logger
from shared.store.schema import SchemaViolation, checked

TENANT = "7d6a9a1e-2b3c-4d5e-8f60-7a8b9c0d1e2f"


def test_log_lines_are_cloud_logging_json_and_drop_unknown_keys(log_lines):
    get_logger("shared.t").info("hello", tenantId=TENANT, displayName="Erika Mustermann",
                                mobilePhone="+491511234567")
    line = json.loads(log_lines[-1])
    assert line["severity"] == "INFO" and line["message"] == "hello" and line["tenantId"] == TENANT
    assert "displayName" not in line and "Erika" not in log_lines[-1] and "+4915" not in log_lines[-1]


@pytest.mark.parametrize("key, sent, logged", [
    ("method", "GET", "GET"), ("method", "ERIKA MUSTERMANN", "unrecognised"), ("method", "FOO", "unrecognised"),
    ("tenantId", TENANT, TENANT), ("tenantId", "Erika Mustermann", "unrecognised"),
    ("requestId", TENANT.upper(), "unrecognised"),
    ("eventType", "google.cloud.pubsub.topic.v1.messagePublished", "google.cloud.pubsub.topic.v1.messagePublished"),
    ("eventType", "call Erika at +491511234567", "unrecognised"),
    ("graphCode", "Request_ResourceNotFound", "Request_ResourceNotFound"),
    ("graphCode", "erika.mustermann@contoso.example", "unrecognised"),
    ("reason", "token-expired", "token-expired"), ("reason", "Token Expired", "unrecognised"),
    ("pages", 3, 3), ("pages", "3 pages", "unrecognised"), ("verified", True, True),
    ("messageId", "1234567890", "1234567890"), ("messageId", "x" * 65, "unrecognised"),
])
def test_values_reach_a_line_only_in_their_keys_shape(log_lines, key, sent, logged):
    get_logger("functions.t").info("shaped", **{key: sent})
    assert json.loads(log_lines[-1])[key] == logged


def test_library_lines_keep_logger_and_severity_but_not_their_text(log_lines):
    logging.getLogger("urllib3.connectionpool").warning("Retrying after %s: /v1.0/users/delta?$deltatoken=%s",
                                                        "error", "SECRET-DELTA")
    line = json.loads(log_lines[-1])
    assert line["severity"] == "WARNING" and line["logger"] == "urllib3.connectionpool"
    assert "SECRET-DELTA" not in log_lines[-1] and "deltatoken" not in log_lines[-1]


def test_exceptions_log_their_type_only(log_lines):
    try:
        raise ValueError("secret-token-abc")
    except ValueError:
        get_logger("shared.t").exception("failed")
    assert "secret-token-abc" not in log_lines[-1]
    assert json.loads(log_lines[-1])["error"] == "ValueError"


@pytest.mark.parametrize("level, severity", [
    (logging.DEBUG, "DEBUG"), (logging.INFO, "INFO"), (logging.WARNING, "WARNING"), (logging.ERROR, "ERROR"),
    (logging.CRITICAL, "CRITICAL"),
    # Levels without a Cloud Logging name (a library's custom level) take the severity below them.
    (5, "DEFAULT"), (15, "DEBUG"), (25, "INFO"), (35, "WARNING"), (45, "ERROR"), (60, "CRITICAL"),
])
def test_formatter_writes_cloud_logging_severities(level, severity):
    record = logging.LogRecord("x", level, __file__, 1, "m", None, None)
    assert json.loads(JsonFormatter().format(record))["severity"] == severity


def test_logger_methods_map_to_their_severities(log_lines):
    log = get_logger("shared.t")
    log.debug("d")
    log.info("i")
    log.warning("w")
    log.error("e")
    try:
        raise ValueError("x")
    except ValueError:
        log.exception("x")
    assert [json.loads(line)["severity"] for line in log_lines[-5:]] == ["DEBUG", "INFO", "WARNING", "ERROR", "ERROR"]


@pytest.mark.parametrize("collection, document", [
    ("tenants", {"name": "x", "email": "a@b"}),
    ("tenants", {"settings": {"fields": [], "phone": "1"}}),
    ("tenants", {"settings.phone": "1"}),
    ("devices", {"registeredAt": 1, "userName": "x"}),
    ("files", {"objectName": "o", "content": "x"}),
    ("deletionReceipts", {"deleted": {"documents": 1, "tenantId": "x"}}),
    ("deletionReceipts", {"tenantId": "x"}),
])
def test_schema_refuses_fields_outside_the_data_model(collection, document):
    with pytest.raises(SchemaViolation):
        checked(collection, document)


def test_schema_accepts_the_data_model():
    assert checked("tenants", {"name": "x", "settings": {"fields": [], "defaultRegion": "DE"}})
    assert checked("deletionReceipts", {"deleted.documents": 1, "verified": True})
    assert checked("devices", {"registeredAt": 1, "lastSeenAt": 2})
