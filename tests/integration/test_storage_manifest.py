"""Storing a task's images on a real S3 API (moto) and JetStream: the images, then the
completed event, which is the task's manifest: after it they are never written again, and a
redelivered job is told "already done" only when the event is on the bus and every image it
lists, with exactly the listed bytes, is there."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import nats
import pytest
from nats.js import JetStreamContext
from pydantic import SecretStr

from pixelrelay import bus, task_events
from pixelrelay.callers import TrustedCallers
from pixelrelay.capabilities import TaskCapabilities, TaskGrant, new_capability_key
from pixelrelay.errors import ApiError, E
from pixelrelay.v1 import storage_pb2
from pixelrelay_dev.ports import lease_ports
from pixelrelay_sim.render import render_image
from pixelrelay_storage.blobstore import BlobStore
from pixelrelay_storage.servicer import StorageServicer
from pixelrelay_storage.settings import StorageSettings
from tests.integration.conftest import nats_on

TASK = "task_0123456789abcdefghijkl"
CAPABILITIES = TaskCapabilities.parse(new_capability_key())
CAPABILITY = CAPABILITIES.issue(TaskGrant(TASK, "acct_a", 7, 2_000_000_000))


async def requests(images: list[bytes]) -> AsyncIterator[storage_pb2.StoreImagesRequest]:
    yield storage_pb2.StoreImagesRequest(
        header=storage_pb2.StoreHeader(
            task_id=TASK,
            capability=CAPABILITY,
            quality="low",
            images=[
                storage_pb2.ImageMeta(
                    index=i,
                    format="png",
                    width=64,
                    height=64,
                    bytes=len(data),
                    sha256=hashlib.sha256(data).hexdigest(),
                )
                for i, data in enumerate(images)
            ],
        )
    )
    for i, data in enumerate(images):
        yield storage_pb2.StoreImagesRequest(chunk=storage_pb2.ImageChunk(index=i, data=data))


async def completions(js: JetStreamContext) -> int:
    info = await js.stream_info(bus.EVENTS_STREAM)
    return info.state.messages


async def test_reannounce_trusts_the_completed_event_only_with_every_image(
    s3: str, tmp_path: Path
) -> None:
    blobs = BlobStore(
        StorageSettings(s3_endpoint=s3, s3_access_key=SecretStr("k"), s3_secret_key=SecretStr("s"))
    )
    await blobs.ensure_bucket()
    images = [render_image(f"image {i}", 64, 64, "png") for i in range(2)]
    with lease_ports(1) as lease:
        [port] = lease.ports
        async with nats_on(port, tmp_path / "js"):
            nc = await nats.connect(f"nats://127.0.0.1:{port}")
            js = nc.jetstream()
            servicer = StorageServicer(blobs, js, CAPABILITIES, TrustedCallers({}))
            try:
                stored = await servicer.StoreImages(requests(images), None)  # type: ignore[arg-type]
                assert [await blobs.get(i.key) for i in stored.images] == images
                event = await task_events.last_event(js, "completed", TASK)
                assert event is not None
                assert [i.key for i in event.completed.images] == [i.key for i in stored.images]
                assert await completions(js) == 1
                assert await blobs.keys(f"tasks/{TASK}/") == sorted(i.key for i in stored.images)

                with pytest.raises(ApiError) as refused:  # a task's results are written once
                    await servicer.StoreImages(requests(images[::-1]), None)  # type: ignore[arg-type]
                assert refused.value.kind == E.RESULTS_ALREADY_STORED
                assert [await blobs.get(i.key) for i in stored.images] == images

                again = storage_pb2.ReannounceRequest(task_id=TASK, capability=CAPABILITY)
                assert (await servicer.Reannounce(again, None)).found  # type: ignore[arg-type]
                assert await completions(js) == 1  # already on the bus: not published again

                # A later attempt that died half way rewrote one image with other bytes.
                other = render_image("another attempt", 64, 64, "png")
                await blobs.put(stored.images[1].key, other, "image/png")
                assert not (await servicer.Reannounce(again, None)).found  # type: ignore[arg-type]
                await blobs.put(stored.images[1].key, images[1], "image/png")
                assert (await servicer.Reannounce(again, None)).found  # type: ignore[arg-type]

                await blobs.delete([stored.images[0].key])  # e.g. deleted by hand since
                assert not (await servicer.Reannounce(again, None)).found  # type: ignore[arg-type]
                await blobs.put(stored.images[0].key, images[0], "image/png")
                assert (await servicer.Reannounce(again, None)).found  # type: ignore[arg-type]
                # Past the stream's retention (a day; longer than any job is kept).
                await js.purge_stream(
                    bus.EVENTS_STREAM, subject=task_events.subject("completed", TASK)
                )
                assert not (await servicer.Reannounce(again, None)).found  # type: ignore[arg-type]
            finally:
                await nc.close()
