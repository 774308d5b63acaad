"""Objects live as long as their prefix's lifetime, on a real S3 API (moto's server):
lifecycle rules set once and kept beside the operator's own, reads that treat an expired
object as gone, and the sweep that deletes what moto (which stores rules but never
applies them) leaves behind."""

from __future__ import annotations

import asyncio
import time
from urllib.parse import parse_qs, urlsplit

import pytest
from minio import Minio
from minio.commonconfig import ENABLED, Filter
from minio.lifecycleconfig import Expiration, LifecycleConfig, Rule
from pydantic import SecretStr

from pixelrelay.retention import DAY_SECONDS
from pixelrelay_storage.blobstore import BlobStore
from pixelrelay_storage.retention import apply_lifecycle_rules, sweep_expired
from pixelrelay_storage.settings import StorageSettings

BUCKET = "retention"


def store(endpoint: str, *, results_s: float, uploads_s: float, bucket: str = BUCKET) -> BlobStore:
    return BlobStore(
        StorageSettings(
            s3_endpoint=endpoint,
            s3_bucket=bucket,
            s3_access_key=SecretStr("k"),
            s3_secret_key=SecretStr("s"),
            result_ttl_days=results_s / DAY_SECONDS,
            upload_ttl_days=uploads_s / DAY_SECONDS,
        )
    )


def minio(endpoint: str) -> Minio:
    return Minio(endpoint.removeprefix("http://"), "k", "s", secure=False, region="us-east-1")


def lifecycle(endpoint: str) -> dict[str, tuple[str | None, int | None]]:
    config = minio(endpoint).get_bucket_lifecycle(BUCKET)
    assert config is not None
    return {
        r.rule_id or "": (
            r.rule_filter.prefix if r.rule_filter else None,
            r.expiration.days if r.expiration else None,
        )
        for r in config.rules
    }


async def test_lifecycle_rules_are_set_once_in_whole_days_beside_the_operators(s3: str) -> None:
    blobs = store(s3, results_s=3 * DAY_SECONDS, uploads_s=2)
    await blobs.ensure_bucket()
    operators = Rule(
        ENABLED,
        rule_filter=Filter(prefix="logs/"),
        rule_id="theirs",
        expiration=Expiration(days=30),
    )
    minio(s3).set_bucket_lifecycle(BUCKET, LifecycleConfig([operators]))

    assert await apply_lifecycle_rules(blobs)
    assert lifecycle(s3) == {
        "theirs": ("logs/", 30),
        "pixelrelay-results": ("tasks/", 3),
        "pixelrelay-uploads": ("uploads/", 1),  # 2 s rounds up: never deleted early
    }
    # A second replica starting finds them in place and leaves them be.
    assert await apply_lifecycle_rules(blobs)
    assert len(lifecycle(s3)) == 3
    # A changed setting replaces our rule, not the operator's.
    await apply_lifecycle_rules(store(s3, results_s=10 * DAY_SECONDS, uploads_s=2))
    assert lifecycle(s3)["pixelrelay-results"] == ("tasks/", 10)
    assert lifecycle(s3)["theirs"] == ("logs/", 30)


async def test_an_endpoint_that_refuses_lifecycle_rules_leaves_the_sweep_to_it(
    s3: str, caplog: pytest.LogCaptureFixture
) -> None:
    blobs = store(s3, results_s=60, uploads_s=60, bucket="never-made")
    assert not await apply_lifecycle_rules(blobs)  # NoSuchBucket here; AccessDenied elsewhere
    assert "the object sweep deletes expired objects" in caplog.text


async def test_expired_objects_read_as_gone_and_the_sweep_deletes_them(s3: str) -> None:
    blobs = store(s3, results_s=2, uploads_s=3600)
    await blobs.ensure_bucket()
    result, task_input = "tasks/task_1/0.png", "tasks/task_1/inputs/ref0.png"
    upload = "uploads/acct_1/upl_1.png"
    for key in (result, task_input, upload):
        await blobs.put(key, b"bytes", "image/png")
    assert await blobs.get(task_input) == b"bytes"
    assert await sweep_expired(blobs) == 0

    await asyncio.sleep(3.1)  # past the results' lifetime (S3 times are whole seconds)
    assert await blobs.get(task_input) is None  # before any sweep: gone to every reader
    assert await blobs.get(upload) == b"bytes"
    assert await sweep_expired(blobs) == 2
    assert await blobs.keys("") == [upload]
    # An hour on, the upload's lifetime is over too.
    assert await sweep_expired(blobs, now=time.time() + 3600) == 1
    assert await blobs.keys("") == []


async def test_a_download_url_lasts_as_long_as_its_object_at_most_seven_days(s3: str) -> None:
    blobs = store(s3, results_s=90, uploads_s=30 * DAY_SECONDS)
    await blobs.ensure_bucket()
    for key, seconds in (("tasks/task_1/0.png", 90), ("uploads/acct_1/upl_1.png", 7 * DAY_SECONDS)):
        url, expires_at = blobs.presign(key)
        assert parse_qs(urlsplit(url).query)["X-Amz-Expires"] == [str(seconds)]
        assert abs(expires_at - (time.time() + seconds)) <= 2
