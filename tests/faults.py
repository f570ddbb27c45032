"""Fault injection at the client boundary: real Firestore and Storage clients whose every RPC (Firestore
GAPIC call) and every HTTP request (Storage JSON API) passes through a counter.

`FaultyClients(fail_after=k)` lets k calls through and fails every later one, as if the function had
died right there; `failures=1` fails only call k+1 (a transient glitch). `FirestoreFaults` rewrites
Firestore's answers the way Firestore answers under load and contention (bulk writes UNAVAILABLE or
ABORTED, transactions aborted), which the emulator never does. Nothing in production code knows about
this: the service simply gets clients, as in production.
"""
from __future__ import annotations

import contextlib
import threading
import zlib

from google.api_core.exceptions import Aborted, InternalServerError, ServiceUnavailable
from google.api_core.retry import Retry

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


# -- Firestore's answers under load and contention -------------------------------------------------
UNAVAILABLE, ABORTED, INTERNAL = 14, 10, 13  # google.rpc.Code


def _write_name(write) -> str:
    return write.delete or write.update.name


def _transaction_of(request) -> bytes | None:
    if isinstance(request, dict):
        return request.get("transaction") or None
    return getattr(request, "transaction", None) or None


class _RewrittenAnswers:
    """The GAPIC Firestore API of a real client, with some answers rewritten by `FirestoreFaults`."""

    def __init__(self, api, faults: FirestoreFaults):
        self._api = api
        self._faults = faults

    def __getattr__(self, name: str):
        return getattr(self._api, name)

    def batch_write(self, request, **kwargs):
        return self._faults.batch_write(self._api, request, **kwargs)

    def commit(self, request, **kwargs):
        transaction = _transaction_of(request)
        if transaction is not None and self._faults.take("aborted_commits"):
            # Firestore aborts the whole transaction: nothing is written and its locks are released.
            self._api.rollback(request={"database": request["database"], "transaction": transaction})
            raise Aborted("injected: too much contention on these documents")
        retry = kwargs.get("retry")
        if transaction is None and isinstance(retry, Retry):
            # The fault must meet the caller's retry as Firestore's answer would (below it, not above).
            def once():
                if self._faults.take("aborted_writes"):
                    raise Aborted("injected: the write met a transaction's lock")  # nothing written
                return self._api.commit(request=request, **{**kwargs, "retry": None})
            return retry(once)()
        if transaction is None and self._faults.take("aborted_writes"):
            raise Aborted("injected: the write met a transaction's lock")
        return self._api.commit(request=request, **kwargs)

    def batch_get_documents(self, request, **kwargs):
        if _transaction_of(request) is not None and self._faults.take("aborted_reads"):
            raise Aborted("injected: transaction lock timeout")
        return self._api.batch_get_documents(request=request, **kwargs)


class FirestoreFaults:
    """Firestore answering as it does under load and contention, which the emulator never does: the
    client's answers are rewritten in the test process; production code gets a plain client.

    - BatchWrite (the BulkWriter): a document whose name hashes into `one_in` gets its first `times`
      writes answered with `codes` in turn (UNAVAILABLE, ABORTED) in the per-write status of BatchWrite's answer;
      those writes are not sent (Firestore did not apply them). The first `whole_batches` BatchWrite calls
      fail as a whole with INTERNAL (not retried by the client library's own retry), nothing applied.
    - Transactions: the first `aborted_reads` reads and `aborted_commits` commits inside a transaction
      answer ABORTED, as Firestore does when transactions contend for a lock; the first `aborted_writes`
      commits outside a transaction too (a write that met a transaction's lock). Nothing of them is applied.
    """

    def __init__(self, db=None, *, one_in: int = 0, times: int = 2, codes: tuple[int, ...] = (UNAVAILABLE, ABORTED),
                 whole_batches: int = 0, aborted_reads: int = 0, aborted_commits: int = 0, aborted_writes: int = 0):
        from google.cloud import firestore

        self.db = db if db is not None else firestore.Client(project=PROJECT)
        self.one_in, self.times, self.codes = one_in, times, codes
        self._left = {"whole_batches": whole_batches, "aborted_reads": aborted_reads,
                      "aborted_commits": aborted_commits, "aborted_writes": aborted_writes}
        self._seen: dict[str, int] = {}  # writes per document name
        self._lock = threading.Lock()
        self.faulted_writes = 0  # writes answered UNAVAILABLE / ABORTED / INTERNAL
        self.batch_writes = 0
        self.db._firestore_api_internal = _RewrittenAnswers(self.db._firestore_api, self)

    def take(self, kind: str) -> bool:
        with self._lock:
            if self._left[kind] <= 0:
                return False
            self._left[kind] -= 1
            return True

    def left(self, kind: str) -> int:
        return self._left[kind]

    def _code_for(self, name: str) -> int | None:
        if not self.one_in or zlib.crc32(name.encode()) % self.one_in:
            return None
        with self._lock:
            seen = self._seen[name] = self._seen.get(name, 0) + 1
        return None if seen > self.times else self.codes[(seen - 1) % len(self.codes)]

    def batch_write(self, api, request, **kwargs):
        from google.cloud.firestore_v1.types.firestore import BatchWriteResponse
        from google.cloud.firestore_v1.types.write import WriteResult
        from google.rpc.status_pb2 import Status

        writes = list(request["writes"])
        with self._lock:
            self.batch_writes += 1
        if self.take("whole_batches"):
            with self._lock:
                self.faulted_writes += len(writes)
            raise InternalServerError("injected: the BatchWrite call failed")
        codes = [self._code_for(_write_name(write)) for write in writes]
        sent = [write for write, code in zip(writes, codes, strict=True) if code is None]
        answer = api.batch_write(request={**request, "writes": sent}, **kwargs) if sent else None
        results, statuses = iter(answer.write_results if answer else ()), iter(answer.status if answer else ())
        write_results, status = [], []
        for code in codes:
            if code is None:
                write_results.append(next(results))
                status.append(next(statuses))
            else:
                write_results.append(WriteResult())
                status.append(Status(code=code, message="injected"))
        with self._lock:
            self.faulted_writes += sum(code is not None for code in codes)
        return BatchWriteResponse(write_results=write_results, status=status)
