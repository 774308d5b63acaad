"""One job, start to finish: generate upstream, hand the images to storage, then ack.

The ack decision is made here and only here:
    the job does not open (not sealed by a gateway)      → dead-lettered, ack; the task
    or storage refuses its capability                      and its hold untouched
    the task's images are already stored                 → ack
    the task is settled already (its settled event is    → ack, nothing generated
    on the bus: expired, refused, account deleted)
    images stored (storage announced completion)        → ack
    upstream failed for good                             → publish failed, ack
    storage unreachable or not serving, deliveries left  → nak with backoff (retried)
    storage unreachable, last delivery                   → publish failed, ack
    process stopping mid-job                             → no ack: JetStream redelivers
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable

from google.protobuf.message import DecodeError
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from prometheus_client import Counter, Histogram

from pixelrelay import bus, task_events
from pixelrelay.crashpoints import crash_point
from pixelrelay.errors import ApiError, E, ErrorKind
from pixelrelay.ids import is_id
from pixelrelay.relay import MAX_PARTIAL_IMAGES, RelaySender, is_relay_subject
from pixelrelay.sealing import PromptSealer, SealError, job_binding
from pixelrelay.storage_client import StorageClient
from pixelrelay.v1 import jobs_pb2
from pixelrelay_dispatcher.router import AllChannelsFailed, Attempt, Router
from pixelrelay_dispatcher.upstream import InputImage, Partials

log = logging.getLogger(__name__)

# Between attempts to store a finished generation (~15 s in all) before the job is nak'ed.
STORE_RETRY_DELAYS = (1.0, 2.0, 4.0, 8.0)
# Storage's answers that no retry changes.
REFUSALS = (E.TASK_CAPABILITY_INVALID, E.RESULTS_ALREADY_STORED)

JOBS = Counter("pixelrelay_jobs_total", "Jobs handled, by outcome", ["outcome"])
JOB_AGE = Histogram(
    "pixelrelay_job_age_seconds",
    "Time from submit to pickup",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)


class JobHandler:
    def __init__(
        self,
        *,
        nc: NATS,
        js: JetStreamContext,
        router: Router,
        storage: StorageClient,
        worker: str,
        heartbeat_every: float,
        max_deliver: int,
        sealer: PromptSealer,
    ):
        self.nc = nc
        self.js = js
        self.router = router
        self.storage = storage
        self.worker = worker
        self.heartbeat_every = heartbeat_every
        self.max_deliver = max_deliver
        self.sealer = sealer

    async def __call__(self, msg: Msg) -> None:
        opened = self._open(msg.data)
        if isinstance(opened, str):
            await self._dead_letter(msg, opened)
            JOBS.labels("unopened").inc()
            return
        job, prompt = opened
        delivery = msg.metadata.num_delivered or 1
        JOB_AGE.observe(max(0.0, time.time() - job.created_at_ms / 1000))
        async with bus.heartbeat(msg, self.heartbeat_every):
            outcome = await self._run(job, prompt, delivery)
        JOBS.labels(outcome).inc()
        if outcome == "refused":
            await self._dead_letter(msg, "capability_refused")
        elif outcome == "retry":  # storage trouble: 5, 10, 20, 40 s (~75 s) before giving up
            await msg.nak(delay=bus.backoff(delivery, first=5.0, most=60.0))
        else:
            await msg.ack()

    def _open(self, data: bytes) -> tuple[jobs_pb2.GenerationJob, str] | str:
        """The job and its prompt, or why it cannot be trusted. Before anything acts on its
        task: only a gateway (JOB_KEYS) seals a prompt to a task id, so a job published
        with the gateway's NATS password alone, for someone else's task, stops here."""
        try:
            job = jobs_pb2.GenerationJob.FromString(data)
        except DecodeError:
            return "undecodable"
        if not is_id(job.task_id, "task"):
            return "bad_task_id"
        try:
            return job, self.sealer.open(
                job.key_id, job.sealed_prompt, job.task_id, job_binding(job)
            )
        except SealError:  # no retry opens it: JOB_KEYS lost the key, or forged
            return "unopened"

    async def _dead_letter(self, msg: Msg, reason: str) -> None:
        """Keep an untrusted job for the operators, without its prompt, and ack it: its task
        (which may be another tenant's) and its hold are not touched, no event is sent."""
        try:
            job = jobs_pb2.GenerationJob.FromString(msg.data)
            job.prompt = ""
            job.sealed_prompt = b""
            kept = job.SerializeToString()
        except DecodeError:
            kept = b""
        seq = msg.metadata.sequence.stream
        log.error("job dead-lettered", extra={"reason": reason, "stream_seq": seq})
        await bus.publish_raw(
            self.js,
            bus.DEADLETTER_SUBJECT,
            kept,
            {"Nats-Msg-Id": f"dead.job.{seq}", bus.REASON_HEADER: reason},
        )
        await msg.ack()

    async def _run(self, job: jobs_pb2.GenerationJob, prompt: str, delivery: int) -> str:
        """Do the job; returns "completed", "failed" (settled, announced), "dropped",
        "refused" (its capability is not its task's: nothing announced) or "retry"."""
        try:
            if delivery > 1 and await self.storage.reannounce(job.task_id, job.capability):
                # An earlier delivery stored the images and died before its ack:
                # never generate (and pay upstream) twice.
                log.info("job already done", extra={"task_id": job.task_id})
                return "completed"
            # `started` goes out while the bus is asked whether the task is settled
            # already (one round trip for both); it is in the stream before any later
            # event of the task.
            taken = task_events.started(job.task_id, worker=self.worker, delivery=delivery)
            settled, _ = await asyncio.gather(
                self._settled(job.task_id), task_events.publish_event(self.js, taken)
            )
            if settled:
                return "dropped"
            if not await self.storage.serving():  # it could not keep what we would pay for
                raise ApiError(E.UNAVAILABLE, "storage is not serving")
            references, mask = await self._inputs(job)
            crash_point("dispatcher.before_upstream")
        except ApiError as err:
            if err.kind is E.TASK_CAPABILITY_INVALID:
                return "refused"
            return await self._storage_trouble(job.task_id, delivery, err)
        started = time.perf_counter()
        relay = self._relay(job)
        previews = (
            Partials(relay.previews, relay.send_preview) if relay and relay.previews else None
        )
        try:
            result, attempts = await self.router.generate(
                job.task_id, prompt, job.spec, references, mask, previews
            )
        except AllChannelsFailed as failure:
            await self._fail(job.task_id, failure.last.kind, failure.last.message, failure.attempts)
            return "failed"
        upstream_ms = int((time.perf_counter() - started) * 1000)
        if relay is not None:  # the waiting request answers with these, not a re-read
            for index, image in enumerate(result.images):
                await relay.send_final(index, image.data, image.format)
        store = functools.partial(
            self.storage.store_images,
            job.task_id,
            result.images,
            quality=result.quality,
            usage=result.usage,
            upstream_ms=upstream_ms,
            attempts=[a.to_proto() for a in attempts],
            capability=job.capability,
        )
        unstored = await keep_trying(job.task_id, store)
        if unstored is not None and unstored.kind is E.RESULTS_ALREADY_STORED:
            return "completed"  # stored and announced by an earlier delivery meanwhile
        if unstored is not None and unstored.kind is E.TASK_CAPABILITY_INVALID:
            return "refused"
        if unstored is not None:
            return await self._storage_trouble(job.task_id, delivery, unstored)
        crash_point("dispatcher.after_store")  # stored and announced, not yet acked
        log.info(
            "job done",
            extra={
                "task_id": job.task_id,
                "upstream_ms": upstream_ms,
                "images": len(result.images),
            },
        )
        return "completed"

    def _relay(self, job: jobs_pb2.GenerationJob) -> RelaySender | None:
        """Where the job's images go as they are made, if a request waits for them. A
        redelivered job relays them again: its request may still be waiting."""
        if not is_relay_subject(job.relay_subject):
            return None
        return RelaySender(
            self.nc,
            job.relay_subject,
            job.task_id,
            job.spec.output_format or "png",
            previews=max(0, min(job.partial_images, MAX_PARTIAL_IMAGES)),
        )

    async def _settled(self, task_id: str) -> bool:
        """Whether billing has settled the task already (released: its hold expired in the
        queue, its submit was refused after the job's publish reached the queue, its
        account was deleted): then nobody could be charged for a generation, and the
        upstream is not paid for one. The bus says, not billing: the dispatcher calls no
        billing RPC. If the bus cannot say, the job runs (its images' capture is refused
        if the hold is gone)."""
        try:
            settled = await task_events.last_event(self.js, "settled", task_id)
        except ApiError:
            log.warning("settlement unknown; job runs", extra={"task_id": task_id})
            return False
        if settled is not None:
            log.info("job dropped: its task is settled", extra={"task_id": task_id})
        return settled is not None

    async def _inputs(
        self, job: jobs_pb2.GenerationJob
    ) -> tuple[list[InputImage], InputImage | None]:
        def read(key: str) -> Awaitable[bytes]:
            return self.storage.get_object(key, job.capability)

        references = [
            InputImage(f"ref{i}.{key.rsplit('.', 1)[-1]}", await read(key))
            for i, key in enumerate(job.reference_keys)
        ]
        mask = InputImage("mask.png", await read(job.mask_key)) if job.mask_key else None
        return references, mask

    async def _storage_trouble(self, task_id: str, delivery: int, err: ApiError) -> str:
        if delivery < self.max_deliver:
            log.warning(
                "storage unavailable; job will be retried",
                extra={"task_id": task_id, "error": err.kind.type},
            )
            return "retry"
        await self._fail(task_id, E.STORAGE_FAILED)
        return "failed"

    async def _fail(
        self,
        task_id: str,
        kind: ErrorKind,
        message: str | None = None,
        attempts: list[Attempt] | None = None,
    ) -> None:
        log.info("job failed", extra={"task_id": task_id, "error": kind.type})
        attempted = [a.to_proto() for a in attempts or []]
        await task_events.publish_event(
            self.js, task_events.failed(task_id, kind, message, attempted)
        )


async def keep_trying(
    task_id: str,
    store: Callable[[], Awaitable[object]],
    delays: tuple[float, ...] = STORE_RETRY_DELAYS,
) -> ApiError | None:
    """Store what the upstream made, trying again for a while (the job's heartbeat keeps
    it ours meanwhile): a storage blip must not cost a second generation, which a nak and
    a redelivery would. Returns the failure if it lasts."""
    for delay in (*delays, None):
        try:
            await store()
            return None
        except ApiError as err:
            if delay is None or err.kind in REFUSALS:
                return err
            log.warning(
                "storing failed; trying again",
                extra={"task_id": task_id, "error": err.kind.type, "in_s": delay},
            )
            await asyncio.sleep(delay)
    return None
