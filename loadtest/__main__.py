"""`make load` (= `python -m loadtest [--phones N] [--large N]`): the capacity load test on the local stack
(loopback only).

Not part of `make test`: it takes a few minutes and prints figures (docs/capacity.md uses them).

1. Rollout morning: a few hundred simulated phones of one tenant start their first full sync within a
   few seconds, against the fake Graph enforcing a per-tenant resource-unit budget scaled down for one
   machine, through one relay process sized like one production instance (request concurrency = worker
   threads). The phones share rounds (one Graph read for all phones syncing at once). Each phone syncs
   until it has its `end` line, honouring `503 sync-busy` / `Retry-After` (the wait is scaled down by
   RETRY_AFTER_SCALE so the run stays short; the jitter is kept) and retrying after an `error` line.
   Printed: phones synced completely, streams ended in `error`, Graph requests (and per phone), Graph
   pages per phone, 429s, `sync-busy` answers, time until the last phone is synced, the relay's peak
   memory and CPU.
2. A larger morning: ten times the phones within ten times the spread (3,000 phones in 30 s), the same
   directory, budget and relay process.
3. Deletion of a tenant with 50,000 documents and 5,000 objects under a 2 s attempt budget
   (DELETION_ATTEMPT_SECONDS=2): through the real push subscription, continuations and all; printed:
   the receipt's counts against what was seeded, continuations, duration, messages in the dead-letter
   topic.

Bounded: every phone gives up after MAX_ATTEMPTS, the run after RUN_TIMEOUT_SECONDS.
"""
from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import requests

from benchmarks._common import FunctionProcess, local_stack, log, onboard, proc_status_kib, session, table
from benchmarks.relay import cpu_seconds

TENANT = "c0000000-0000-4000-8000-000000000013"
DOOMED = "c0000000-0000-4000-8000-000000000031"
LARGE_TENANT = "c0000000-0000-4000-8000-000000000014"
DIRECTORY = 3_000            # users: 4 Graph pages of up to 999 (1 RU each with $select)
PAGE_DELAY_SECONDS = 0.25    # the fake Graph's latency per page
# The tenant's budget, scaled down (Graph: 8,000 RU per 10 s for > 500 users): below what the phones would
# ask for unadmitted (300 streams × 4 pages/s), above what 20 admitted streams ask for (≈ 80 RU/s), so
# Graph reports the budget 80 % used and the relay's pacing has to work.
RU_PER_10S = 150
FULL_SYNCS_PER_TENANT = 20   # RELAY_FULL_SYNCS_PER_TENANT (the default)
RELAY_THREADS = 80           # request concurrency of one relay instance (Terraform)
RETRY_AFTER_SCALE = 0.1      # a phone waits Retry-After × this (5–120 s become 0.5–12 s)
START_SPREAD_SECONDS = 3.0   # the phones start within this (the larger morning: ten times the phones and spread)
LARGE_FACTOR = 10
AIM_MORNING_SECONDS = 15.0   # the 300-phone morning, done (was 96 s with a Graph round per phone)
AIM_PAGES_PER_PHONE = 0.1
MAX_ATTEMPTS = 200
RUN_TIMEOUT_SECONDS = 600
DELETION_DOCUMENTS = 50_000  # the tenant's own document included
DELETION_OBJECTS = 5_000
DELETION_ATTEMPT_SECONDS = 2


