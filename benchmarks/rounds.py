"""Benchmark of shared rounds (issue 21): what a phone costs when the phones of a tenant share one Graph read.

`python -m benchmarks.rounds [--quick]` starts its own local stack and prints, measured in one run:

(a) relay worker CPU per phone: 20 phones starting a full sync together (one round) ÷ 20 solo full syncs one
    after another, same directory, same fresh relay process (aim ≤ 0.1), plain NDJSON and gzip as phones ask;
(b) Graph pages per phone, counted by the fake Graph, for the same runs;
(c) peak memory (VmHWM of a fresh relay worker) of a round with 20 phones vs one phone;
(d) a solo full sync's throughput ÷ a plain client paging the same fake Graph `/users/delta` directly at 999
    per page on loopback, alternating rounds (aim ≥ 0.6).

Benchmark tenants keep disabled and guest accounts (`settings.scope` flags off), so the relay streams exactly
what the plain client pages. The phones' client threads only count bytes and check the last line (and inflate
when they asked for gzip), so the relay, not this process, is what is measured.
"""
from __future__ import annotations

import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from benchmarks._common import (
    FunctionProcess,
    local_stack,
    log,
    median,
    onboard,
    parse_args,
    proc_status_kib,
    register_device,
    session,
    table,
)
from benchmarks.relay import WHOLE_DIRECTORY, Device, cpu_seconds, graph_sync, relay_sync
from local.fake_microsoft.client import FakeMicrosoftClient

T_ROUND = "b0000000-0000-4000-8000-000000000040"
T_THROUGHPUT = "b0000000-0000-4000-8000-000000000041"
T_WARM = "b0000000-0000-4000-8000-000000000042"
PHONES = 20
CPU_RATIO_AIM = 0.1
THROUGHPUT_RATIO_AIM = 0.6


@dataclass(frozen=True)
class Sizes:
    round_users: int
    throughput_users: int
    rounds: int


FULL = Sizes(round_users=30_000, throughput_users=30_000, rounds=4)
QUICK = Sizes(round_users=5_000, throughput_users=5_000, rounds=2)


def delta_pages(fake: FakeMicrosoftClient, tenant: str) -> int:
    return fake.stats()["per_tenant"].get(tenant, {}).get("graph_delta_pages", 0)


def together(http, url: str, devices: Sequence[Device], gzip: bool) -> list[int]:
    """Full syncs of every device started at the same moment; each phone's contacts (raises when one failed)."""
    barrier = threading.Barrier(len(devices))
    results: list[int | BaseException] = [0] * len(devices)

    def run(index: int) -> None:
        barrier.wait()
        try:
            results[index] = relay_sync(http, url, devices[index], gzip=gzip)[0]
        except BaseException as error:  # noqa: BLE001 - reported below
            results[index] = error

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(devices))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    failures = [r for r in results if isinstance(r, BaseException)]
    if failures:
        raise RuntimeError(f"{len(failures)} of {len(devices)} phones failed: {failures[0]}")
    return [r for r in results if isinstance(r, int)]


