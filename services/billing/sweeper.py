"""Releases holds that outlived their deadline, and fails their tasks on the bus.

A hold's deadline is set at submit (gateway's HOLD_TTL_SECONDS). Past it, nobody will
capture it: the job was lost, or the submit died between reserve and publish.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from nats.js import JetStreamContext

from billing.ledger import Ledger
from pixelrelay import task_events
from pixelrelay.db import Database
from pixelrelay.errors import ApiError, E

log = logging.getLogger(__name__)


async def sweep_once(ledger: Ledger, db: Database, js: JetStreamContext) -> int:
    expired = await db.run(ledger.expired_holds, now=int(time.time()))
    for task_id in expired:
        try:
            await db.run(ledger.release, task_id=task_id, reason="expired")
        except ApiError as err:
            if err.kind is E.HOLD_CONFLICT:  # captured meanwhile: nothing to release
                continue
            raise
        await task_events.publish_event(js, task_events.failed(task_id, E.TASK_EXPIRED))
    if expired:
        log.info("expired holds released", extra={"count": len(expired)})
    return len(expired)


async def run_sweeper(
    ledger: Ledger, db: Database, js: JetStreamContext, stop: asyncio.Event, interval: float
) -> None:
    while not stop.is_set():
        try:
            await sweep_once(ledger, db, js)
        except Exception:
            log.exception("sweep failed; will retry")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)