class Phone:
    def __init__(self, token: str, device_id: str):
        # Connection: close: each attempt on its own connection, as a phone waking up after a pause would.
        self.headers = {"Authorization": f"Bearer {token}", "X-Device-Id": device_id, "Connection": "close"}
        self.connection_errors = 0
        self.outcome = "not synced"
        self.busy = 0
        self.other_503 = 0
        self.errors: list[str] = []
        self.synced_at: float | None = None

    def run(self, http, url: str, delay: float, started: float, deadline: float, expected: int) -> None:
        time.sleep(delay)
        for _ in range(MAX_ATTEMPTS):
            if time.monotonic() > deadline:
                self.outcome = "gave up (run timeout)"
                return
            try:
                done = self._attempt(http, url, started, expected)
            except requests.RequestException:  # refused, reset or timed out: the app retries after a pause
                self.connection_errors += 1
                time.sleep(1.0)
                continue
            if done:
                return
        self.outcome = "gave up (attempts)"

    def _attempt(self, http, url: str, started: float, expected: int) -> bool:
        """One sync attempt; True when the phone is done (synced, or failed for good)."""
        response = http.get(url + "/", headers=self.headers, stream=True, timeout=120)
        with response:
            if response.status_code == 503:
                problem = response.json()
                if problem.get("type") == "/problems/sync-busy":
                    self.busy += 1
                else:
                    self.other_503 += 1
                time.sleep(float(response.headers.get("Retry-After", "5")) * RETRY_AFTER_SCALE)
                return False
            if response.status_code != 200:
                self.outcome = f"HTTP {response.status_code}"
                return True
            # Counted on the bytes (the lines are the relay's, checked by the tests): thousands of phones in this
            # one process must not cost more CPU than the relay they measure.
            upserts, tail = 0, b""
            for chunk in response.iter_content(1 << 16):
                upserts += (tail[-20:] + chunk).count(b'{"op":"upsert"') - tail[-20:].count(b'{"op":"upsert"')
                tail = (tail + chunk)[-4096:]
            last = json.loads(tail.rstrip(b"\n").rsplit(b"\n", 1)[-1]) if tail else None
        if last is not None and last["op"] == "end" and upserts == expected:
            self.outcome = "synced"
            self.synced_at = time.monotonic() - started
            return True
        if last is not None and last["op"] == "error":
            self.errors.append(last["code"])
            time.sleep(1.0)  # the app retries a failed stream after a pause
            return False
        self.outcome = f"incomplete stream ({upserts} upserts)"
        return True


