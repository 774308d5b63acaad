"""Applies task events from the bus to task records, settling the hold first.

completed → billing.Capture(delivered images) → record completed with the charge
failed    → billing.Release                    → record failed with the reason
started   → record started_at
Capture and release are idempotent by task id, so a redelivered event is harmless;
the record is updated only after billing agreed, so "completed" always means "charged".
"""

from __future__ import annotations

import logging

from nats.aio.msg import Msg
from prometheus_client import Counter

from gateway.store import TaskStore, now_ms
from pixelrelay.billing_client import BillingClient
from pixelrelay.db import Database
from pixelrelay.errors import ApiError, E
from pixelrelay.v1 import events_pb2

log = logging.getLogger(__name__)

TASKS_FINISHED = Counter("pixelrelay_tasks_finished_total", "Tasks settled", ["status"])
CREDITS_CHARGED = Counter("pixelrelay_credits_charged_total", "Credits captured")


class TaskEventHandler:
    def __init__(self, *, billing: BillingClient, db: Database, store: TaskStore):
        self.billing = billing
        self.db = db
        self.store = store

    async def __call__(self, msg: Msg) -> None:
        event = events_pb2.TaskEvent.FromString(msg.data)
        try:
            await self.apply(event)
        except ApiError as err:
            if err.kind is E.UNAVAILABLE:
                await msg.nak(delay=1.0)  # billing or the database is down: try again
                return
            raise
        await msg.ack()

    async def apply(self, event: events_pb2.TaskEvent) -> None:
        kind = event.WhichOneof("kind")
        if kind == "started":
            await self.db.run(self.store.mark_started, event.task_id, event.at_ms)
        elif kind == "completed":
            await self._completed(event)
        elif kind == "failed":
            await self._failed(event)

    async def _completed(self, event: events_pb2.TaskEvent) -> None:
        done = event.completed
        try:
            hold = await self.billing.capture(
                task_id=event.task_id, delivered=len(done.images), quality=done.quality
            )
        except ApiError as err:
            if err.kind is E.HOLD_CONFLICT:  # already released (failed earlier): not charged
                log.warning("images arrived for a settled task", extra={"task_id": event.task_id})
                return
            raise
        await self.db.run(self.store.mark_completed, event.task_id, done, hold.captured, now_ms())
        TASKS_FINISHED.labels("completed").inc()
        CREDITS_CHARGED.inc(hold.captured)
        log.info("task completed", extra={"task_id": event.task_id, "charged": hold.captured})

    async def _failed(self, event: events_pb2.TaskEvent) -> None:
        failed = event.failed
        try:
            await self.billing.release(task_id=event.task_id, reason=failed.type)
        except ApiError as err:
            if err.kind is E.HOLD_CONFLICT:  # already captured: the task completed
                return
            raise
        await self.db.run(self.store.mark_failed, event.task_id, failed, now_ms())
        TASKS_FINISHED.labels("failed").inc()
        log.info("task failed", extra={"task_id": event.task_id, "error": failed.type})