# ---- (a)-(c) one round for 20 phones vs 20 solo syncs ---------------------------------------------
def shared_vs_solo(stack, fake: FakeMicrosoftClient, devices: list[Device], warm: Device, sizes: Sizes,
                   log_dir: Path) -> dict:
    http = session(stack, pool=PHONES + 4)
    figures: dict[str, dict[str, float]] = {}
    for gzip in (False, True):
        label = "gzip" if gzip else "plain"
        with FunctionProcess(stack, "relay_contacts", log_dir, threads=PHONES + 8) as relay:
            worker = relay.worker_pid()
            relay_sync(http, relay.url, warm, gzip=gzip)  # imports, wiring, phone metadata, app token
            pages_before, cpu_before = delta_pages(fake, T_ROUND), cpu_seconds(worker)
            for device in devices:
                contacts, _, _ = relay_sync(http, relay.url, device, gzip=gzip)
                if contacts != sizes.round_users:
                    raise RuntimeError(f"a solo sync streamed {contacts} of {sizes.round_users}")
            solo_cpu = (cpu_seconds(worker) - cpu_before) / len(devices)
            solo_pages = (delta_pages(fake, T_ROUND) - pages_before) / len(devices)
            pages_before, cpu_before = delta_pages(fake, T_ROUND), cpu_seconds(worker)
            started = time.perf_counter()
            counts = together(http, relay.url, devices, gzip)
            shared_seconds = time.perf_counter() - started
            if set(counts) != {sizes.round_users}:
                raise RuntimeError(f"phones of the round streamed {sorted(set(counts))} of {sizes.round_users}")
            shared_cpu = (cpu_seconds(worker) - cpu_before) / len(devices)
            shared_pages = (delta_pages(fake, T_ROUND) - pages_before) / len(devices)
        figures[label] = {"solo_cpu": solo_cpu, "shared_cpu": shared_cpu, "solo_pages": solo_pages,
                          "shared_pages": shared_pages, "ratio": shared_cpu / solo_cpu, "seconds": shared_seconds}
        log(f"{label}: CPU per phone {solo_cpu * 1000:.0f} ms solo, {shared_cpu * 1000:.0f} ms in one round "
            f"(ratio {shared_cpu / solo_cpu:.3f}); Graph pages per phone {solo_pages:.2f} vs {shared_pages:.2f}")

    memory = {}
    for phones in (1, PHONES):
        with FunctionProcess(stack, "relay_contacts", log_dir, threads=PHONES + 8) as relay:
            worker = relay.worker_pid()
            relay_sync(http, relay.url, warm, gzip=True)
            baseline = proc_status_kib(worker, "VmHWM")
            together(http, relay.url, devices[:phones], gzip=True)
            memory[phones] = (baseline / 1024, proc_status_kib(worker, "VmHWM") / 1024)
        log(f"{phones} phone(s) in one round: VmHWM {memory[phones][0]:.1f} → {memory[phones][1]:.1f} MiB")

    plain, gzipped = figures["plain"], figures["gzip"]
    rows = []
    for label, f in (("plain NDJSON", plain), ("gzip (as phones ask)", gzipped)):
        rows += [[f"{label}: relay CPU per phone, solo full sync (ms)", f["solo_cpu"] * 1000],
                 [f"{label}: relay CPU per phone, {PHONES} phones in one round (ms)", f["shared_cpu"] * 1000],
                 [f"{label}: ratio round ÷ solo", f["ratio"]],
                 [f"{label}: Graph pages per phone, solo / in one round", f"{f['solo_pages']:.2f} / "
                                                                          f"{f['shared_pages']:.2f}"],
                 [f"{label}: the {PHONES} phones' round, wall time (s)", f["seconds"]]]
    growth = memory[PHONES][1] - memory[1][1]
    rows += [["peak memory, round with 1 phone (MiB, VmHWM; after warm-up)",
              f"{memory[1][1]:.1f} ({memory[1][0]:.1f})"],
             [f"peak memory, round with {PHONES} phones (MiB, VmHWM; after warm-up)",
              f"{memory[PHONES][1]:.1f} ({memory[PHONES][0]:.1f})"],
             [f"growth for {PHONES - 1} more phones (MiB)", growth]]
    verdict = "OK" if gzipped["ratio"] <= CPU_RATIO_AIM and plain["ratio"] <= CPU_RATIO_AIM else "ABOVE AIM"
    table(f"(a)-(c) {PHONES} phones in one round vs {PHONES} solo full syncs ({sizes.round_users:,} users, "
          "pages of 999)",
          ["measure", "value"], rows,
          note=f"{verdict}: aim CPU ratio ≤ {CPU_RATIO_AIM}. A fresh relay process (1 gunicorn worker, {PHONES + 8} "
               f"threads) per variant; CPU from /proc/<worker>/stat (utime + stime) over the syncs; solo = one "
               f"phone at a time, each its own round; 'in one round' = all {PHONES} started at one moment. Graph "
               "pages counted by the fake Graph. Memory: a fresh process per row, one warm-up sync first.")
    return {"cpu_ratio": plain["ratio"], "cpu_ratio_gzip": gzipped["ratio"], "pages_shared": gzipped["shared_pages"],
            "pages_solo": gzipped["solo_pages"], "memory_growth": growth}