def rollout(stack, phones_count: int, spread: float, log_dir: Path, tenant: str, limit: int, title: str) -> dict:
    fake = stack.fake_microsoft()
    fake.directory(tenant, DIRECTORY)
    # Every user of the directory reaches the phones (disabled and guest accounts included), so a phone is
    # synced completely when it has all DIRECTORY contacts.
    onboard(stack, tenant, "Rollout AG", scope={"excludeDisabled": False, "excludeGuests": False})
    http = session(stack, pool=min(phones_count, RELAY_THREADS * 2) + 8)
    log(f"registering {phones_count} devices")
    # One phone per person, as in a rollout (one user may register only a few new devices: abuse limits).
    people = [entry["user"]["userPrincipalName"] for entry in itertools.islice(fake.iter_users(tenant), phones_count)]

    def register(index: int) -> Phone:
        device_id = str(uuid.uuid4())
        token = fake.mint("user", tenant, username=people[index % len(people)])
        response = http.post(stack.urls["register_device"] + "/", json={"deviceId": device_id},
                             headers={"Authorization": f"Bearer {token}"}, timeout=60)
        if response.status_code != 201:
            raise RuntimeError(f"registration failed: {response.status_code} {response.text[:200]}")
        return Phone(token, device_id)

    with ThreadPoolExecutor(16) as pool:
        phones = list(pool.map(register, range(phones_count)))

    stack.env["RELAY_FULL_SYNCS_PER_TENANT"] = str(limit)
    with FunctionProcess(stack, "relay_contacts", log_dir, threads=RELAY_THREADS) as relay:
        fake.configure(tenant=tenant, ru_limit_per_10s=RU_PER_10S, page_delay_seconds=PAGE_DELAY_SECONDS)
        fake.reset_stats()
        log(f"{phones_count} phones start full syncs within {spread:.0f} s "
            f"(budget {RU_PER_10S} RU per 10 s, {limit} rounds at once)")
        worker = relay.worker_pid()
        cpu_before = cpu_seconds(worker) if worker else 0.0
        started = time.monotonic()
        deadline = started + RUN_TIMEOUT_SECONDS
        threads = [threading.Thread(target=phone.run, args=(
            http, relay.url, spread * index / phones_count, started, deadline, DIRECTORY), daemon=True)
            for index, phone in enumerate(phones)]
        peak = [0]
        done = threading.Event()

        def watch_memory() -> None:
            while not done.is_set():
                if worker:
                    with contextlib.suppress(OSError, KeyError):
                        peak[0] = max(peak[0], proc_status_kib(worker, "VmHWM"))
                time.sleep(0.5)

        watcher = threading.Thread(target=watch_memory, daemon=True)
        watcher.start()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=max(1.0, deadline - time.monotonic() + 130))
        done.set()
        watcher.join()
        relay_cpu = cpu_seconds(worker) - cpu_before if worker else float("nan")
        stats = fake.stats()
        rounds = _round_lines(log_dir, relay.port)

    tenant_stats = stats["per_tenant"].get(tenant, {})
    outcomes = Counter(phone.outcome for phone in phones)
    synced = [p.synced_at for p in phones if p.synced_at is not None]
    graph_requests = tenant_stats.get("graph_requests", stats["graph_requests"])
    pages = tenant_stats.get("graph_delta_pages", 0)
    figures = {
        "phones": phones_count,
        "spread_s": spread,
        "synced": outcomes.get("synced", 0),
        "other_outcomes": {k: v for k, v in outcomes.items() if k != "synced"},
        "error_lines": sum(len(p.errors) for p in phones),
        "error_codes": dict(Counter(code for p in phones for code in p.errors)),
        "graph_requests": graph_requests,
        "graph_requests_per_phone": graph_requests / phones_count,
        "graph_pages_per_phone": pages / phones_count,
        "graph_429": stats["throttled"],
        "graph_low_priority": stats.get("graph_requests_by_priority", {}).get("low", 0),
        "sync_busy": sum(p.busy for p in phones),
        "connection_errors": sum(p.connection_errors for p in phones),
        "other_503": sum(p.other_503 for p in phones),
        "last_synced_s": max(synced) if synced else float("nan"),
        "median_synced_s": sorted(synced)[len(synced) // 2] if synced else float("nan"),
        "relay_peak_mib": peak[0] / 1024,
        "relay_cpu_s": relay_cpu,
        "rounds": len(rounds),
        "listeners_max": max((r.get("listeners", 0) for r in rounds), default=0),
    }
    share = figures["graph_429"] / figures["graph_requests"] if figures["graph_requests"] else 0.0
    table(title, ["figure", "value"], [
        ("phones (starting within, s)", f"{phones_count} ({spread:.0f})"),
        ("phones synced completely", figures["synced"]),
        ("streams ended in `error`", figures["error_lines"]),
        ("Graph requests of the tenant", figures["graph_requests"]),
        ("Graph requests per phone", figures["graph_requests_per_phone"]),
        ("Graph delta pages per phone", figures["graph_pages_per_phone"]),
        ("Graph 429s", figures["graph_429"]),
        ("Graph 429s / requests", f"{share:.2%}"),
        ("`sync-busy` answers", figures["sync_busy"]),
        ("other 503 answers", figures["other_503"]),
        ("connections refused or reset (retried)", figures["connection_errors"]),
        ("rounds (most phones in one)", f"{figures['rounds']} ({figures['listeners_max']})"),
        ("time until the last phone is synced (s)", figures["last_synced_s"]),
        ("median time until a phone is synced (s)", figures["median_synced_s"]),
        ("relay peak memory (VmHWM, MiB)", figures["relay_peak_mib"]),
        ("relay CPU (worker utime + stime, s)", figures["relay_cpu_s"]),
    ], note=(f"Directory {DIRECTORY:,} users (4 pages), Graph latency {PAGE_DELAY_SECONDS} s per page, budget "
             f"{RU_PER_10S} RU per 10 s for the tenant, RELAY_FULL_SYNCS_PER_TENANT={limit}, one relay "
             f"process with {RELAY_THREADS} threads, Retry-After honoured × {RETRY_AFTER_SCALE}. "
             f"Other outcomes: {figures['other_outcomes'] or 'none'}; "
             f"error codes: {figures['error_codes'] or 'none'}."))
    figures["graph_429_share"] = share
    return figures


def _round_lines(log_dir: Path, port: int) -> list[dict]:
    """The relay process's `round streamed` lines (counts only)."""
    path = log_dir / f"relay_contacts-{port}.log"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(errors="replace").splitlines()
            if line.startswith("{") and '"round streamed"' in line]


