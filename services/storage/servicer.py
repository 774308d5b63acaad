"""StoreImages: reassemble the streamed images, verify them, write them, announce them."""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import AsyncIterator

import grpc
from nats.js import JetStreamContext
from prometheus_client import Counter

from pixelrelay.bus import publish_event
from pixelrelay.errors import ApiError, E
from pixelrelay.v1 import common_pb2, events_pb2, storage_pb2, storage_pb2_grpc
from storage.blobstore import BlobStore

log = logging.getLogger(__name__)

STORED_IMAGES = Counter("pixelrelay_stored_images_total", "Images written", ["format"])
STORED_BYTES = Counter("pixelrelay_stored_bytes_total", "Bytes written to object storage")

CONTENT_TYPES = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}
MAX_IMAGE_BYTES = 64 * 1024 * 1024


def object_key(task_id: str, index: int, fmt: str) -> str:
    # Same key on a redelivered job: a retry overwrites instead of duplicating.
    return f"tasks/{task_id}/{index}.{'jpg' if fmt == 'jpeg' else fmt}"


class StorageServicer(storage_pb2_grpc.StorageServicer):
    def __init__(self, blobs: BlobStore, js: JetStreamContext):
        self.blobs = blobs
        self.js = js

    async def StoreImages(
        self,
        request_iterator: AsyncIterator[storage_pb2.StoreImagesRequest],
        context: grpc.aio.ServicerContext,
    ) -> storage_pb2.StoreImagesResponse:
        header, buffers = await _receive(request_iterator)
        stored = await asyncio.gather(
            *(
                self._store(header.task_id, meta, bytes(buffers[meta.index]))
                for meta in header.images
            )
        )
        event = events_pb2.TaskEvent(
            task_id=header.task_id,
            completed=events_pb2.TaskCompleted(
                images=stored, quality=header.quality, upstream_ms=header.upstream_ms
            ),
        )
        await publish_event(self.js, event)
        log.info(
            "task images stored",
            extra={
                "task_id": header.task_id,
                "images": len(stored),
                "bytes": sum(i.bytes for i in stored),
            },
        )
        return storage_pb2.StoreImagesResponse(images=stored)

    async def _store(
        self, task_id: str, meta: storage_pb2.ImageMeta, data: bytes
    ) -> common_pb2.StoredImage:
        key = object_key(task_id, meta.index, meta.format)
        await self.blobs.put(key, data, CONTENT_TYPES[meta.format])
        STORED_IMAGES.labels(meta.format).inc()
        STORED_BYTES.inc(len(data))
        url, expires_at = self.blobs.presign(key)
        return common_pb2.StoredImage(
            index=meta.index,
            key=key,
            url=url,
            content_type=CONTENT_TYPES[meta.format],
            format=meta.format,
            width=meta.width,
            height=meta.height,
            bytes=len(data),
            sha256=meta.sha256,
            expires_at=expires_at,
        )


async def _receive(
    requests: AsyncIterator[storage_pb2.StoreImagesRequest],
) -> tuple[storage_pb2.StoreHeader, dict[int, bytearray]]:
    header: storage_pb2.StoreHeader | None = None
    buffers: dict[int, bytearray] = {}
    async for part in requests:
        if part.HasField("header"):
            if header is not None:
                raise ApiError(E.INVALID_PARAMETER, "second header in one stream")
            header = part.header
            _check_header(header)
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
        if len(data) != meta.bytes or hashlib.sha256(data).hexdigest() != meta.sha256:
            raise ApiError(E.INVALID_PARAMETER, f"image {meta.index} arrived incomplete")
    return header, buffers


def _check_header(header: storage_pb2.StoreHeader) -> None:
    if not header.task_id:
        raise ApiError(E.MISSING_PARAMETER, "task_id is required", param="task_id")
    if not header.images:
        raise ApiError(E.MISSING_PARAMETER, "no images", param="images")
    indexes = [m.index for m in header.images]
    if len(set(indexes)) != len(indexes):
        raise ApiError(E.INVALID_PARAMETER, "duplicate image index")
    for meta in header.images:
        if meta.format not in CONTENT_TYPES:
            raise ApiError(E.INVALID_PARAMETER, f"unsupported format {meta.format!r}")
