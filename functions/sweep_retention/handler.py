"""CloudEvent entry point `sweep_retention` (push from `retention-sweep`, ticked by Cloud Scheduler).

The tick's payload carries nothing the sweep needs. A failure raises, so Pub/Sub delivers the tick again;
the sweep is idempotent (deterministic request IDs), so a repeated tick costs only time.
"""
from __future__ import annotations

import time
from typing import TYPE_CHECKING

import functions_framework
from cloudevents.http import CloudEvent

from shared import logs
from shared.clock import utc_now
from shared.wiring import components

if TYPE_CHECKING:
    from functions.sweep_retention.service import RetentionSweeper
    from shared.config import Settings
    from shared.store import Store

FUNCTION = "sweep_retention"
log = logs.get_logger(__name__)


@components(FUNCTION)
def sweeper(config: Settings, store: Store) -> RetentionSweeper:
    from functions.sweep_retention.service import RetentionSweeper
    from shared import wiring

    return RetentionSweeper(store, wiring.deletion_requester(config, store), utc_now,
                            device_inactivity_days=config.device_inactivity_days,
                            stuck_deletion_minutes=config.stuck_deletion_minutes)


@functions_framework.cloud_event
def sweep_retention(cloud_event: CloudEvent) -> None:
    started = time.perf_counter()
    try:
        report = sweeper().sweep()
    except Exception:
        log.exception("retention sweep failed; the tick will be delivered again", function=FUNCTION)
        raise
    log.info("retention sweep finished", function=FUNCTION, files=report.files, devices=report.devices,
             tenants=report.tenants, orphans=report.orphans, scanned=report.scanned, skipped=report.skipped,
             published=report.published, batches=report.batches, progressing=report.progressing,
             durationMs=round((time.perf_counter() - started) * 1000, 1))
