"""The object audit: a completed task never lists a URL that cannot work. Images leave by
their lifetime (the task then answers with ``expired_at`` and no URLs); one lost another
way (a bucket emptied by hand, `make run`'s `var/s3` deleted) is found here, by asking
storage which result keys of the tasks still within their lifetime have no object, and
the task answers as an expired one from then on. OBJECT_AUDIT_INTERVAL runs it (0 = never:
it checks every live image, one HEAD each, so a busy platform runs it seldom or not)."""

from __future__ import annotations

import logging
import time

from prometheus_client import Counter

from pixelrelay.db import Database
from pixelrelay.storage_client import StorageClient
from pixelrelay_gateway.core.store import TaskStore

log = logging.getLogger(__name__)

TASKS_PER_READ = 200
KEYS_PER_CALL = 500  # storage's FindMissing limit

IMAGES_LOST = Counter(
    "pixelrelay_task_images_lost_total",
    "Completed tasks found with images gone before their lifetime ended (the object audit)",
)


async def audit_objects(
    store: TaskStore, db: Database, storage: StorageClient, *, now: float | None = None
) -> int:
    """One pass over every completed task within its images' lifetime; how many were
    found with an image gone (each now answers as expired)."""
    now_ms = int((now or time.time()) * 1000)
    after, lost = "", 0
    while True:
        tasks, after = await db.run(
            store.live_results, after_id=after, limit=TASKS_PER_READ, now_ms=now_ms
        )
        keys = [key for _task, task_keys in tasks for key in task_keys]
        missing: set[str] = set()
        for i in range(0, len(keys), KEYS_PER_CALL):
            missing.update(await storage.find_missing(keys[i : i + KEYS_PER_CALL]))
        for task_id, task_keys in tasks:
            if missing.intersection(task_keys):
                await db.run(store.mark_images_lost, task_id, now_ms)
                IMAGES_LOST.inc()
                log.warning("task images lost before their time", extra={"task_id": task_id})
                lost += 1
        if not after:
            return lost
