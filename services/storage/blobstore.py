"""Object storage through the minio SDK. Its calls block, so they run in threads."""

from __future__ import annotations

import asyncio
import io
import time
from datetime import timedelta
from urllib.parse import urlsplit

from minio import Minio
from minio.error import S3Error
from prometheus_client import Histogram

from pixelrelay.metrics import FAST_BUCKETS
from storage.settings import StorageSettings

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
        self._client = _client(settings.s3_endpoint, settings)
        self._signer = _client(settings.s3_public_endpoint or settings.s3_endpoint, settings)

    async def ensure_bucket(self) -> None:
        def ensure() -> None:
            if not self._client.bucket_exists(bucket_name=self.bucket):
                self._client.make_bucket(bucket_name=self.bucket)

        await asyncio.to_thread(ensure)

    async def put(self, key: str, data: bytes, content_type: str) -> None:
        with OBJECT_PUT_SECONDS.time():
            await asyncio.to_thread(
                self._client.put_object,
                bucket_name=self.bucket,
                object_name=key,
                data=io.BytesIO(data),
                length=len(data),
                content_type=content_type,
            )

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

        return await asyncio.to_thread(read)

    def presign(self, key: str) -> tuple[str, int]:
        """A download URL that needs no credentials; the signature makes it unguessable."""
        url = self._signer.presigned_get_object(
            bucket_name=self.bucket, object_name=key, expires=timedelta(seconds=self.ttl)
        )
        return str(url), int(time.time()) + self.ttl
