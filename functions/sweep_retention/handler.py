"""CloudEvent entry point `sweep_retention` (push from `retention-sweep`, ticked by Cloud Scheduler).

The tick's payload carries nothing the sweep needs. A failure raises, so Pub/Sub delivers the tick again;
the sweep is idempotent (deterministic request IDs), so a repeated tick costs only time.
"""
from __future__ import annotations

import time

import functions_framework
from cloudevents.http import CloudEvent

from shared import logs
from shared.config import settings_for
from shared.runtime import cold_start_check, once

FUNCTION = "sweep_retention"

cold_start_check(FUNCTION)
log = logs.get_logger(__name__)


@once
def components():
    from shared import wiring
    from shared.clock import utc_now

    from functions.sweep_retention.service import RetentionSweeper

    config = settings_for(FUNCTION)
    store = wiring.store(config)
    return RetentionSweeper(store.tenants, store.devices, store.files, store.objects,
                            wiring.deletion_requester(config, store), utc_now,
                            device_inactivity_days=config.device_inactivity_days,
                            stuck_deletion_minutes=config.stuck_deletion_minutes)


@functions_framework.cloud_event
def sweep_retention(cloud_event: CloudEvent) -> None:
    started = time.perf_counter()
    try:
        report = components().sweep()
    except Exception:
        log.exception("retention sweep failed; the tick will be delivered again", function=FUNCTION)
        raise
    log.info("retention sweep finished", function=FUNCTION, files=report.files, devices=report.devices,
             tenants=report.tenants, orphans=report.orphans, scanned=report.scanned, skipped=report.skipped,
             published=report.published, batches=report.batches,
             durationMs=round((time.perf_counter() - started) * 1000, 1))
