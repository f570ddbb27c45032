"""Talking to the processes of a local stack over HTTP, as operators and the app do."""
from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from typing import Any

import requests

from tests import tokens


class Processes:
    def __init__(self, stack):
        self.stack = stack
        self.http = requests.Session()

    # -- manage_tenants (operators) -------------------------------------------------------------
    def admin(self, method: str, path: str, **kwargs) -> requests.Response:
        return self.http.request(method, self.stack.urls["manage_tenants"] + path, timeout=30, **kwargs)

    def onboard(self, name: str = "Fabrikam AG", **settings: Any) -> str:
        tenant_id = str(uuid.uuid4())
        assert self.stack.onboard(tenant_id, name, settings or None) == 201
        return tenant_id

    def attach(self, tenant_id: str, data: bytes, content_type: str, days: int = 7) -> str:
        response = self.admin("POST", f"/tenants/{tenant_id}/files?retentionDays={days}", data=data,
                              headers={"Content-Type": content_type})
        assert response.status_code == 201, response.text
        return response.json()["fileId"]

    def receipt(self, request_id: str, timeout: float = 45.0) -> dict:
        """Polls GET /receipts/{id} until the receipt is completed (or the time is up)."""
        deadline = time.monotonic() + timeout
        view: dict = {}
        while time.monotonic() < deadline:
            response = self.admin("GET", f"/receipts/{request_id}")
            view = response.json()
            if response.status_code == 200 and view.get("status") == "completed":
                return view
            time.sleep(0.2)
        raise AssertionError(f"receipt not completed in {timeout:.0f} s: {view}")

    # -- register_device (the app) --------------------------------------------------------------
    def app(self, tenant_id: str, method: str, path: str, **kwargs) -> requests.Response:
        headers = {"Authorization": f"Bearer {tokens.token(self.stack, tenant_id)}", **kwargs.pop("headers", {})}
        return self.http.request(method, self.stack.urls["register_device"] + path, headers=headers, timeout=30,
                                 **kwargs)

    def register(self, tenant_id: str) -> str:
        device_id = str(uuid.uuid4())
        response = self.app(tenant_id, "POST", "/", json={"deviceId": device_id})
        assert response.status_code == 201, response.text
        return device_id

    def diagnostics(self, tenant_id: str, device_id: str, data: bytes = b'{"app":"1.0","events":[1]}',
                    content_type: str = "application/json") -> str:
        response = self.app(tenant_id, "POST", f"/{device_id}/diagnostics", data=data,
                            headers={"Content-Type": content_type})
        assert response.status_code == 201, response.text
        return response.json()["fileId"]

    # -- relay_contacts (the app) --------------------------------------------------------------
    def sync_together(self, phones: list[tuple[str, str]], stagger: float = 0.15) -> list[list[dict]]:
        """Full syncs of several phones `(tenantId, deviceId)` at once through the relay process, each started
        `stagger` seconds after the one before (so phones join rounds that run, also mid-round), every other
        one asking for gzip; each phone's lines, in the order given."""
        results: list[list[dict]] = [[] for _ in phones]

        def run(index: int, tenant_id: str, device_id: str) -> None:
            time.sleep(index * stagger)
            headers = {"Authorization": f"Bearer {tokens.token(self.stack, tenant_id)}", "X-Device-Id": device_id,
                       "Accept-Encoding": "gzip" if index % 2 else "identity"}
            response = requests.get(self.stack.urls["relay_contacts"] + "/", headers=headers, timeout=120)
            assert response.status_code == 200, response.text[:300]
            results[index] = [json.loads(line) for line in response.text.splitlines()]

        threads = [threading.Thread(target=run, args=(i, *phone)) for i, phone in enumerate(phones)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=180)
        return results

    # -- Pub/Sub emulator (REST, as `gcloud`/curl would) ----------------------------------------
    def pubsub(self, method: str, path: str, body: dict | None = None) -> dict:
        return self.stack.pubsub(method, path, body, timeout=30, accept=())

    def publish(self, topic: str, data: bytes) -> None:
        self.pubsub("POST", f"topics/{topic}:publish", {"messages": [{"data": base64.b64encode(data).decode()}]})

    def pull(self, subscription: str, timeout: float) -> list[dict]:
        """Pulls and acknowledges; returns the messages (data decoded) once at least one arrived."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            received = self.pubsub("POST", f"subscriptions/{subscription}:pull",
                                   {"maxMessages": 10, "returnImmediately": True}).get("receivedMessages", [])
            if received:
                self.pubsub("POST", f"subscriptions/{subscription}:acknowledge",
                            {"ackIds": [m["ackId"] for m in received]})
                return [dict(m["message"], data=json.loads(base64.b64decode(m["message"]["data"])))
                        for m in received]
            time.sleep(0.5)
        return []
