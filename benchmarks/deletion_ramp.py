"""The deletion's write rate under Firestore's 500/50/5 ramp, and how long a small deletion holds a slot.

    python -m benchmarks.deletion_ramp [--phase-seconds 300] [--extra-seconds 90] [--quick]

(a) Ramp: a tenant large enough for the whole window is deleted by one attempt of handle_deletion's
service with the production ramp (BulkWriter 500 ops/s initial, +50 % per phase, max 10000), once with
a new BulkWriter per 1,000-document chunk (how it was: every chunk starts again at 500 and waits for its
own last batch) and once with one writer for the whole attempt (how it is). The emulator answers
instantly, so the BulkWriter's rate limiter, which the library runs in the client exactly as in
production, is what bounds both rows: this measures the client's ramp, not Firestore. docs/s are counted
from the write callbacks, per phase: phase 0 (after the first 30 s) and phase 1 (after `phase-seconds`,
when the limiter may grow by 50 %). The library's phase is 300 s; `--quick` shortens it to 40 s on the
writers of this benchmark (only here) so a smoke run takes two minutes.

(b) Slot time of a small deletion: `device.delete` (a device with two files) and `file.delete`, each
through the service on the emulator, 100 of each; p50 and p95. docs/deletion.md ("Bursts") sizes
Pub/Sub's retry policy and handle_deletion's instances from a generous multiple of these.
"""
from __future__ import annotations

import argparse
import statistics
import threading
import time
from dataclasses import replace

from benchmarks._common import local_stack, log, table
from benchmarks.deletion import UNLIMITED_OPS, Bench

PRODUCTION_RAMP = (500, 10_000)


class NoContinuation:
    def publish(self, request) -> str:
        return "not-published"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--phase-seconds", type=float, default=300.0)
    parser.add_argument("--extra-seconds", type=float, default=90.0, help="time measured in phase 1")
    parser.add_argument("--small", type=int, default=100, help="small deletions of each kind")
    parser.add_argument("--rounds", type=int, default=1, help="runs of each variant, alternating; medians")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.phase_seconds, args.extra_seconds, args.small, args.rounds = 40.0, 30.0, 20, 2
    return args


def erasers(phase_seconds: float):
    """(writer per chunk, writer per attempt) over the production code, the limiter's phase set."""
    from shared.store import erasure

    class Writer(erasure._ExistingOnlyWriter):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self._rate_limiter._phase_length = phase_seconds

    erasure._ExistingOnlyWriter = Writer  # this process only: the benchmark's phase length

    class PerAttempt(erasure.DocumentEraser):
        pass

    class PerChunk(erasure.DocumentEraser):
        """How erase_tenant_chunks was: a new BulkWriter for every chunk, closed before the next."""

        def erase_tenant_chunks(self, tenant_id, counted):
            tenant = self._tenant(tenant_id)
            for collection in tenant.collections():
                for chunk in self._chunks(collection):
                    with self._writer(counted) as writer:
                        for snapshot in chunk:
                            writer.delete(snapshot.reference)
                    yield
            if not erasure._documents_under(tenant):
                self._delete(tenant, counted)

    return PerChunk, PerAttempt


def ramp_run(bench: Bench, label: str, eraser_class, args) -> list:
    from functions.handle_deletion.service import DeletionService
    from shared import wiring
    from shared.clock import utc_now
    from shared.config import load_settings
    from shared.events import DeletionRequest
    from shared.ids import new_id
    from shared.store.schema import DeletionKind

    window = args.phase_seconds + args.extra_seconds
    # Enough documents that the attempt is still deleting when the window ends (20 % to spare).
    documents = int(1.2 * (PRODUCTION_RAMP[0] * args.phase_seconds + 1.5 * PRODUCTION_RAMP[0] * args.extra_seconds))
    tenant_id = bench.seed(documents, 0)
    times: list[float] = []
    lock = threading.Lock()

    class Counted(eraser_class):
        def erase_tenant_chunks(self, tenant_id, counted):
            def timed(count: int) -> None:
                now = time.perf_counter()
                with lock:
                    times.extend([now] * count)
                counted(count)
            yield from super().erase_tenant_chunks(tenant_id, timed)

    store = wiring.store(load_settings(), db=bench.db, bucket=bench.bucket)
    store = replace(store, eraser=Counted(bench.db, *PRODUCTION_RAMP))
    service = DeletionService(store, bench.receipt_key, utc_now, NoContinuation(), attempt_seconds=window)
    started = time.perf_counter()
    outcome = service.delete(DeletionRequest(DeletionKind.TENANT, tenant_id, new_id()))
    assert outcome.continued, f"{label}: the tenant was too small for the window"
    first = min(times)

    def rate(start: float, end: float) -> float:
        return sum(start <= t - first < end for t in times) / (end - start)

    phase0, phase1 = rate(30.0, args.phase_seconds), rate(args.phase_seconds, window)
    log(f"{label}: {outcome.documents:,} documents in {time.perf_counter() - started:.0f} s")
    # What is left of the tenant goes without a ramp (not measured).
    lifted = replace(store, eraser=eraser_class(bench.db, UNLIMITED_OPS, UNLIMITED_OPS))
    DeletionService(lifted, bench.receipt_key, utc_now, NoContinuation(), attempt_seconds=float("inf")).delete(
        DeletionRequest(DeletionKind.TENANT, tenant_id, new_id()))
    return [label, phase0, phase1]


