"""Typed client for the storage service; big payloads always travel as 1 MiB chunks."""

from __future__ import annotations

import hashlib
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from pixelrelay.callers import credential_metadata
from pixelrelay.errors import peer_errors
from pixelrelay.grpc_server import call_options, insecure_channel
from pixelrelay.hashing import sha256_hex
from pixelrelay.objects import chunks
from pixelrelay.v1 import common_pb2, storage_pb2, storage_pb2_grpc


@dataclass(frozen=True)
class ImageBytes:
    data: bytes
    format: str
    width: int
    height: int

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


class StorageClient:
    """Each call presents ``credential`` (callers.py)."""

    def __init__(self, addr: str, credential: str, timeout: float = 120.0):
        self._channel = insecure_channel(addr)
        self._health = health_pb2_grpc.HealthStub(self._channel)
        self._serving = (True, 0.0)  # the last answer, and until when it stands
        self._stub = storage_pb2_grpc.StorageStub(self._channel)
        self._metadata = credential_metadata(credential)
        self.timeout = timeout

    def _options(self, timeout: float | None = None) -> dict[str, Any]:
        return call_options(timeout or self.timeout, self._metadata)

    async def serving(self) -> bool:
        """Whether storage can write now (it reports NOT_SERVING while its bucket is
        unusable); asked at most once a second."""
        serving, until = self._serving
        now = time.monotonic()
        if now < until:
            return serving
        try:
            reply = await self._health.Check(health_pb2.HealthCheckRequest(service=""), timeout=2)
            serving = reply.status == health_pb2.HealthCheckResponse.SERVING
        except grpc.aio.AioRpcError:
            serving = False
        self._serving = (serving, now + 1.0)
        return serving

    async def close(self) -> None:
        await self._channel.close()

    async def store_images(
        self,
        task_id: str,
        images: Sequence[ImageBytes],
        *,
        quality: str,
        upstream_ms: int,
        attempts: Sequence[common_pb2.Attempt] = (),
        usage: common_pb2.Usage | None = None,
        capability: common_pb2.TaskCapability | None = None,
    ) -> list[common_pb2.StoredImage]:
        """Write a task's outputs, with the job's capability for the task; storage then
        announces the task completed."""
        digests = [await sha256_hex(img.data) for img in images]
        header = storage_pb2.StoreHeader(
            task_id=task_id,
            capability=capability,
            quality=quality,
            upstream_ms=upstream_ms,
            attempts=attempts,
            usage=usage,
            images=[
                storage_pb2.ImageMeta(
                    index=i,
                    format=img.format,
                    width=img.width,
                    height=img.height,
                    bytes=len(img.data),
                    sha256=digest,
                )
                for i, (img, digest) in enumerate(zip(images, digests, strict=True))
            ],
        )

        async def parts() -> AsyncIterator[storage_pb2.StoreImagesRequest]:
            yield storage_pb2.StoreImagesRequest(header=header)
            for index, image in enumerate(images):
                for chunk in chunks(image.data):
                    yield storage_pb2.StoreImagesRequest(
                        chunk=storage_pb2.ImageChunk(index=index, data=chunk)
                    )

        with peer_errors():
            reply = await self._stub.StoreImages(parts(), **self._options())
        return list(reply.images)

    async def put_object(
        self, key: str, data: bytes, content_type: str
    ) -> storage_pb2.StoredObject:
        header = storage_pb2.ObjectHeader(
            key=key,
            content_type=content_type,
            bytes=len(data),
            sha256=await sha256_hex(data),
        )

        async def parts() -> AsyncIterator[storage_pb2.PutObjectRequest]:
            yield storage_pb2.PutObjectRequest(header=header)
            for chunk in chunks(data):
                yield storage_pb2.PutObjectRequest(data=chunk)

        with peer_errors():
            reply: storage_pb2.StoredObject = await self._stub.PutObject(
                parts(),
                **self._options(),
            )
        return reply

    async def get_object(
        self, key: str, capability: common_pb2.TaskCapability | None = None
    ) -> bytes:
        """An object's bytes: the gateway reads with its credential alone, a dispatcher
        only its task's inputs, with the job's capability."""
        data = bytearray()
        with peer_errors():
            async for chunk in self._stub.GetObject(
                storage_pb2.GetObjectRequest(key=key, capability=capability),
                **self._options(),
            ):
                data += chunk.data
        return bytes(data)

    async def delete_prefixes(self, prefixes: list[str]) -> int:
        """Delete every object under ``prefixes`` (objects.py: an account's uploads, a
        task's objects); how many there were."""
        with peer_errors():
            reply = await self._stub.DeletePrefixes(
                storage_pb2.DeletePrefixesRequest(prefixes=prefixes), **self._options(60)
            )
        return int(reply.deleted)

    async def find_missing(self, keys: list[str]) -> list[str]:
        """Which of these result keys have no object (the gateway's object audit)."""
        with peer_errors():
            reply = await self._stub.FindMissing(
                storage_pb2.FindMissingRequest(keys=keys), **self._options(60)
            )
        return list(reply.missing)

    async def reannounce(
        self, task_id: str, capability: common_pb2.TaskCapability | None = None
    ) -> bool:
        """Whether the task's images were already stored (then completion is re-announced)."""
        with peer_errors():
            reply = await self._stub.Reannounce(
                storage_pb2.ReannounceRequest(task_id=task_id, capability=capability),
                **self._options(30),
            )
        return bool(reply.found)