def seed_deletion(stack) -> None:
    """The doomed tenant: its document, devices and file manifests (DELETION_DOCUMENTS in all) and one
    object per manifest (DELETION_OBJECTS), written straight into the emulators."""
    from google.cloud import firestore
    from google.cloud.firestore_v1.bulk_writer import BulkWriterOptions

    from shared.wiring import storage_bucket

    onboard(stack, DOOMED, "Doomed GmbH")
    db = firestore.Client(project=stack.env["GOOGLE_CLOUD_PROJECT"])
    tenant = db.collection("tenants").document(DOOMED)
    now = datetime.now(UTC)
    writer = db.bulk_writer(options=BulkWriterOptions(initial_ops_per_second=20000, max_ops_per_second=20000))
    devices = DELETION_DOCUMENTS - 1 - DELETION_OBJECTS
    for _ in range(devices):
        writer.create(tenant.collection("devices").document(str(uuid.uuid4())),
                      {"registeredAt": now, "lastSeenAt": now})
    names = []
    for _ in range(DELETION_OBJECTS):
        file_id = str(uuid.uuid4())
        name = f"tenants/{DOOMED}/tenant/{file_id}.json"
        names.append(name)
        writer.create(tenant.collection("files").document(file_id), {
            "objectName": name, "format": "json", "owner": "tenant", "createdAt": now,
            "deleteAfter": now + timedelta(days=30)})
    writer.close()
    bucket = storage_bucket(stack.env["GOOGLE_CLOUD_PROJECT"], stack.env["TECHNICAL_FILES_BUCKET"])

    def upload(name: str) -> None:
        bucket.blob(name).upload_from_string(b"{}", content_type="application/json")

    with ThreadPoolExecutor(10) as pool:
        list(pool.map(upload, names))


def deletion(stack, log_dir: Path) -> dict:
    from local.stack import DEAD_LETTER_SUBSCRIPTION

    log(f"seeding a tenant with {DELETION_DOCUMENTS:,} documents and {DELETION_OBJECTS:,} objects")
    seeded = time.monotonic()
    seed_deletion(stack)
    log(f"seeded in {time.monotonic() - seeded:.0f} s; "
        f"deleting it (DELETION_ATTEMPT_SECONDS={DELETION_ATTEMPT_SECONDS})")
    http = session(stack)
    # The tenant's audit events (its onboarding's, and the one the deletion request writes) go with it too.
    expected_documents = DELETION_DOCUMENTS + _audit_events(stack) + 1
    started = time.monotonic()
    response = http.delete(f"{stack.urls['manage_tenants']}/tenants/{DOOMED}", timeout=60)
    if response.status_code != 202:
        raise RuntimeError(f"tenant deletion refused: {response.status_code} {response.text[:200]}")
    request_id = response.json()["requestId"]
    receipt = {}
    while time.monotonic() - started < RUN_TIMEOUT_SECONDS:
        receipt = http.get(f"{stack.urls['manage_tenants']}/receipts/{request_id}", timeout=30).json()
        if receipt.get("status") == "completed":
            break
        time.sleep(1.0)
    seconds = time.monotonic() - started
    pulled = stack.pubsub("POST", f"subscriptions/{DEAD_LETTER_SUBSCRIPTION}:pull",
                          {"maxMessages": 100, "returnImmediately": True})
    dead_letters = len(pulled.get("receivedMessages", []))
    lines = [json.loads(line) for line in (Path(stack.state_dir) / "handle_deletion.log").read_text().splitlines()
             if line.startswith("{") and request_id in line]
    continuations = sum(1 for line in lines if line.get("message") == "deletion continues in a new attempt")
    failures = sum(1 for line in lines if line.get("message") == "deletion failed; Pub/Sub will redeliver")
    deleted = receipt.get("deleted", {})
    left = _left(stack)
    figures = {"status": receipt.get("status"), "documents": deleted.get("documents"), "files": deleted.get("files"),
               "verified": receipt.get("verified"), "continuations": continuations, "failed_attempts": failures,
               "seconds": seconds, "dead_letters": dead_letters, "left": left, "expected_documents": expected_documents}
    table(f"Deletion of a tenant with {DELETION_DOCUMENTS:,} documents and {DELETION_OBJECTS:,} objects", [
        "figure", "value"], [
        ("receipt status", figures["status"]),
        ("deleted.documents (expected)", f"{figures['documents']} ({expected_documents})"),
        ("deleted.files (expected)", f"{figures['files']} ({DELETION_OBJECTS})"),
        ("verified", figures["verified"]),
        ("continuations", continuations),
        ("failed attempts (redelivered)", failures),
        ("seconds until completed", seconds),
        ("messages in the dead-letter topic", dead_letters),
        ("documents and objects left", left),
    ], note=f"DELETION_ATTEMPT_SECONDS={DELETION_ATTEMPT_SECONDS}; Firestore emulator and fake-gcs-server; "
            "the real push subscription (deletion-requests → handle_deletion) carries the continuations.")
    return figures


