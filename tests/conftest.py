"""Session fixtures: the local stack (same launcher as `make dev`), clean data per test, log capture."""
from __future__ import annotations

import logging
from pathlib import Path

import pytest

from local.stack import LocalStack
from shared.logs import JsonFormatter

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def stack(tmp_path_factory) -> LocalStack:
    state = tmp_path_factory.mktemp("local-stack")
    # DEBUG, so the privacy scans of the functions' logs see lines of every level. The tests register many
    # devices with one test user's tokens: the per-user limit is raised here and tested on its own
    # (tests/functions/test_register_device.py, `user_limit`).
    env = {"LOG_LEVEL": "DEBUG", "DEVICE_REGISTRATIONS_PER_USER_PER_10_MINUTES": "100000"}
    with LocalStack(state_dir=state, with_functions=True, extra_env=env) as local_stack:
        # Deletion requests reach the handle_deletion process only in tests that ask for it (`deletion_push`):
        # a push arriving a second later would otherwise act on the next test's data.
        local_stack.pause_deletion_push()
        # In-process entry points (create_app test clients) talk to the same emulators and fakes.
        with local_stack.client_environment():
            yield local_stack


@pytest.fixture
def emulators(stack: LocalStack) -> LocalStack:
    """The stack with empty Firestore and bucket."""
    stack.reset_data()
    return stack


@pytest.fixture
def deletion_push(emulators: LocalStack):
    """The stack with the push subscription deletion-requests → handle_deletion process, for this test."""
    emulators.resume_deletion_push()
    yield emulators
    emulators.pause_deletion_push()


class LineCollector(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.setFormatter(JsonFormatter())
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture
def log_lines():
    """Every log line (all levels, all loggers) emitted in-process during the test, as JSON text."""
    collector = LineCollector()
    root = logging.getLogger()
    previous = root.level
    root.addHandler(collector)
    root.setLevel(logging.DEBUG)
    yield collector.lines
    root.removeHandler(collector)
    root.setLevel(previous)


def make_client(target: str):
    from functions_framework import create_app

    return create_app(target, str(ROOT / "main.py")).test_client()


def registered_device(stack, tenant_id: str) -> dict[str, str]:
    """A new device registered through register_device by a user of the tenant: the headers a phone sends."""
    import uuid

    from tests import tokens

    device_id = str(uuid.uuid4())
    access = tokens.token(stack, tenant_id)
    assert make_client("register_device").post("/", json={"deviceId": device_id}, headers={
        "Authorization": f"Bearer {access}"}).status_code == 201
    return {"Authorization": f"Bearer {access}", "X-Device-Id": device_id}


@pytest.fixture
def admin(emulators):
    return make_client("manage_tenants")


@pytest.fixture
def fake(stack, request):
    """The fake Microsoft's control API; no fault a test sets outlives it. Modules marked
    `fresh_directories` start each test from the fake's initial directories."""
    from tests.fake_ms import FakeMicrosoftControl

    control = FakeMicrosoftControl(stack)
    if request.node.get_closest_marker("fresh_directories"):
        control.reset()
    yield control
    control.faults()
