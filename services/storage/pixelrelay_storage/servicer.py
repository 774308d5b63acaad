"""StoreImages: reassemble the streamed images, verify them, write them, announce them."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable

import grpc
from nats.js import JetStreamContext
from prometheus_client import Counter

from pixelrelay import task_events
from pixelrelay.callers import GATEWAY, TrustedCallers
from pixelrelay.capabilities import TaskCapabilities
from pixelrelay.errors import ApiError, E
from pixelrelay.hashing import sha256_hex
from pixelrelay.ids import checked_id
from pixelrelay.image_formats import MIME_TYPES
from pixelrelay.objects import (
    chunks,
    input_task,
    is_input_key,
    is_owned_prefix,
    is_readable_key,
    is_result_key,
    result_key,
)
from pixelrelay.v1 import common_pb2, storage_pb2, storage_pb2_grpc
from pixelrelay_storage.blobstore import BlobStore

log = logging.getLogger(__name__)

STORED_IMAGES = Counter("pixelrelay_stored_images_total", "Images written", ["format"])
STORED_BYTES = Counter("pixelrelay_stored_bytes_total", "Bytes written to object storage")

MAX_IMAGE_BYTES = 64 * 1024 * 1024
# FindMissing: keys per call, and existence checks (HEAD) in flight at once.
MAX_AUDITED_KEYS = 500
AUDIT_CONCURRENCY = 16


def check_input_key(key: str) -> None:
    if not is_input_key(key):
        raise ApiError(E.INVALID_PARAMETER, "not an input object key", param="key")


class StorageServicer(storage_pb2_grpc.StorageServicer):
    """Task-scoped calls (StoreImages, Reannounce, a dispatcher's GetObject) act only with
    the gateway's capability for that task (capabilities.py): the dispatcher's credential
    lets it call, the capability says which task it may act on."""

    def __init__(
        self,
        blobs: BlobStore,
        js: JetStreamContext,
        capabilities: TaskCapabilities,
        callers: TrustedCallers,
    ):
        self.blobs = blobs
        self.js = js
        self.capabilities = capabilities
        self.callers = callers

    async def StoreImages(
        self,
        request_iterator: AsyncIterator[storage_pb2.StoreImagesRequest],
        context: grpc.aio.ServicerContext,
    ) -> storage_pb2.StoreImagesResponse:
        header, buffers = await receive_images(
            request_iterator,
            lambda h: self.capabilities.verify(h.capability, h.task_id),
        )
        # A task's results are written once: its completed event, published last, marks
        # them done (a redelivered job finds it with Reannounce and never gets here).
        if await task_events.last_event(self.js, "completed", header.task_id) is not None:
            raise ApiError(E.RESULTS_ALREADY_STORED)
        stored = [self._describe(header.task_id, meta) for meta in header.images]
        event = task_events.completed(
            header.task_id,
            images=stored,
            quality=header.quality,
            upstream_ms=header.upstream_ms,
            attempts=header.attempts,
            usage=header.usage,
        )
        await asyncio.gather(
            *(self._put_image(image, bytes(buffers[image.index])) for image in stored)
        )
        # On the bus the event is the task's manifest: what a redelivered job finds
        # (Reannounce), so nothing is generated twice, kept as long as a job can be.
        await task_events.publish_event(self.js, event)
        log.info(
            "task images stored",
            extra={
                "task_id": header.task_id,
                "images": len(stored),
                "bytes": sum(i.bytes for i in stored),
            },
        )
        return storage_pb2.StoreImagesResponse(images=stored)

    async def PutObject(
        self,
        request_iterator: AsyncIterator[storage_pb2.PutObjectRequest],
        context: grpc.aio.ServicerContext,
    ) -> storage_pb2.StoredObject:
        header: storage_pb2.ObjectHeader | None = None
        data = bytearray()
        async for part in request_iterator:
            if part.HasField("header"):
                header = part.header
                check_input_key(header.key)
            elif header is None:
                raise ApiError(E.INVALID_PARAMETER, "data before header")
            else:
                data += part.data
                if len(data) > MAX_IMAGE_BYTES:
                    raise ApiError(E.BODY_TOO_LARGE, "object exceeds the size limit")
        if header is None:
            raise ApiError(E.MISSING_PARAMETER, "empty stream: no header")
        if len(data) != header.bytes or await sha256_hex(data) != header.sha256:
            raise ApiError(E.INVALID_PARAMETER, "object arrived incomplete")
        await self.blobs.put(header.key, bytes(data), header.content_type)
        url, expires_at = self.blobs.presign(header.key)
        return storage_pb2.StoredObject(
            key=header.key,
            url=url,
            expires_at=expires_at,
            bytes=len(data),
            kept_until=self.blobs.kept_until(header.key),
        )

    async def GetObject(
        self, request: storage_pb2.GetObjectRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[storage_pb2.ObjectChunk]:
        if not is_readable_key(request.key):
            raise ApiError(E.INVALID_PARAMETER, "not an input or result key", param="key")
        if self.callers.identify(context.invocation_metadata()) != GATEWAY:
            # A dispatcher reads the inputs of the task it works on, and nothing else.
            task_id = input_task(request.key)
            self.capabilities.verify(request.capability, task_id or "")
            if task_id is None:
                raise ApiError(E.TASK_CAPABILITY_INVALID, "not an input of the task")
        data = await self.blobs.get(request.key)
        if data is None:
            raise ApiError(E.UPLOAD_NOT_FOUND)
        for chunk in chunks(data):
            yield storage_pb2.ObjectChunk(data=chunk)

    async def Reannounce(
        self, request: storage_pb2.ReannounceRequest, context: grpc.aio.ServicerContext
    ) -> storage_pb2.ReannounceResponse:
        checked_id(request.task_id, "task", "task_id")
        self.capabilities.verify(request.capability, request.task_id)
        event = await task_events.last_event(self.js, "completed", request.task_id)
        if event is None:
            return storage_pb2.ReannounceResponse(found=False)
        if not all(
            await asyncio.gather(*(self._intact(image) for image in event.completed.images))
        ):  # the images were deleted since, or a later attempt rewrote one: generate anew
            return storage_pb2.ReannounceResponse(found=False)
        return storage_pb2.ReannounceResponse(found=True)  # its event is on the bus already

    async def DeletePrefixes(
        self, request: storage_pb2.DeletePrefixesRequest, context: grpc.aio.ServicerContext
    ) -> storage_pb2.DeletePrefixesResponse:
        for prefix in request.prefixes:
            if not is_owned_prefix(prefix):  # never "", never "uploads/": one owner's objects
                raise ApiError(
                    E.INVALID_PARAMETER, "not an account's or a task's prefix", param="prefixes"
                )
        deleted = 0
        for prefix in request.prefixes:
            keys = await self.blobs.keys(prefix)
            await self.blobs.delete(keys)
            deleted += len(keys)
        log.info("objects deleted", extra={"prefixes": len(request.prefixes), "objects": deleted})
        return storage_pb2.DeletePrefixesResponse(deleted=deleted)

    async def FindMissing(
        self, request: storage_pb2.FindMissingRequest, context: grpc.aio.ServicerContext
    ) -> storage_pb2.FindMissingResponse:
        if len(request.keys) > MAX_AUDITED_KEYS:
            raise ApiError(E.INVALID_PARAMETER, f"at most {MAX_AUDITED_KEYS} keys", param="keys")
        for key in request.keys:
            if not is_result_key(key):  # results only: not a way to probe uploads
                raise ApiError(E.INVALID_PARAMETER, "not a task's result key", param="keys")
        slots = asyncio.Semaphore(AUDIT_CONCURRENCY)

        async def gone(key: str) -> bool:
            async with slots:
                return not await self.blobs.exists(key)

        found = await asyncio.gather(*(gone(key) for key in request.keys))
        return storage_pb2.FindMissingResponse(
            missing=[key for key, lost in zip(request.keys, found, strict=True) if lost]
        )

    async def _intact(self, image: common_pb2.StoredImage) -> bool:
        """The image is stored with exactly the bytes its completed event lists (read back: only
        a redelivered job asks, and bytes from another attempt must not be announced)."""
        data = await self.blobs.get(image.key)
        return data is not None and await sha256_hex(data) == image.sha256

    async def _put_image(self, image: common_pb2.StoredImage, data: bytes) -> None:
        await self.blobs.put(image.key, data, image.content_type)
        STORED_IMAGES.labels(image.format).inc()
        STORED_BYTES.inc(len(data))

    def _describe(self, task_id: str, meta: storage_pb2.ImageMeta) -> common_pb2.StoredImage:
        """Where the image goes and its link (presigning is local: no request)."""
        key = result_key(task_id, meta.index, meta.format)
        url, expires_at = self.blobs.presign(key)
        return common_pb2.StoredImage(
            index=meta.index,
            key=key,
            url=url,
            content_type=MIME_TYPES[meta.format],
            format=meta.format,
            width=meta.width,
            height=meta.height,
            bytes=meta.bytes,
            sha256=meta.sha256,
            expires_at=expires_at,
            kept_until=self.blobs.kept_until(key),
        )


async def receive_images(
    requests: AsyncIterator[storage_pb2.StoreImagesRequest],
    authorize: Callable[[storage_pb2.StoreHeader], object] = lambda header: None,
) -> tuple[storage_pb2.StoreHeader, dict[int, bytearray]]:
    """The header and every image's bytes, checked whole. ``authorize`` sees the header
    first, so a refused call is refused before any image is buffered."""
    header: storage_pb2.StoreHeader | None = None
    buffers: dict[int, bytearray] = {}
    async for part in requests:
        if part.HasField("header"):
            if header is not None:
                raise ApiError(E.INVALID_PARAMETER, "second header in one stream")
            header = part.header
            _check_header(header)
            authorize(header)
            buffers = {meta.index: bytearray() for meta in header.images}
        elif header is None:
            raise ApiError(E.INVALID_PARAMETER, "chunk before header")
        else:
            buf = buffers.get(part.chunk.index)
            if buf is None:
                raise ApiError(E.INVALID_PARAMETER, f"chunk for unknown image {part.chunk.index}")
            buf += part.chunk.data
            if len(buf) > MAX_IMAGE_BYTES:
                raise ApiError(E.BODY_TOO_LARGE, "image exceeds the size limit")
    if header is None:
        raise ApiError(E.MISSING_PARAMETER, "empty stream: no header")
    for meta in header.images:
        data = buffers[meta.index]
        if len(data) != meta.bytes or await sha256_hex(data) != meta.sha256:
            raise ApiError(E.INVALID_PARAMETER, f"image {meta.index} arrived incomplete")
    return header, buffers


def _check_header(header: storage_pb2.StoreHeader) -> None:
    checked_id(header.task_id, "task", "task_id")  # it becomes the results' object keys
    if not header.images:
        raise ApiError(E.MISSING_PARAMETER, "no images", param="images")
    indexes = [m.index for m in header.images]
    if len(set(indexes)) != len(indexes):
        raise ApiError(E.INVALID_PARAMETER, "duplicate image index")
    for meta in header.images:
        if meta.format not in MIME_TYPES:
            raise ApiError(E.INVALID_PARAMETER, f"unsupported format {meta.format!r}")
