"""Object storage through the minio SDK. Its calls block, so they run in threads.

A write that fails for want of the bucket heals it (creates it again, where allowed) and
is tried once more; any failure of the endpoint becomes 90002 (retried by the caller) and
wakes ``watch_bucket``, which keeps storage's health check honest until writes work.

Every object has a lifetime by its prefix (``Lifetimes``): its download URL lasts no
longer, and once it is over the object reads as gone, whether or not the endpoint or the
sweeper (retention.py) has deleted it yet."""

from __future__ import annotations

import asyncio
import io
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit

from minio import Minio
from minio.deleteobjects import DeleteObject
from minio.error import S3Error
from minio.lifecycleconfig import LifecycleConfig, Rule
from prometheus_client import Histogram

from pixelrelay.errors import ApiError, E
from pixelrelay.metrics import FAST_BUCKETS
from pixelrelay.objects import TASKS_PREFIX, UPLOADS_PREFIX
from pixelrelay.retention import url_seconds
from pixelrelay_storage.settings import StorageSettings

log = logging.getLogger(__name__)

OBJECT_PUT_SECONDS = Histogram(
    "pixelrelay_object_put_seconds",
    "Writing one object to the S3 endpoint (images, uploads)",
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


@dataclass(frozen=True)
class Lifetimes:
    """Seconds each kind of object is kept, by key prefix."""

    results: int
    uploads: int

    @classmethod
    def of(cls, settings: StorageSettings) -> Lifetimes:
        return cls(results=settings.result_ttl_seconds, uploads=settings.upload_ttl_seconds)

    def by_prefix(self) -> dict[str, int]:
        return {TASKS_PREFIX: self.results, UPLOADS_PREFIX: self.uploads}

    def of_key(self, key: str) -> int:
        return self.uploads if key.startswith(UPLOADS_PREFIX) else self.results


@dataclass(frozen=True)
class StoredObject:
    key: str
    modified_at: float  # unix seconds


class BlobStore:
    def __init__(self, settings: StorageSettings):
        self.bucket = settings.s3_bucket
        self.lifetimes = Lifetimes.of(settings)
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
        """The object's bytes, or None if there is no such object or its lifetime is over."""

        def read() -> bytes | None:
            try:
                response = self._client.get_object(bucket_name=self.bucket, object_name=key)
            except S3Error as exc:
                if exc.code == "NoSuchKey":
                    return None
                raise
            try:
                modified = response.headers.get("Last-Modified")
                if modified and self._expired(key, parsedate_to_datetime(modified).timestamp()):
                    return None
                return bytes(response.read())
            finally:
                response.close()
                response.release_conn()

        try:
            return await asyncio.to_thread(read)
        except Exception as exc:  # on the loop: the trouble Event is not thread-safe
            raise self._unavailable(exc) from exc

    async def exists(self, key: str) -> bool:
        """Whether there is an object under ``key`` (past its lifetime or not)."""

        def stat() -> bool:
            try:
                self._client.stat_object(bucket_name=self.bucket, object_name=key)
            except S3Error as exc:
                if exc.code in ("NoSuchKey", "NoSuchObject", "ResourceNotFound"):
                    return False
                raise
            return True

        try:
            return await asyncio.to_thread(stat)
        except Exception as exc:
            raise self._unavailable(exc) from exc

    def _expired(self, key: str, modified_at: float, now: float | None = None) -> bool:
        return (now or time.time()) >= modified_at + self.lifetimes.of_key(key)

    def presign(self, key: str) -> tuple[str, int]:
        """A download URL that needs no credentials; the signature makes it unguessable.
        It lasts as long as the object (at most S3's seven days)."""
        ttl = url_seconds(self.lifetimes.of_key(key))
        url = self._signer.presigned_get_object(
            bucket_name=self.bucket, object_name=key, expires=timedelta(seconds=ttl)
        )
        return str(url), int(time.time()) + ttl

    def kept_until(self, key: str) -> int:
        """When an object written now is deleted (unix seconds)."""
        return int(time.time()) + self.lifetimes.of_key(key)

    async def expired(self, prefix: str, now: float) -> list[str]:
        """The keys under ``prefix`` whose lifetime is over at ``now``."""

        objects = await self._list(prefix)
        return [o.key for o in objects if self._expired(o.key, o.modified_at, now)]

    async def keys(self, prefix: str) -> list[str]:
        """Every key under ``prefix``."""
        return [o.key for o in await self._list(prefix)]

    async def _list(self, prefix: str) -> list[StoredObject]:
        def listing() -> list[StoredObject]:
            return [
                StoredObject(obj.object_name, obj.last_modified.timestamp())
                for obj in self._client.list_objects(self.bucket, prefix=prefix, recursive=True)
                if obj.object_name and obj.last_modified
            ]

        try:
            return await asyncio.to_thread(listing)
        except Exception as exc:
            raise self._unavailable(exc) from exc

    async def lifecycle_rules(self) -> list[Rule]:
        config = await asyncio.to_thread(self._client.get_bucket_lifecycle, self.bucket)
        return list(config.rules) if config else []

    async def set_lifecycle_rules(self, rules: list[Rule]) -> None:
        await asyncio.to_thread(
            self._client.set_bucket_lifecycle, self.bucket, LifecycleConfig(rules)
        )

    async def delete(self, keys: Sequence[str]) -> None:
        """Delete ``keys`` (a missing one is not an error), 1,000 per request."""

        def remove() -> None:
            for start in range(0, len(keys), 1000):
                batch = [DeleteObject(k) for k in keys[start : start + 1000]]
                errors = list(self._client.remove_objects(self.bucket, batch))
                if errors:
                    raise RuntimeError(f"{len(errors)} objects not deleted: {errors[0].code}")

        try:
            await asyncio.to_thread(remove)
        except Exception as exc:
            raise self._unavailable(exc) from exc


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
