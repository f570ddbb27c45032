"""Deleting a large tenant: the cascade of handle_deletion vs a naive baseline, side by side in one run.

    python -m benchmarks.deletion [--devices 20000] [--files 2000] [--naive-fraction 1.0] [--quick]

A tenant with N devices and M technical files (manifest + object; half tenant files, half device files)
is seeded with a lifted BulkWriter, then deleted by

- the service (DeletionService, as handle_deletion runs it), ramp lifted on the emulator;
- the service with the production ramp (BulkWriter 500 ops/s initial, +50 % every 5 minutes, max 10000:
  Firestore's 500/50/5 rule, DELETION_INITIAL_OPS_PER_SECOND / DELETION_MAX_OPS_PER_SECOND defaults);
- a naive baseline: object by object, then document by document, sequentially.

With --naive-fraction < 1 the baseline runs on a proportional tenant and its time is extrapolated
linearly (the table says so).

On loopback a request costs no network time at all, which flatters the naive baseline: in production
each of its requests is a round trip (a Firestore commit in `eur3` takes milliseconds to tens of
milliseconds). So a second table repeats the comparison through a TCP proxy that delays every byte by
--latency-ms each way (default 5 ms, i.e. a 10 ms round trip); the baseline runs there on
--latency-naive-fraction of the tenant (default 10 %) and is extrapolated. Both tables come from one run.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from benchmarks._common import local_stack, log, table

UNLIMITED_OPS = 1_000_000
PRODUCTION_RAMP = (500, 10_000)


@dataclass
class Run:
    label: str
    documents: int
    objects: int
    seconds: float
    firestore_seconds: float
    verified: bool
    note: str = ""

    @property
    def docs_per_second(self) -> float:
        return self.documents / self.firestore_seconds if self.firestore_seconds else float("nan")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=20_000)
    parser.add_argument("--files", type=int, default=2_000)
    parser.add_argument("--naive-fraction", type=float, default=1.0,
                        help="run the naive baseline on this share of the tenant and extrapolate")
    parser.add_argument("--skip-production-ramp", action="store_true")
    parser.add_argument("--latency-ms", type=float, default=5.0,
                        help="one-way delay of the proxy for the second table (0 skips it)")
    parser.add_argument("--latency-naive-fraction", type=float, default=0.1)
    parser.add_argument("--quick", action="store_true", help="2,000 devices and 200 files (smoke run)")
    args = parser.parse_args()
    if args.quick:
        args.devices, args.files = 2_000, 200
    return args


class LatencyProxy:
    """A TCP proxy that delivers every chunk `delay` seconds after it arrived, in both directions.

    Delivery is scheduled, not serialised: concurrent requests (HTTP/2 streams, parallel connections)
    each pay the delay once, as over a real network; bandwidth is not limited.
    """

    def __init__(self, target: str, delay: float):
        self.target_host, _, port = target.rpartition(":")
        self.target_port = int(port)
        self.delay = delay
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()
        self.port = 0

        async def serve():
            server = await asyncio.start_server(self._connection, "127.0.0.1", 0)
            self.port = server.sockets[0].getsockname()[1]
            ready.set()
            async with server:
                await server.serve_forever()

        self.thread = threading.Thread(target=lambda: self.loop.run_until_complete(serve()), daemon=True)
        self.thread.start()
        ready.wait(10)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def _connection(self, client_reader, client_writer):
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(self.target_host, self.target_port)
        except OSError:
            client_writer.close()
            return
        await asyncio.gather(self._pipe(client_reader, upstream_writer), self._pipe(upstream_reader, client_writer),
                             return_exceptions=True)

    async def _pipe(self, reader, writer):
        queue: asyncio.Queue = asyncio.Queue()

        async def deliver():
            while True:
                due, data = await queue.get()
                wait = due - self.loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                if data is None:
                    with contextlib.suppress(Exception):
                        writer.close()
                    return
                writer.write(data)
                await writer.drain()

        delivery = asyncio.ensure_future(deliver())
        try:
            while data := await reader.read(65536):
                queue.put_nowait((self.loop.time() + self.delay, data))
        finally:
            queue.put_nowait((self.loop.time() + self.delay, None))
            await delivery


class Bench:
    def __init__(self, stack, firestore_host: str | None = None, storage_url: str | None = None):
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import firestore, storage

        from local.stack import BUCKET, PROJECT

        os.environ.update({k: stack.env[k] for k in ("GOOGLE_CLOUD_PROJECT", "FIRESTORE_EMULATOR_HOST",
                                                     "PUBSUB_EMULATOR_HOST", "STORAGE_EMULATOR_HOST")})
        # The clients read the emulator addresses when they are created: point these ones at the proxy.
        os.environ["FIRESTORE_EMULATOR_HOST"] = firestore_host or stack.env["FIRESTORE_EMULATOR_HOST"]
        os.environ["STORAGE_EMULATOR_HOST"] = storage_url or stack.env["STORAGE_EMULATOR_HOST"]
        self.db = firestore.Client(project=PROJECT)
        self.bucket = storage.Client(project=PROJECT, credentials=AnonymousCredentials()).bucket(BUCKET)
        os.environ.update({k: stack.env[k] for k in ("FIRESTORE_EMULATOR_HOST", "STORAGE_EMULATOR_HOST")})
        self.receipt_key = stack.env["RECEIPT_KEY"].encode()

    # -- seeding ---------------------------------------------------------------------------------
    def seed(self, devices: int, files: int) -> str:
        from google.cloud.firestore_v1.bulk_writer import BulkWriterOptions

        from shared.ids import new_id
        from shared.store.objects import object_name

        started = time.perf_counter()
        now = datetime.now(UTC)
        tenant_id = new_id()
        tenant = self.db.collection("tenants").document(tenant_id)
        tenant.set({"name": "Benchmark GmbH", "status": "active", "createdAt": now,
                    "settings": {"fields": ["displayName"]}})
        writer = self.db.bulk_writer(options=BulkWriterOptions(initial_ops_per_second=UNLIMITED_OPS,
                                                               max_ops_per_second=UNLIMITED_OPS))
        device_ids = [new_id() for _ in range(devices)]
        for device_id in device_ids:
            writer.create(tenant.collection("devices").document(device_id), {"registeredAt": now, "lastSeenAt": now})
        names = []
        for index in range(files):
            file_id = new_id()
            device_id = device_ids[index] if index % 2 and device_ids else None
            name = object_name(tenant_id, file_id, "json", device_id)
            manifest = {"objectName": name, "format": "json", "owner": "device" if device_id else "tenant",
                        "createdAt": now, "deleteAfter": now + timedelta(days=30)}
            if device_id:
                manifest["deviceId"] = device_id
            writer.create(tenant.collection("files").document(file_id), manifest)
            names.append(name)
        writer.close()

        def upload(name: str) -> None:
            blob = self.bucket.blob(name)
            blob.metadata = {"tenant-id": tenant_id, "owner": "device" if "/devices/" in name else "tenant"}
            blob.upload_from_string(b'{"diagnostics":[1,2,3]}', content_type="application/json")

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(upload, names))
        log(f"seeded {devices:,} devices and {files:,} files in {time.perf_counter() - started:.1f} s")
        return tenant_id

    # -- the two ways of deleting ----------------------------------------------------------------
    def service_delete(self, label: str, tenant_id: str, initial: int, maximum: int) -> Run:
        from dataclasses import replace

        from functions.handle_deletion.service import DeletionService
        from shared import wiring
        from shared.clock import utc_now
        from shared.config import load_settings
        from shared.events import DeletionRequest
        from shared.ids import new_id
        from shared.store.erasure import DocumentEraser
        from shared.store.schema import DeletionKind

        firestore_seconds = [0.0]

        class TimedEraser(DocumentEraser):  # the benchmark measures the Firestore phase on its own
            def erase_tenant_chunks(self, tenant_id, counted):
                started = time.perf_counter()
                yield from super().erase_tenant_chunks(tenant_id, counted)
                firestore_seconds[0] += time.perf_counter() - started

        store = wiring.store(load_settings(), db=self.db, bucket=self.bucket)
        store = replace(store, eraser=TimedEraser(self.db, initial, maximum))
        # One attempt of unlimited length: the benchmark measures the cascade, not continuations.
        service = DeletionService(store, self.receipt_key, utc_now, wiring.deletion_publisher(load_settings()),
                                  attempt_seconds=float("inf"))
        started = time.perf_counter()
        outcome = service.delete(DeletionRequest(DeletionKind.TENANT, tenant_id, new_id()))
        seconds = time.perf_counter() - started
        return Run(label, outcome.documents, outcome.files, seconds, firestore_seconds[0], outcome.verified)

    def naive_delete(self, tenant_id: str) -> Run:
        started = time.perf_counter()
        objects = 0
        for blob in self.bucket.list_blobs(prefix=f"tenants/{tenant_id}/"):
            blob.delete()
            objects += 1
        firestore_started = time.perf_counter()
        tenant = self.db.collection("tenants").document(tenant_id)
        documents = 0
        for collection in tenant.collections():
            for snapshot in collection.stream():
                snapshot.reference.delete()
                documents += 1
        tenant.delete()
        documents += 1
        end = time.perf_counter()
        left = any(True for _ in self.bucket.list_blobs(prefix=f"tenants/{tenant_id}/", max_results=1)) or any(
            next(iter(c.limit(1).get()), None) for c in tenant.collections())
        return Run("naive: one by one, sequential", documents, objects, end - started, end - firestore_started,
                   not left)


def compare(bench: Bench, seeder: Bench, args, fraction: float, production_ramp: bool) -> list[Run]:
    """The service (lifted ramp, optionally the production ramp) and the naive baseline on one setup."""
    runs = [bench.service_delete("service, ramp lifted (emulator)", seeder.seed(args.devices, args.files),
                                 UNLIMITED_OPS, UNLIMITED_OPS)]
    log(f"service (lifted): {runs[-1].seconds:.1f} s")
    if production_ramp:
        runs.append(bench.service_delete("service, production ramp 500→10000",
                                         seeder.seed(args.devices, args.files), *PRODUCTION_RAMP))
        log(f"service (production ramp): {runs[-1].seconds:.1f} s")
    fraction = max(0.001, min(1.0, fraction))
    naive = bench.naive_delete(seeder.seed(round(args.devices * fraction), round(args.files * fraction)))
    log(f"naive: {naive.seconds:.1f} s on {naive.documents:,} documents")
    if fraction < 1.0:
        naive = Run(naive.label, args.devices + args.files + 1, args.files, naive.seconds / fraction,
                    naive.firestore_seconds / fraction, naive.verified,
                    f"measured on {naive.documents:,} documents and {naive.objects:,} objects, "
                    f"time ×{1 / fraction:.0f}")
    return runs + [naive]


def rows(runs: list[Run]) -> list[tuple]:
    naive = runs[-1]
    return [(r.label + (f" ({r.note})" if r.note else ""), r.documents, r.objects, f"{r.seconds:.1f}",
             f"{r.firestore_seconds:.1f}", round(r.docs_per_second), "yes" if r.verified else "NO",
             f"{naive.seconds / r.seconds:.1f}×") for r in runs]


HEADER = ["run", "documents", "objects", "total s", "Firestore s", "docs/s", "verified", "vs naive"]


def main() -> int:
    args = parse_args()
    started = time.perf_counter()
    print(f"## Deleting a tenant with {args.devices:,} devices and {args.files:,} technical files\n", flush=True)
    with local_stack("deletion", with_functions=False) as stack:
        bench = Bench(stack)
        # Warm-up for both sides (the emulator's JIT, connection pools), not measured.
        bench.service_delete("warm-up", bench.seed(500, 50), UNLIMITED_OPS, UNLIMITED_OPS)
        bench.naive_delete(bench.seed(200, 20))

        loopback = compare(bench, bench, args, args.naive_fraction, not args.skip_production_ramp)
        delayed: list[Run] = []
        if args.latency_ms > 0:
            delay = args.latency_ms / 1000
            firestore_proxy = LatencyProxy(stack.env["FIRESTORE_EMULATOR_HOST"], delay)
            storage_proxy = LatencyProxy(stack.env["STORAGE_EMULATOR_HOST"].split("://", 1)[1], delay)
            slow = Bench(stack, firestore_proxy.address, f"http://{storage_proxy.address}")
            log(f"through the latency proxy ({args.latency_ms:g} ms each way)")
            delayed = compare(slow, bench, args, args.latency_naive_fraction, not args.skip_production_ramp)

    table("Loopback (emulators, no network time)", HEADER, rows(loopback),
          note="docs/s = documents / time of the Firestore phase (listing included). Production ramp = "
               "Firestore's 500/50/5 rule (BulkWriter starts at 500 ops/s, +50 % every 5 min): the ramp, not "
               "the emulator, bounds that row, and without network time one-by-one deletes cost little. "
               "Objects are deleted concurrently (8 workers; fake-gcs-server has no batch API); on this "
               "2-core machine the Python client is CPU-bound, so concurrency gains little on loopback.")
    if delayed:
        table(f"With {2 * args.latency_ms:g} ms round trip per request (latency proxy in front of both emulators)",
              HEADER, rows(delayed),
              note="Same code, same emulators; every request pays the round trip a Cloud Function pays to "
                   "Firestore and Cloud Storage. The baseline pays it once per document and object, the "
                   "service once per batch of 20 (in parallel) and per concurrent object delete.")
    print(f"total benchmark time: {time.perf_counter() - started:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
