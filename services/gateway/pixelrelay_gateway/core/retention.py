"""The gateway's records past their lifetime: tasks after TASK_RETENTION_DAYS, uploads
storage has deleted, idempotency keys after 24 h. Purged every RECORD_SWEEP_INTERVAL by
each replica (the deletes are idempotent); the ledger is never touched."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from prometheus_client import Counter

from pixelrelay.db import Database
from pixelrelay.retention import DAY_SECONDS
from pixelrelay_gateway.core.idempotency import IdempotencyStore
from pixelrelay_gateway.core.store import TaskStore
from pixelrelay_gateway.core.uploads import UploadStore

log = logging.getLogger(__name__)

RECORDS_PURGED = Counter(
    "pixelrelay_records_purged_total", "Gateway records deleted past their lifetime", ["kind"]
)


@dataclass(frozen=True)
class Records:
    tasks: TaskStore
    uploads: UploadStore
    idempotency: IdempotencyStore


async def purge_records(
    records: Records, db: Database, *, task_retention_days: float, now: float | None = None
) -> dict[str, int]:
    """One purge of every kind; how many of each went."""
    now_ms = int((now or time.time()) * 1000)
    cutoff_ms = now_ms - int(task_retention_days * DAY_SECONDS * 1000)
    purged = {
        "task": await db.run(records.tasks.purge, created_before_ms=cutoff_ms),
        "upload": await db.run(records.uploads.purge, now_ms=now_ms),
        "idempotency_key": await db.run(records.idempotency.purge, now_ms=now_ms),
    }
    for kind, count in purged.items():
        RECORDS_PURGED.labels(kind).inc(count)
    if any(purged.values()):
        log.info("records purged", extra=purged)
    return purged