def median_row(label: str, rows: list[list]) -> list:
    phase0 = statistics.median(row[1] for row in rows)
    phase1 = statistics.median(row[2] for row in rows)
    return [label, round(phase0), round(phase1), f"{phase1 / phase0:.2f}", len(rows)]


def small_deletions(bench: Bench, count: int) -> list[list]:
    from google.cloud.firestore_v1.base_query import FieldFilter

    from functions.handle_deletion.service import DeletionService
    from shared import wiring
    from shared.clock import utc_now
    from shared.config import load_settings
    from shared.events import DeletionRequest
    from shared.ids import new_id
    from shared.store.schema import DeletionKind

    store = wiring.store(load_settings(), db=bench.db, bucket=bench.bucket)
    service = DeletionService(store, bench.receipt_key, utc_now, NoContinuation())
    tenant_id = bench.seed(2 * count, 2 * count)  # odd files belong to a device (benchmarks/deletion.py)
    devices = [s.id for s in bench.db.collection(f"tenants/{tenant_id}/devices").stream()]
    files = [s.id for s in bench.db.collection(f"tenants/{tenant_id}/files").where(
        filter=FieldFilter("owner", "==", "tenant")).stream()]
    rows = []
    for kind, targets in ((DeletionKind.DEVICE, devices[:count]), (DeletionKind.FILE, files[:count])):
        seconds = []
        for target in targets:
            started = time.perf_counter()
            outcome = service.delete(DeletionRequest(kind, tenant_id, new_id(), target))
            seconds.append(time.perf_counter() - started)
            assert outcome.verified
        quantiles = statistics.quantiles(seconds, n=20)
        rows.append([f"{kind}.delete", len(seconds), f"{statistics.median(seconds) * 1000:.0f}",
                     f"{quantiles[18] * 1000:.0f}"])
    return rows


def main() -> int:
    args = parse_args()
    started = time.perf_counter()
    with local_stack("deletion-ramp", with_functions=False) as stack:
        bench = Bench(stack)
        bench.service_delete("warm-up", bench.seed(500, 50), UNLIMITED_OPS, UNLIMITED_OPS)
        per_chunk, per_attempt = erasers(args.phase_seconds)
        variants = [("a BulkWriter per 1,000-document chunk (before)", per_chunk),
                    ("one BulkWriter per attempt (now)", per_attempt)]
        runs: dict[str, list[list]] = {label: [] for label, _ in variants}
        for round_ in range(args.rounds):  # alternating, so a busy machine weighs on both alike
            for label, eraser_class in (variants if round_ % 2 == 0 else variants[::-1]):
                runs[label].append(ramp_run(bench, label, eraser_class, args))
        ramp = [median_row(label, rows) for label, rows in runs.items()]
        small = small_deletions(bench, args.small)
    table(f"(a) Deletion write rate at the production ramp, phase {args.phase_seconds:g} s (emulator)",
          ["BulkWriter", "phase 0 docs/s", "phase 1 docs/s", "phase 1 / phase 0", "runs"], ramp,
          note="The client's rate limiter bounds both rows (the emulator answers at once); the ramp may grow "
               "by 50 % per phase only within one writer.")
    table("(b) Slot time of a small deletion (service on the emulator)", ["request", "n", "p50 ms", "p95 ms"], small,
          note="Loopback: no network time. Production adds a round trip to Firestore and Cloud Storage per "
               "request (about 10-20 of them): docs/deletion.md assumes 0.5 s per small deletion.")
    print(f"total benchmark time: {time.perf_counter() - started:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
