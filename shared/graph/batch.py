"""Graph JSON batching: many small requests as `POST /$batch` calls of 20, at most 4 in flight.

Graph answers a batch `200` with each request's own status; an inner `429` or `500`/`502`/`503`/`504` is
retried like a top-level one: only those requests are sent again (after the longest `Retry-After` asked
for, else the client's backoff), within the client's retry deadline. Each inner answer says what it cost
(`x-ms-resource-unit`): the client's pacing counts those units for the `$batch` (shared/graph/client.py).
Four batches in flight matches Outlook's four concurrent requests per mailbox
for the photo requests (docs/architecture.md, "Groups, photos and batching").
"""
from __future__ import annotations

import contextvars
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from shared.graph.client import GraphClient, GraphUnavailable, retry_after_seconds

MAX_BATCH = 20
MAX_IN_FLIGHT = 4
_RETRYABLE = (429, 500, 502, 503, 504)  # as top-level answers (client.RETRYABLE_STATUSES)


@dataclass(frozen=True)
class BatchRequest:
    id: str
    url: str  # relative to GRAPH_BASE_URL, e.g. "/users/{id}/photo"
    method: str = "GET"
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)

    def encode(self) -> dict[str, Any]:
        item: dict[str, Any] = {"id": self.id, "method": self.method, "url": self.url}
        headers = dict(self.headers)
        if self.body is not None:
            item["body"] = self.body
            headers.setdefault("Content-Type", "application/json")
        if headers:
            item["headers"] = headers
        return item


@dataclass(frozen=True)
class BatchResponse:
    id: str
    status: int
    body: Any
    headers: dict[str, str]


class GraphBatcher:
    def __init__(self, graph: GraphClient, in_flight: int = MAX_IN_FLIGHT):
        self._graph = graph
        self._in_flight = in_flight

    def run(self, tenant_id: str, requests: list[BatchRequest]) -> dict[str, BatchResponse]:
        """Every request's final response by id (a request still throttled at the deadline raises
        GraphUnavailable)."""
        chunks = [requests[i:i + MAX_BATCH] for i in range(0, len(requests), MAX_BATCH)]
        if not chunks:
            return {}
        if len(chunks) == 1:
            return self._chunk(tenant_id, chunks[0])
        answers: dict[str, BatchResponse] = {}
        with ThreadPoolExecutor(max_workers=min(self._in_flight, len(chunks)),
                                thread_name_prefix="graph-batch") as pool:
            futures = [pool.submit(contextvars.copy_context().run, self._chunk, tenant_id, chunk) for chunk in chunks]
            for future in futures:
                answers.update(future.result())
        return answers

    def _chunk(self, tenant_id: str, chunk: list[BatchRequest]) -> dict[str, BatchResponse]:
        started = self._graph.now()
        answers: dict[str, BatchResponse] = {}
        pending = {request.id: request for request in chunk}
        attempt = 0
        while pending:
            attempt += 1
            body = self._graph.send(tenant_id, "POST", self._graph.url("$batch"),
                                    {"requests": [r.encode() for r in pending.values()]})
            wait = 0.0
            for raw in body.get("responses") or []:
                if not isinstance(raw, dict) or raw.get("id") not in pending:
                    continue
                status = int(raw.get("status") or 0)
                headers = {str(k).lower(): str(v) for k, v in (raw.get("headers") or {}).items()}
                if status in _RETRYABLE:
                    wait = max(wait, retry_after_seconds(headers.get("retry-after"), attempt))
                    continue
                answers[raw["id"]] = BatchResponse(raw["id"], status, raw.get("body"), headers)
                del pending[raw["id"]]
            if pending:
                wait = wait or retry_after_seconds(None, attempt)
                if self._graph.now() - started + wait > self._graph.deadline_seconds:
                    raise GraphUnavailable("Graph kept throttling batched requests", retry_after=wait)
                self._graph.sleep(wait)
        return answers

