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
from pixelrelay.bus import publish_event
from pixelrelay.db import Database
from pixelrelay.errors import ApiError, E
from pixelrelay.v1 import events_pb2

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
        kind = E.TASK_EXPIRED
        await publish_event(
            js,
            events_pb2.TaskEvent(
                task_id=task_id,
                failed=events_pb2.TaskFailed(
                    code=kind.code, type=kind.type, message=kind.description
                ),
            ),
        )
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
