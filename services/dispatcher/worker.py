"""One job, start to finish: generate upstream, hand the images to storage, then ack.

The ack decision is made here and only here:
    images stored (storage announced completion)        → ack
    upstream failed for good                             → publish failed, ack
    storage unreachable, deliveries left                 → nak with delay (retried)
    storage unreachable, last delivery                   → publish failed, ack
    process stopping mid-job                             → no ack: JetStream redelivers
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator

import grpc
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from prometheus_client import Counter

from dispatcher.router import AllChannelsFailed, Router
from dispatcher.upstream import Generation
from pixelrelay.bus import heartbeat, publish_event
from pixelrelay.errors import E, ErrorKind
from pixelrelay.v1 import events_pb2, jobs_pb2, storage_pb2, storage_pb2_grpc

log = logging.getLogger(__name__)

JOBS = Counter("pixelrelay_jobs_total", "Jobs handled, by outcome", ["outcome"])

CHUNK_BYTES = 1024 * 1024


class JobHandler:
    def __init__(
        self,
        *,
        js: JetStreamContext,
        router: Router,
        storage: storage_pb2_grpc.StorageStub,
        worker: str,
        heartbeat_every: float,
        max_deliver: int,
    ):
        self.js = js
        self.router = router
        self.storage = storage
        self.worker = worker
        self.heartbeat_every = heartbeat_every
        self.max_deliver = max_deliver

    async def __call__(self, msg: Msg) -> None:
        job = jobs_pb2.GenerationJob.FromString(msg.data)
        delivery = msg.metadata.num_delivered or 1
        await publish_event(
            self.js,
            events_pb2.TaskEvent(
                task_id=job.task_id,
                started=events_pb2.TaskStarted(worker=self.worker, delivery=delivery),
            ),
        )
        async with heartbeat(msg, self.heartbeat_every):
            outcome = await self._run(job, delivery)
        JOBS.labels(outcome).inc()
        if outcome == "retry":
            await msg.nak(delay=2.0)
        else:
            await msg.ack()

    async def _run(self, job: jobs_pb2.GenerationJob, delivery: int) -> str:
        """Do the job; returns "completed", "failed" (settled, announced) or "retry"."""
        started = time.perf_counter()
        try:
            result, _attempts = await self.router.generate(job.task_id, job.prompt, job.spec)
        except AllChannelsFailed as failure:
            await self._fail(job.task_id, failure.last.kind, failure.last.message)
            return "failed"
        upstream_ms = int((time.perf_counter() - started) * 1000)
        try:
            await self._store(job.task_id, result, upstream_ms)
        except grpc.aio.AioRpcError as exc:
            if delivery < self.max_deliver:
                log.warning(
                    "storage unavailable; job will be retried",
                    extra={"task_id": job.task_id, "grpc": exc.code().name},
                )
                return "retry"
            await self._fail(job.task_id, E.STORAGE_FAILED, E.STORAGE_FAILED.description)
            return "failed"
        log.info(
            "job done",
            extra={
                "task_id": job.task_id,
                "upstream_ms": upstream_ms,
                "images": len(result.images),
            },
        )
        return "completed"

    async def _store(self, task_id: str, result: Generation, upstream_ms: int) -> None:
        header = storage_pb2.StoreHeader(
            task_id=task_id,
            quality=result.quality,
            upstream_ms=upstream_ms,
            images=[
                storage_pb2.ImageMeta(
                    index=i,
                    format=img.format,
                    width=img.width,
                    height=img.height,
                    bytes=len(img.data),
                    sha256=img.sha256,
                )
                for i, img in enumerate(result.images)
            ],
        )

        async def parts() -> AsyncIterator[storage_pb2.StoreImagesRequest]:
            yield storage_pb2.StoreImagesRequest(header=header)
            for index, image in enumerate(result.images):
                for offset in range(0, len(image.data), CHUNK_BYTES):
                    yield storage_pb2.StoreImagesRequest(
                        chunk=storage_pb2.ImageChunk(
                            index=index, data=image.data[offset : offset + CHUNK_BYTES]
                        )
                    )

        await self.storage.StoreImages(parts(), timeout=120)

    async def _fail(self, task_id: str, kind: ErrorKind, message: str) -> None:
        log.info("job failed", extra={"task_id": task_id, "error": kind.type})
        await publish_event(
            self.js,
            events_pb2.TaskEvent(
                task_id=task_id,
                failed=events_pb2.TaskFailed(code=kind.code, type=kind.type, message=message),
            ),
        )
