"""Object storage through the minio SDK. Its calls block, so they run in threads.

A write that fails for want of the bucket heals it (creates it again, where allowed) and
is tried once more; any failure of the endpoint becomes 90002 (retried by the caller) and
wakes ``watch_bucket``, which keeps storage's health check honest until writes work."""

from __future__ import annotations

import asyncio
import io
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from urllib.parse import urlsplit

from minio import Minio
from minio.error import S3Error
from prometheus_client import Histogram

from pixelrelay.errors import ApiError, E
from pixelrelay.metrics import FAST_BUCKETS
from storage.settings import StorageSettings

log = logging.getLogger(__name__)

OBJECT_PUT_SECONDS = Histogram(
    "pixelrelay_object_put_seconds",
    "Writing one object to the S3 endpoint (images, manifests, uploads)",
    buckets=FAST_BUCKETS,
)


def _client(endpoint: str, settings: StorageSettings) -> Minio:
    url = urlsplit(endpoint if "://" in endpoint else f"http://{endpoint}")
    return Minio(
        url.netloc,
        access_key=settings.s3_access_key.get_secret_value(),
        secret_key=settings.s3_secret_key.get_secret_value(),
        secure=url.scheme == "https",
        # A fixed region keeps presigning local (no bucket-location round trip).
        region=settings.s3_region,
    )


class BlobStore:
    def __init__(self, settings: StorageSettings):
        self.bucket = settings.s3_bucket
        self.ttl = settings.url_ttl_seconds
        self.create_bucket = settings.s3_create_bucket
        self._client = _client(settings.s3_endpoint, settings)
        self._signer = _client(settings.s3_public_endpoint or settings.s3_endpoint, settings)
        self.trouble = asyncio.Event()  # set by a failed call: watch_bucket looks at once

    async def ensure_bucket(self) -> None:
        """The bucket exists (created if missing and allowed); raises if it cannot."""

        def ensure() -> None:
            if not self._client.bucket_exists(bucket_name=self.bucket):
                if not self.create_bucket:
                    raise RuntimeError(f"bucket {self.bucket} does not exist")
                self._client.make_bucket(bucket_name=self.bucket)

        await asyncio.to_thread(ensure)

    async def heal(self) -> bool:
        """Whether the bucket is there to write to, after creating it if it was not."""
        try:
            await self.ensure_bucket()
        except Exception as exc:  # the endpoint down, no bucket, no right to make one
            log.warning("object storage unusable", extra={"error": type(exc).__name__})
            return False
        return True

    async def put(self, key: str, data: bytes, content_type: str) -> None:
        def write() -> None:
            self._client.put_object(
                bucket_name=self.bucket,
                object_name=key,
                data=io.BytesIO(data),
                length=len(data),
                content_type=content_type,
            )

        with OBJECT_PUT_SECONDS.time():
            try:
                await asyncio.to_thread(write)
            except S3Error as exc:
                if exc.code != "NoSuchBucket" or not await self.heal():
                    raise self._unavailable(exc) from exc
                await self._retry(write)
            except Exception as exc:  # connection refused, timeouts: the endpoint is away
                raise self._unavailable(exc) from exc

    async def _retry(self, write: Callable[[], None]) -> None:
        try:
            await asyncio.to_thread(write)
        except Exception as exc:
            raise self._unavailable(exc) from exc

    def _unavailable(self, exc: Exception) -> ApiError:
        log.warning("object storage failed", extra={"error": type(exc).__name__})
        self.trouble.set()
        return ApiError(E.UNAVAILABLE, "object storage is unavailable")

    async def get(self, key: str) -> bytes | None:
        """The object's bytes, or None if there is no such object."""

        def read() -> bytes | None:
            try:
                response = self._client.get_object(bucket_name=self.bucket, object_name=key)
            except S3Error as exc:
                if exc.code == "NoSuchKey":
                    return None
                raise
            try:
                return bytes(response.read())
            finally:
                response.close()
                response.release_conn()

        try:
            return await asyncio.to_thread(read)
        except Exception as exc:  # on the loop: the trouble Event is not thread-safe
            raise self._unavailable(exc) from exc

    def presign(self, key: str) -> tuple[str, int]:
        """A download URL that needs no credentials; the signature makes it unguessable."""
        url = self._signer.presigned_get_object(
            bucket_name=self.bucket, object_name=key, expires=timedelta(seconds=self.ttl)
        )
        return str(url), int(time.time()) + self.ttl


async def watch_bucket(
    blobs: BlobStore,
    report: Callable[[bool], Awaitable[None]],
    stop: asyncio.Event,
    every: float = 5.0,
) -> None:
    """Checks the bucket every ``every`` seconds, at once after a failed call, and every
    second while it is unusable; ``report(False)`` makes the health check NOT_SERVING
    until a check succeeds (after healing the bucket where allowed)."""
    serving = True
    while not stop.is_set():
        usable = await blobs.heal()
        if usable != serving:
            serving = usable
            log.warning("object storage usable again" if usable else "object storage unusable")
            await report(usable)
        blobs.trouble.clear()
        woken = asyncio.ensure_future(blobs.trouble.wait())
        stopping = asyncio.ensure_future(stop.wait())
        await asyncio.wait(
            [woken, stopping],
            timeout=every if serving else 1.0,
            return_when=asyncio.FIRST_COMPLETED,
        )
        woken.cancel()
        stopping.cancel()
