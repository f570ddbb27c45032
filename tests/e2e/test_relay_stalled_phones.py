"""Phones that stop reading do not hang the relay process: its gunicorn server has a few threads, more
phones than that open a full sync and never read a byte; after RELAY_WRITE_TIMEOUT_SECONDS their writes
fail, their threads are free again and the tenant's lease is given back, so another phone syncs."""
from __future__ import annotations

import json
import socket
import time
import uuid

import pytest
import requests

from local.launcher import free_port, start_function
from shared.clock import utc_now
from shared.store.leases import SyncLeaseRepository
from tests import support, tokens
from tests.fake_ms import FakeMicrosoftControl

TENANT = "a0b1c2d3-e4f5-4a6b-8c7d-8e9fa0b1c2d4"
THREADS = 4
STALLED = 6  # more than the relay's threads
WRITE_TIMEOUT = 2


def stalled_phone(port: int, headers: dict[str, str]) -> socket.socket:
    """A connection that asks for a full sync and then reads nothing (a tiny receive window)."""
    connection = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    connection.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    connection.connect(("127.0.0.1", port))
    lines = ["GET / HTTP/1.1", f"Host: 127.0.0.1:{port}", "Connection: close",
             *(f"{name}: {value}" for name, value in headers.items())]
    connection.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    return connection


def closed_by_the_server(connection: socket.socket, timeout: float) -> bool:
    """Reads what is left; True once the server has closed the connection."""
    connection.settimeout(timeout)
    try:
        while connection.recv(1 << 20):
            pass
    except (TimeoutError, ConnectionResetError):
        return False
    return True


@pytest.mark.e2e
def test_phones_that_stop_reading_are_dropped_and_free_their_threads(stack, emulators, tmp_path):
    fake = FakeMicrosoftControl(stack)
    fake.reset()
    fake.directory(TENANT, 30000)  # ~10 MB of lines: far more than the sockets' buffers
    admin, devices = stack.urls["manage_tenants"], stack.urls["register_device"]
    requests.post(f"{admin}/tenants", json={"tenantId": TENANT, "name": "Stalled AG"}).raise_for_status()
    auth = {"Authorization": f"Bearer {tokens.token(stack, TENANT)}"}

    def device() -> dict[str, str]:
        device_id = str(uuid.uuid4())
        requests.post(f"{devices}/", json={"deviceId": device_id}, headers=auth).raise_for_status()
        return {**auth, "X-Device-Id": device_id}

    port = free_port()
    env = dict(stack.env, RELAY_WRITE_TIMEOUT_SECONDS=str(WRITE_TIMEOUT))
    relay = start_function("relay_contacts", port, env, tmp_path / "relay.log", threads=THREADS).wait_ready()
    try:
        phones = [device() for _ in range(STALLED + 1)]
        stalled = [stalled_phone(port, headers) for headers in phones[:STALLED]]
        time.sleep(0.5)
        started = time.monotonic()
        response = requests.get(f"http://127.0.0.1:{port}/", headers=phones[-1], timeout=60)
        took = time.monotonic() - started
        lines = [json.loads(line) for line in response.text.splitlines()]
        assert response.status_code == 200
        assert lines[0] == {"op": "reset"} and lines[-1]["op"] == "end"
        assert took < 30, took
        assert all(closed_by_the_server(connection, timeout=10) for connection in stalled)
        deadline = time.monotonic() + 10
        while SyncLeaseRepository(support.db()).held(TENANT, utc_now()) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert SyncLeaseRepository(support.db()).held(TENANT, utc_now()) == 0
    finally:
        relay.stop()
        for connection in locals().get("stalled", []):
            connection.close()
