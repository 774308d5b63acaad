"""Data lifecycle with lifetimes of seconds: results, inputs and uploads disappear from
the object store (through storage's sweep: the development store, rclone, takes no lifecycle
rules), tasks then say when and list no URLs, task records go after their retention, and
the ledger balances throughout; per-account upload quotas answer 429 and 413."""

from __future__ import annotations

import io
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from PIL import Image

from pixelrelay.retention import DAY_SECONDS
from pixelrelay.v1 import public_api_pb2, public_api_pb2_grpc
from pixelrelay_sim.render import render_image
from tests.e2e.conftest import Platform, running_platform
from tests.e2e.helpers import bucket_keys, eventually, ledger_ok, new_account, poll_until_done

RESULT_TTL_S = 4
RETENTION_S = 12
QUOTA_COUNT = 2
QUOTA_BYTES = 60_000


def days(seconds: float) -> str:
    return repr(seconds / DAY_SECONDS)


@pytest.fixture(scope="module")
async def short_lived(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Platform]:
    data_dir: Path = tmp_path_factory.mktemp("lifecycle")
    async with running_platform(
        data_dir,
        allow_private=False,
        env={
            "RESULT_TTL_DAYS": days(RESULT_TTL_S),
            "UPLOAD_TTL_DAYS": days(RESULT_TTL_S),
            "OBJECT_SWEEP_INTERVAL": "1",
            "TASK_RETENTION_DAYS": days(RETENTION_S),
            "RECORD_SWEEP_INTERVAL": "1",
            "UPLOAD_QUOTA_COUNT": str(QUOTA_COUNT),
            "UPLOAD_QUOTA_BYTES": str(QUOTA_BYTES),
        },
    ) as running:
        yield running


async def upload(platform: Platform, png: bytes, key: str | None = None) -> httpx.Response:
    return await platform.http.post(
        "/api/v1/uploads", headers=platform.auth(key), files={"file": ("u.png", png, "image/png")}
    )


def noise_png(width: int, height: int) -> bytes:
    out = io.BytesIO()
    Image.frombytes("RGB", (width, height), os.urandom(width * height * 3)).save(out, "PNG")
    return out.getvalue()


async def get_status(url: str) -> int:
    async with httpx.AsyncClient() as anonymous:
        return (await anonymous.get(url)).status_code


async def test_results_inputs_and_records_expire_and_the_ledger_still_balances(
    short_lived: Platform,
) -> None:
    platform = short_lived
    uploaded = await upload(platform, render_image("reference", 512, 512, "png"))
    assert uploaded.status_code == 200, uploaded.text
    upload_url = uploaded.json()["url"]
    submitted = await platform.http.post(
        "/api/v1/images/generations",
        headers=platform.auth(),
        json={"model": "gpt-image-2", "prompt": "a lighthouse", "image_urls": [upload_url]},
    )
    assert submitted.status_code == 200, submitted.text
    task_id = submitted.json()["id"]
    task = await poll_until_done(platform.http, task_id, platform.auth())
    assert task["status"] == "completed", task
    assert task["expired_at"] is None
    [url] = task["output"]["image_urls"]
    assert await get_status(url) == 200
    stored = bucket_keys(platform, f"tasks/{task_id}/")
    assert any("/inputs/" in k for k in stored) and any(k.endswith(".png") for k in stored)

    async def expired() -> dict[str, Any] | None:
        body: dict[str, Any] = (
            await platform.http.get(f"/api/v1/tasks/{task_id}", headers=platform.auth())
        ).json()
        return body if body["expired_at"] else None

    await eventually(expired, "the task reports its images expired", within=RESULT_TTL_S + 5)
    gone = await expired()
    assert gone is not None
    assert gone["status"] == "completed"
    assert gone["credits"]["charged"] == gone["credits"]["reserved"] > 0
    assert gone["output"] == {"image_urls": [], "images": []}
    assert gone["expired_at"] == gone["expires_at"]
    assert gone["expired_at"] <= time.time() + 1
    # The same over gRPC.
    meta = (("authorization", f"Bearer {platform.api_key}"),)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{platform.config.grpc_port}") as channel:
        stub = public_api_pb2_grpc.PublicApiStub(channel)
        over_grpc = await stub.GetTask(public_api_pb2.GetTaskRequest(id=task_id), metadata=meta)
    assert (over_grpc.expired_at, len(over_grpc.images)) == (gone["expired_at"], 0)

    async def swept() -> bool:
        return not bucket_keys(platform, f"tasks/{task_id}/") and not bucket_keys(
            platform, f"uploads/{platform.account_id}/"
        )

    await eventually(swept, "the sweep deletes results, inputs and the upload", within=5)
    # The old URL fails at the object store: expired, as S3 answers (403), and gone.
    assert await get_status(url) == 403
    again = await platform.http.post(
        "/api/v1/images/generations",
        headers=platform.auth(),
        json={"model": "gpt-image-2", "prompt": "again", "image_urls": [upload_url]},
    )
    assert again.status_code == 404, again.text
    assert again.json()["error"]["code"] == 40006  # upload_not_found; nothing held
    balance = (await platform.http.get("/api/v1/account", headers=platform.auth())).json()
    assert balance["held"] == 0

    async def record_gone() -> bool:
        answer = await platform.http.get(f"/api/v1/tasks/{task_id}", headers=platform.auth())
        return answer.status_code == 404

    await eventually(record_gone, "the task record is deleted", within=RETENTION_S + 5)
    usage = await platform.http.get("/api/v1/usage", headers=platform.auth())
    assert task_id in {e["task_id"] for e in usage.json()["data"]}  # the ledger keeps it
    await ledger_ok(platform)


async def test_uploads_beyond_the_accounts_quota_are_refused_naming_it(
    short_lived: Platform,
) -> None:
    platform = short_lived
    key = await new_account(platform, grant=100)
    small = [render_image(f"small {i}", 64, 64, "png") for i in range(QUOTA_COUNT + 1)]
    for png in small[:QUOTA_COUNT]:
        assert (await upload(platform, png, key)).status_code == 200
    # The same bytes again are the same upload: refreshed, not counted twice.
    assert (await upload(platform, small[0], key)).status_code == 200

    refused = await upload(platform, small[-1], key)
    assert refused.status_code == 429, refused.text
    error = refused.json()["error"]
    assert (error["code"], error["type"]) == (50003, "upload_count_quota")
    assert f"at most {QUOTA_COUNT} uploads" in error["message"]
    assert 1 <= int(refused.headers["retry-after"]) <= RESULT_TTL_S

    # Once the oldest are deleted, there is room again.
    async def admitted() -> bool:
        return (await upload(platform, small[-1], key)).status_code == 200

    await eventually(admitted, "an upload admitted after the oldest expired", within=10)


async def test_an_upload_larger_than_the_storage_left_is_413(short_lived: Platform) -> None:
    platform = short_lived
    key = await new_account(platform, grant=100)
    noisy = noise_png(200, 200)  # noise does not compress: ~120 kB
    assert len(noisy) > QUOTA_BYTES, "the test image must exceed the quota"
    refused = await upload(platform, noisy, key)
    assert refused.status_code == 413, refused.text
    error = refused.json()["error"]
    assert (error["code"], error["type"], error["param"]) == (50004, "upload_storage_quota", "file")
    assert f"at most {QUOTA_BYTES} bytes" in error["message"]