# ---- (d) a solo sync's throughput -----------------------------------------------------------------
def throughput(stack, fake: FakeMicrosoftClient, device: Device, sizes: Sizes) -> dict:
    http = session(stack)
    relay_url, graph_url = stack.urls["relay_contacts"], stack.urls["graph"]
    app_token = fake.mint("graph", T_THROUGHPUT)
    relay_sync(http, relay_url, device)
    graph_sync(http, graph_url, app_token)
    relay_rates, raw_rates = [], []
    for round_no in range(sizes.rounds * 2):
        for kind in (("relay", "raw") if round_no % 2 == 0 else ("raw", "relay")):
            if kind == "relay":
                contacts, seconds, _ = relay_sync(http, relay_url, device)
                relay_rates.append(contacts / seconds)
            else:
                contacts, seconds, _ = graph_sync(http, graph_url, app_token)
                raw_rates.append(contacts / seconds)
    ratios = [r / w for r, w in zip(relay_rates, raw_rates, strict=True)]
    ratio = median(ratios)
    table(f"(d) A solo full sync through its round vs raw Graph paging ({sizes.throughput_users:,} users, "
          f"999 per page, loopback, {len(ratios)} alternating rounds)",
          ["measure", "median", "min", "max"],
          [["plain client paging fake Graph /users/delta, contacts/s", median(raw_rates), min(raw_rates),
            max(raw_rates)],
           ["relay_contacts, one phone, contacts/s", median(relay_rates), min(relay_rates), max(relay_rates)],
           ["ratio relay ÷ raw (per-round ratios)", ratio, min(ratios), max(ratios)]],
          note=f"{'OK' if ratio >= THROUGHPUT_RATIO_AIM else 'BELOW AIM'}: aim ≥ {THROUGHPUT_RATIO_AIM}. The stack's "
               "relay process; both clients in this process, plain NDJSON (Accept-Encoding: identity).")
    return {"throughput_ratio": ratio}


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(__doc__.splitlines()[0], argv)
    sizes = QUICK if args.quick else FULL
    started = time.perf_counter()
    print(f"## shared rounds benchmark{' (--quick)' if args.quick else ''}\n", flush=True)
    with local_stack("rounds") as stack, tempfile.TemporaryDirectory(prefix="bench-rounds-logs-") as log_dir:
        fake = stack.fake_microsoft()
        for tenant, size in ((T_ROUND, sizes.round_users), (T_THROUGHPUT, sizes.throughput_users), (T_WARM, 990)):
            onboard(stack, tenant, scope=WHOLE_DIRECTORY)
            fake.directory(tenant, size)
        devices = []
        for _ in range(PHONES):
            device = Device(fake.mint("user", T_ROUND), str(uuid.uuid4()))
            register_device(stack, device.token, device.device_id)
            devices.append(device)
        warm = Device(fake.mint("user", T_WARM), str(uuid.uuid4()))
        register_device(stack, warm.token, warm.device_id)
        solo = Device(fake.mint("user", T_THROUGHPUT), str(uuid.uuid4()))
        register_device(stack, solo.token, solo.device_id)
        log("tenants onboarded, directories sized, devices registered")
        results = shared_vs_solo(stack, fake, devices, warm, sizes, Path(log_dir))
        results.update(throughput(stack, fake, solo, sizes))
    print(f"rounds benchmark finished in {time.perf_counter() - started:.0f} s: relay CPU per phone in a round of "
          f"{PHONES} ÷ solo {results['cpu_ratio']:.3f} plain, {results['cpu_ratio_gzip']:.3f} gzip (aim ≤ "
          f"{CPU_RATIO_AIM}); Graph pages per phone {results['pages_shared']:.2f} (solo {results['pages_solo']:.2f}); "
          f"memory +{results['memory_growth']:.1f} MiB for {PHONES} phones vs 1; solo throughput ÷ raw paging "
          f"{results['throughput_ratio']:.2f} (aim ≥ {THROUGHPUT_RATIO_AIM})\n", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
