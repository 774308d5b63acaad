"""Storage against a real S3 API (moto's server): a bucket that disappears is made again,
or, where storage may not make it, reported NOT_SERVING until it is back."""

from __future__ import annotations

import asyncio

import pytest
from minio import Minio
from pydantic import SecretStr

from pixelrelay.errors import ApiError, E
from pixelrelay_storage.blobstore import BlobStore, watch_bucket
from pixelrelay_storage.settings import StorageSettings


def store(endpoint: str, *, create: bool) -> BlobStore:
    return BlobStore(
        StorageSettings(
            s3_endpoint=endpoint,
            s3_bucket="healing",
            s3_create_bucket=create,
            s3_access_key=SecretStr("k"),
            s3_secret_key=SecretStr("s"),
        )
    )


def empty_the_endpoint(endpoint: str) -> None:
    """What an S3 server that came back without its data looks like."""
    client = Minio(endpoint.removeprefix("http://"), "k", "s", secure=False, region="us-east-1")
    for obj in client.list_objects("healing", recursive=True):
        client.remove_object("healing", obj.object_name)
    client.remove_bucket("healing")


async def test_a_vanished_bucket_is_made_again_on_the_next_write(s3: str) -> None:
    blobs = store(s3, create=True)
    await blobs.ensure_bucket()
    await blobs.put("tasks/task_1/0.png", b"one", "image/png")
    empty_the_endpoint(s3)
    await blobs.put("tasks/task_2/0.png", b"two", "image/png")  # healed, then written
    assert await blobs.get("tasks/task_2/0.png") == b"two"


async def test_without_the_right_to_make_it_storage_is_not_serving_until_it_is_back(
    s3: str,
) -> None:
    blobs = store(s3, create=False)
    Minio(s3.removeprefix("http://"), "k", "s", secure=False, region="us-east-1").make_bucket(
        "healing"
    )
    reports: list[bool] = []

    async def report(serving: bool) -> None:
        reports.append(serving)

    stop = asyncio.Event()
    watch = asyncio.create_task(watch_bucket(blobs, report, stop, every=60))
    try:
        empty_the_endpoint(s3)
        with pytest.raises(ApiError) as refused:
            await blobs.put("tasks/task_1/0.png", b"x", "image/png")
        assert refused.value.kind is E.UNAVAILABLE  # retried by the dispatcher, not failed
        for _ in range(50):  # the failed write woke the watch at once, not in 60 s
            if reports:
                break
            await asyncio.sleep(0.1)
        assert reports == [False]
        Minio(s3.removeprefix("http://"), "k", "s", secure=False, region="us-east-1").make_bucket(
            "healing"
        )
        for _ in range(50):  # unusable: checked every second
            if reports[-1]:
                break
            await asyncio.sleep(0.1)
        assert reports == [False, True]
        await blobs.put("tasks/task_1/0.png", b"x", "image/png")
    finally:
        stop.set()
        await watch
