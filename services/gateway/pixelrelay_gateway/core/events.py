"""Records a task's events from the bus on its task record. The gateway settles nothing:
billing owns every hold and announces each settlement (pixelrelay_billing/settlement.py).

started    (dispatcher) → started_at
completed  (storage)    → completed with its images: what polls and waiting requests see
failed     (dispatcher) → failed with the error
settled    (billing)    → the credits charged (credits_settled); a release of a task that
                          was still processing (its hold expired, its submit never queued)
                          fails it with that reason
expired    (billing)    → nothing here: billing releases it and says so in settled

completed and settled arrive in either order: the images make a task completed, the
settled event makes its charge final (``credits_settled``). Images that arrive for a task
already failed (its hold expired first: billing refuses to charge them) are deleted.
Every transition applies once, so a redelivered event changes nothing.

An event that can never be applied (undecodable, without a kind or a task) is
dead-lettered at once; one that fails for a reason that may pass (the database down) is
retried with a growing delay, for as long as it takes; one that fails for an unexpected
reason (a bug) gets MAX_ATTEMPTS tries, then is dead-lettered.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from google.protobuf.message import DecodeError
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from prometheus_client import Counter

from pixelrelay import bus, objects
from pixelrelay.crashpoints import crash_point
from pixelrelay.db import Database
from pixelrelay.errors import ApiError, E
from pixelrelay.storage_client import StorageClient
from pixelrelay.v1 import events_pb2
from pixelrelay_gateway.core.store import TaskStatus, TaskStore, now_ms

log = logging.getLogger(__name__)

TASKS_FINISHED = Counter("pixelrelay_tasks_finished_total", "Tasks finished", ["status"])
EVENTS_DEAD = Counter(
    "pixelrelay_events_dead_lettered_total", "Task events never applied, kept aside", ["reason"]
)
MAX_ATTEMPTS = 10
MAX_DELAY_S = 30.0


class PoisonEvent(Exception):
    """An event that no retry can apply."""


def retry_delay(delivered: int) -> float:
    """0.5 s, 1 s, 2 s, … up to MAX_DELAY_S."""
    return bus.backoff(delivered, first=0.5, most=MAX_DELAY_S)


class TaskEventHandler:
    def __init__(
        self,
        *,
        storage: StorageClient,
        db: Database,
        store: TaskStore,
        js: JetStreamContext,
        announce: Callable[[str], Awaitable[None]] | None = None,
    ):
        self.storage = storage
        self.announce = announce
        self.db = db
        self.store = store
        self.js = js

    async def __call__(self, msg: Msg) -> None:
        """The one place that decides: ack, retry later, or dead-letter."""
        delivered = msg.metadata.num_delivered
        try:
            await self.apply(_decode(msg.data))
        except PoisonEvent as exc:
            await self._dead(msg, str(exc))
        except ApiError as err:
            if err.kind is E.UNAVAILABLE:  # the database or storage is down: it will pass
                await msg.nak(delay=retry_delay(delivered))
            else:
                await self._unexpected(msg, delivered, err.kind.type)
        except Exception:
            log.exception("applying a task event failed", extra={"subject": msg.subject})
            await self._unexpected(msg, delivered, "handler_error")
        else:
            await msg.ack()

    async def _unexpected(self, msg: Msg, delivered: int, reason: str) -> None:
        if delivered >= MAX_ATTEMPTS:
            await self._dead(msg, f"{reason}_after_{delivered}_attempts")
        else:
            await msg.nak(delay=retry_delay(delivered))

    async def _dead(self, msg: Msg, reason: str) -> None:
        log.error("task event dead-lettered", extra={"subject": msg.subject, "reason": reason})
        EVENTS_DEAD.labels(reason.split("_after_")[0]).inc()
        await bus.dead_letter(self.js, msg, reason)

    async def apply(self, event: events_pb2.TaskEvent) -> None:
        if not event.task_id:
            raise PoisonEvent("no_task_id")
        kind = event.WhichOneof("kind")
        if kind == "started":
            await self.db.run(self.store.mark_started, event.task_id, event.at_ms)
        elif kind == "completed":
            await self._completed(event)
        elif kind == "failed":
            await self._failed(event)
        elif kind == "settled":
            await self._settled(event)
        elif kind != "expired":  # billing's to act on; its settled event follows
            raise PoisonEvent("no_kind")

    async def _completed(self, event: events_pb2.TaskEvent) -> None:
        done = event.completed
        if await self.db.run(self.store.mark_completed, event.task_id, done, now_ms()):
            await self._announce(event.task_id)
            TASKS_FINISHED.labels("completed").inc()
            log.info("task completed", extra={"task_id": event.task_id})
        else:
            await self._discard_unpaid(event.task_id)

    async def _failed(self, event: events_pb2.TaskEvent) -> None:
        failed = event.failed
        if await self.db.run(self.store.mark_failed, event.task_id, failed, now_ms()):
            await self._announce(event.task_id)
            TASKS_FINISHED.labels("failed").inc()
            log.info("task failed", extra={"task_id": event.task_id, "error": failed.type})

    async def _settled(self, event: events_pb2.TaskEvent) -> None:
        settled = event.settled
        failed_now = await self.db.run(self.store.mark_settled, event.task_id, settled, now_ms())
        crash_point("gateway.after_settled")  # recorded, not yet acked: redelivered
        if failed_now:  # released while it was processing: no failed event will come
            await self._announce(event.task_id)
            TASKS_FINISHED.labels("failed").inc()
            log.info("task failed", extra={"task_id": event.task_id, "error": settled.reason})

    async def _announce(self, task_id: str) -> None:
        """Wake the requests waiting for this task on every replica (waiting.py); they
        also poll, so a lost announcement only delays them."""
        if self.announce is not None:
            try:
                await self.announce(task_id)
            except Exception:
                log.warning("could not announce a finished task", extra={"task_id": task_id})

    async def _discard_unpaid(self, task_id: str) -> None:
        """Images stored for a task that failed first (its hold expired or was released,
        or its account was deleted) are never shown nor paid for: delete them and the
        task's inputs now, not at the end of their lifetime. A completed task's are kept
        (a redelivered completed event)."""
        try:
            status = (await self.db.run(self.store.get, task_id)).status
        except ApiError as err:
            if err.kind is not E.TASK_NOT_FOUND:
                raise
            status = ""  # no record: its account was deleted, or it is past retention
        if status in ("", TaskStatus.FAILED):
            log.warning("images arrived for a failed task", extra={"task_id": task_id})
            await self.storage.delete_prefixes([objects.task_objects(task_id)])


def _decode(data: bytes) -> events_pb2.TaskEvent:
    try:
        return events_pb2.TaskEvent.FromString(data)
    except DecodeError:
        raise PoisonEvent("undecodable") from None
