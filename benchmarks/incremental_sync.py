"""Benchmark of an incremental sync of 300 changed users (issue 20): Graph requests before and after the relay
decided the scope's flags on Graph's delta items.

`python -m benchmarks.incremental_sync [--quick]` starts its own local stack and prints, counted by the fake
Graph, for one incremental sync after 300 users' `jobTitle` changed:

- "before": the delta items carry only the changed properties (what the fake used to send, and what the relay
  then had to complete by asking Graph about each changed user: `GET /users?$filter=id in (…)`, 15 a request,
  inside `$batch`). The fake's `delta_return_minimal` setting serves that shape again, and the relay's
  fallback for items without `accountEnabled`/`userType` is exactly the lookup it used to do for every item.
- "after": Graph's published shape (every selected property that is set; never-set ones left out): the
  flags are decided on the item, no lookup.

Two tenants: the whole directory with the default scope (disabled and guest accounts left out), and one
scoped to a group (each changed user also costs a `checkMemberGroups`, 4 resource units, either way).
"""
from __future__ import annotations

import json
import time
import uuid
from collections.abc import Sequence

from benchmarks._common import local_stack, log, onboard, parse_args, register_device, session, table
from benchmarks.relay import Device

T_FLAGS = "b0000000-0000-4000-8000-000000000050"
T_GROUP = "b0000000-0000-4000-8000-000000000051"
CHANGED = 300


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(__doc__.splitlines()[0], argv)
    users = 2_000 if args.quick else 10_000
    started = time.perf_counter()
    print(f"## incremental sync of {CHANGED} changed users{' (--quick)' if args.quick else ''}\n", flush=True)
    with local_stack("incremental") as stack:
        fake = stack.fake_microsoft()
        http = session(stack)
        relay_url = stack.urls["relay_contacts"]
        devices: dict[str, Device] = {}
        for tenant in (T_FLAGS, T_GROUP):
            fake.directory(tenant, users)
        group = fake.create_group(T_GROUP, users={"range": [0, users // 2]})
        for tenant, scope in ((T_FLAGS, None), (T_GROUP, {"groups": [group]})):
            onboard(stack, tenant, scope=scope)
            devices[tenant] = Device(fake.mint("user", tenant), str(uuid.uuid4()))
            register_device(stack, devices[tenant].token, devices[tenant].device_id)
        log("tenants onboarded, devices registered")

        def sync(tenant: str, cursor: str | None) -> tuple[str, dict]:
            fake.reset_stats()
            response = http.get(relay_url + "/", params={"cursor": cursor} if cursor else None,
                                headers=devices[tenant].headers(), timeout=600)
            lines = response.text.splitlines()
            if response.status_code != 200 or not lines[-1].startswith('{"op":"end"'):
                raise RuntimeError(f"sync failed: {response.status_code} {response.text[-300:]}")
            if cursor and lines[0] == '{"op":"reset"}':
                raise RuntimeError("the incremental sync became a full one")
            stats = fake.stats()
            per = stats["per_tenant"].get(tenant, {})
            figures = {"lines": len(lines) - 1, "requests": stats["graph_requests"],
                       "batches": per.get("graph_batches", 0), "batched": per.get("graph_batch_items", 0),
                       "lookups": per.get("graph_users_by_id", 0), "checks": per.get("graph_member_checks", 0),
                       "units": stats["resource_units"]}
            return json.loads(lines[-1])["cursor"], figures

        rows, results = [], {}
        for tenant, label in ((T_FLAGS, "whole directory, default scope"), (T_GROUP, "one group")):
            cursor, _ = sync(tenant, None)
            ids = [e["user"]["id"] for e in fake.iter_users(tenant) if e["user"]][:CHANGED]
            for shape, minimal in (("before (items carry only what changed)", True),
                                   ("after (Graph's items: every property set)", False)):
                fake.configure(tenant=tenant, delta_return_minimal=minimal)
                stamp = f"Benchmarked {minimal}"
                fake.changes(tenant, update=[{"id": i, "fields": {"jobTitle": stamp}} for i in ids])
                cursor, figures = sync(tenant, cursor)
                rows.append([f"{label}: {shape}", figures["lines"], figures["requests"], figures["batches"],
                             figures["batched"], figures["lookups"], figures["checks"], figures["units"]])
                results[(tenant, minimal)] = figures
            fake.configure(tenant=tenant, delta_return_minimal=False)
        table(f"Incremental sync after {CHANGED} users changed ({users:,}-user directories; counted by the fake Graph)",
              ["sync", "lines", "HTTP requests to Graph", "$batch calls", "batched requests", "users looked up",
               "checkMemberGroups", "resource units"], rows,
              note="Resource units as the fake charges them from Graph's table: a delta page 1, GET users with "
                   "$select 1 (15 users), checkMemberGroups 4.")
    before, after = results[(T_FLAGS, True)], results[(T_FLAGS, False)]
    print(f"incremental sync of {CHANGED} changed users (whole directory): Graph requests "
          f"{before['requests'] + before['batched']} before ({before['requests']} HTTP, {before['batched']} batched), "
          f"{after['requests'] + after['batched']} after ({after['requests']} HTTP, {after['batched']} batched); "
          f"finished in {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
