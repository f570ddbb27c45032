"""Fault injection at the client boundary: real Firestore and Storage clients whose every RPC (Firestore
GAPIC call) and every HTTP request (Storage JSON API) passes through a counter.

`FaultyClients(fail_after=k)` lets k calls through and fails every later one, as if the function had
died right there; `failures=1` fails only call k+1 (a transient glitch). Nothing in production code
knows about this: the service simply gets clients, as in production.
"""
from __future__ import annotations

import contextlib
import threading

from google.api_core.exceptions import ServiceUnavailable

from local.stack import BUCKET, PROJECT


class _Counted:
    """Wraps an object; each public method call first asks the counter for permission."""

    def __init__(self, target, counter: FaultyClients, methods: frozenset[str] | None = None):
        self._target = target
        self._counter = counter
        self._methods = methods

    def __getattr__(self, name: str):
        value = getattr(self._target, name)
        if name.startswith("_") or not callable(value) or (self._methods and name not in self._methods):
            return value

        def call(*args, **kwargs):
            self._counter.tick()
            return value(*args, **kwargs)

        return call


class _CountedFirestoreApi(_Counted):
    """Also remembers open transactions, so a test can expire those of a "dead" run (see below)."""

    def __getattr__(self, name: str):
        call = super().__getattr__(name)
        if name == "begin_transaction":
            def begin(*args, **kwargs):
                response = call(*args, **kwargs)
                self._counter.open_transactions.add(response.transaction)
                return response
            return begin
        if name in ("commit", "rollback"):
            def end(*args, request=None, **kwargs):
                transaction = (request.get("transaction") if isinstance(request, dict)
                               else getattr(request, "transaction", None))
                result = call(*args, request=request, **kwargs)
                self._counter.open_transactions.discard(transaction)
                return result
            return end
        return call


class FaultyClients:
    def __init__(self, fail_after: int | None = None, failures: int | None = None, bucket_name: str = BUCKET):
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import firestore, storage

        self.fail_after = fail_after
        self.failures = failures
        self.calls = 0
        self._lock = threading.Lock()
        self.db = firestore.Client(project=PROJECT)
        self.open_transactions: set[bytes] = set()
        self._api = self.db._firestore_api
        self.db._firestore_api_internal = _CountedFirestoreApi(self._api, self)
        storage_client = storage.Client(project=PROJECT, credentials=AnonymousCredentials())
        storage_client._base_connection = _Counted(storage_client._base_connection, self,
                                                   frozenset({"api_request"}))
        self.bucket = storage_client.bucket(bucket_name)

    def tick(self) -> None:
        with self._lock:
            self.calls += 1
            call = self.calls
        if self.fail_after is not None and call > self.fail_after and (
                self.failures is None or call <= self.fail_after + self.failures):
            raise ServiceUnavailable(f"injected fault at call {call}")

    def expire_open_transactions(self) -> None:
        """What Firestore does on its own some time after a client died mid-transaction: release its locks.

        The emulator keeps an abandoned transaction (and its locks) open, so the test fast-forwards that.
        """
        for transaction in list(self.open_transactions):
            with contextlib.suppress(Exception):  # already gone
                self._api.rollback(request={"database": self.db._database_string, "transaction": transaction})
        self.open_transactions.clear()

    def service(self, continuations=None, attempt_seconds: float = 420.0, chunk_size: int | None = None):
        """The deletion service as `handle_deletion` wires it, over these counted clients (continuations
        go to `continuations`, by default the publisher of the real topic)."""
        from dataclasses import replace

        from functions.handle_deletion.service import DeletionService
        from shared import wiring
        from shared.clock import utc_now
        from shared.store.erasure import DocumentEraser
        from tests import support

        config = support.settings()
        store = support.store(db=self.db, bucket=self.bucket)
        if chunk_size is not None:
            store = replace(store, eraser=DocumentEraser(self.db, config.deletion_initial_ops_per_second,
                                                         config.deletion_max_ops_per_second, chunk_size))
        return DeletionService(store, config.receipt_key, utc_now,
                               continuations or wiring.deletion_publisher(config), attempt_seconds)