def _audit_events(stack) -> int:
    from google.cloud import firestore

    db = firestore.Client(project=stack.env["GOOGLE_CLOUD_PROJECT"])
    return sum(1 for _ in db.collection(f"tenants/{DOOMED}/auditEvents").select([]).stream())


def _left(stack) -> int:
    from google.cloud import firestore

    from shared.wiring import storage_bucket

    db = firestore.Client(project=stack.env["GOOGLE_CLOUD_PROJECT"])
    tenant = db.collection("tenants").document(DOOMED)
    documents = sum(len(list(c.recursive().limit(1000).stream())) for c in tenant.collections())
    documents += 1 if tenant.get().exists else 0
    bucket = storage_bucket(stack.env["GOOGLE_CLOUD_PROJECT"], stack.env["TECHNICAL_FILES_BUCKET"])
    return documents + sum(1 for _ in bucket.list_blobs(prefix=f"tenants/{DOOMED}/", max_results=1000))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--phones", type=int, default=300, help="phones of the rollout morning (default 300)")
    parser.add_argument("--large", type=int, default=LARGE_FACTOR * 300,
                        help=f"phones of the larger morning, within {LARGE_FACTOR}× the spread (default 3000; 0: skip)")
    parser.add_argument("--skip-deletion", action="store_true")
    parser.add_argument("--skip-rollout", action="store_true")
    args = parser.parse_args(argv)
    env = {"RELAY_FULL_SYNCS_PER_TENANT": str(FULL_SYNCS_PER_TENANT),
           "DELETION_ATTEMPT_SECONDS": str(DELETION_ATTEMPT_SECONDS),
           # The emulator, not Firestore's ramp, is the limit here; production keeps 500 → 10,000.
           "DELETION_INITIAL_OPS_PER_SECOND": "5000", "DELETION_MAX_OPS_PER_SECOND": "10000",
           "MAX_DEVICES_PER_TENANT": "100000", "DEVICE_REGISTRATIONS_PER_TENANT_PER_MINUTE": "100000"}
    ok = True
    with tempfile.TemporaryDirectory(prefix="load-relay-") as log_dir, local_stack("load", extra_env=env) as stack:
        if not args.skip_rollout:
            figures = rollout(stack, args.phones, START_SPREAD_SECONDS, Path(log_dir), TENANT, FULL_SYNCS_PER_TENANT,
                              "Rollout morning: one tenant, phones starting full syncs at once")
            ok &= (figures["synced"] == args.phones and figures["error_lines"] == 0
                   and figures["graph_pages_per_phone"] <= AIM_PAGES_PER_PHONE
                   and figures["last_synced_s"] < AIM_MORNING_SECONDS)
            if args.large:
                figures = rollout(stack, args.large, START_SPREAD_SECONDS * args.large / args.phones, Path(log_dir),
                                  LARGE_TENANT, FULL_SYNCS_PER_TENANT,
                                  "A larger morning: ten times the phones within ten times the spread")
                ok &= (figures["synced"] == args.large and figures["error_lines"] == 0
                       and figures["graph_pages_per_phone"] <= AIM_PAGES_PER_PHONE)
        if not args.skip_deletion:
            with stack.client_environment():  # this process seeds and checks through the emulators
                figures = deletion(stack, Path(log_dir))
            ok &= (figures["status"] == "completed" and figures["documents"] == figures["expected_documents"]
                   and figures["files"] == DELETION_OBJECTS and figures["dead_letters"] == 0 and figures["left"] == 0)
    print("load test:", "every aim met" if ok else "AIM MISSED (see the tables)", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
