"""A stolen internal credential acts on one task at most (issue 24, part 4).

Each test replays an attack a red-team pass made with the dispatcher's service credential
or the gateway's NATS password against another tenant's task, and checks it is refused and
the victim's task, hold and objects are as they were."""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
import time
import uuid
from collections.abc import Awaitable
from typing import Any

import grpc
import httpx
import pytest

from pixelrelay import bus
from pixelrelay.callers import DISPATCHER, GATEWAY, credential_metadata
from pixelrelay.capabilities import TaskCapabilities, TaskGrant
from pixelrelay.errors import ApiError, E, ErrorKind
from pixelrelay.grpc_server import insecure_channel
from pixelrelay.sealing import PromptSealer, job_binding
from pixelrelay.storage_client import ImageBytes, StorageClient
from pixelrelay.v1 import (
    billing_pb2,
    billing_pb2_grpc,
    common_pb2,
    jobs_pb2,
    storage_pb2,
    storage_pb2_grpc,
)
from pixelrelay_sim.render import render_image
from tests.e2e.conftest import Platform
from tests.e2e.helpers import (
    bucket_keys,
    eventually,
    faults,
    new_account,
    poll_until_done,
    upstream_requests,
)

pytestmark = [pytest.mark.e2e, pytest.mark.security]


def stolen_storage(platform: Platform) -> StorageClient:
    """Storage, as whoever holds the dispatcher's credential."""
    return StorageClient(
        f"127.0.0.1:{platform.config.storage_port}", platform.config.credentials[DISPATCHER]
    )


def minted(
    platform: Platform, task_id: str, account_id: str, credits: int
) -> common_pb2.TaskCapability:
    """A capability as a gateway would issue it (the test holds the platform's key)."""
    keys = TaskCapabilities.parse(platform.config.task_capability_keys)
    return keys.issue(TaskGrant(task_id, account_id, credits, int(time.time()) + 3600))


def hold_expires_at(platform: Platform, task_id: str) -> int:
    with sqlite3.connect(platform.config.data_dir / "billing.db") as db:
        [(expires_at,)] = db.execute("SELECT expires_at FROM hold WHERE task_id = ?", (task_id,))
    return int(expires_at)


async def refusal(call: Awaitable[object]) -> ErrorKind:
    with pytest.raises(ApiError) as caught:
        await call
    return caught.value.kind


async def test_ids_with_paths_in_them_are_refused_as_invalid(platform: Platform) -> None:
    """`..` in a task id gave INTERNAL (an object key built from it); now every internal
    RPC refuses a malformed id as the caller's error before using it."""
    storage = stolen_storage(platform)
    forged = render_image("forged", 64, 64, "png")
    try:
        for task_id in ("task_a/../task_b", "../../etc", "task_a\n"):
            store = storage.store_images(
                task_id, [ImageBytes(forged, "png", 64, 64)], quality="high", upstream_ms=1
            )
            assert await refusal(store) == E.INVALID_PARAMETER, task_id
    finally:
        await storage.close()
    as_gateway = credential_metadata(platform.config.credentials[GATEWAY])
    async with insecure_channel(platform.config.billing_addr) as channel:
        billing = billing_pb2_grpc.BillingStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await billing.Release(
                billing_pb2.ReleaseRequest(task_id="task_a/../x"), metadata=as_gateway
            )
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    metadata = credential_metadata(platform.config.credentials[DISPATCHER])
    async with insecure_channel(f"127.0.0.1:{platform.config.storage_port}") as channel:
        stub = storage_pb2_grpc.StorageStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.Reannounce(
                storage_pb2.ReannounceRequest(task_id="task_a/.."), metadata=metadata
            )
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def victims_slow_task(platform: Platform, seconds: float) -> tuple[str, dict[str, str]]:
    """Another tenant's task, pending for ``seconds`` while the upstream works on it."""
    key = await new_account(platform, 1000)
    prompt = f"victim {uuid.uuid4().hex}"
    await faults(platform, {"kind": "latency", "match": prompt, "seconds": seconds})
    submitted = await platform.http.post(
        "/api/v1/images/generations",
        headers=platform.auth(key),
        json={"model": "gpt-image-2", "prompt": prompt},
    )
    assert submitted.status_code == 200, submitted.text
    return submitted.json()["id"], platform.auth(key)


async def publish_as_gateway(platform: Platform, job: jobs_pb2.GenerationJob) -> None:
    """Queue ``job`` with the gateway's NATS password, as whoever stole it would."""
    nc = await bus.connect(
        platform.config.nats_url, "attacker", "gateway", platform.config.nats_passwords["gateway"]
    )
    try:
        await nc.jetstream().publish(
            bus.job_subject(job.task_id),
            job.SerializeToString(),
            headers={"Nats-Msg-Id": uuid.uuid4().hex},
        )
    finally:
        await nc.close()


async def dead_lettered(platform: Platform, task_id: str, reason: str) -> None:
    """The job for ``task_id`` lands on the dead-letter subject with ``reason``."""

    async def kept() -> bool:
        async with platform.stack.bus() as admin_nc:
            try:
                last = await admin_nc.jetstream().get_last_msg(
                    bus.DEADLETTER_STREAM, bus.DEADLETTER_SUBJECT
                )
            except Exception:
                return False
        job = jobs_pb2.GenerationJob.FromString(last.data or b"")
        headers = last.headers or {}
        return job.task_id == task_id and headers.get(bus.REASON_HEADER) == reason

    await eventually(kept, f"the job on the dead-letter subject ({reason})", within=10)


async def test_a_forged_job_is_dead_lettered_without_touching_the_task(
    platform: Platform,
) -> None:
    """With the gateway's NATS password, a GenerationJob for a victim's pending task with a
    junk sealed prompt made the dispatcher claim the real hold and fail the task."""
    task_id, victim = await victims_slow_task(platform, 3)
    await asyncio.sleep(0.5)  # the real job is with the upstream
    forged = jobs_pb2.GenerationJob(
        task_id=task_id, account_id="acct_attacker", key_id="k0", sealed_prompt=b"\0" * 40
    )
    await publish_as_gateway(platform, forged)
    task = await poll_until_done(platform.http, task_id, victim)
    assert task["status"] == "completed", task  # not failed by the forgery
    assert task["credits"]["charged"] == task["credits"]["reserved"] > 0
    await dead_lettered(platform, task_id, "unopened")


async def test_a_sealed_job_without_its_tasks_capability_touches_nothing(
    platform: Platform,
) -> None:
    """Even with JOB_KEYS as well (a job the dispatcher opens), a job whose capability is
    another task's is refused by billing, dead-lettered, and the victim's task completes:
    it neither pays the upstream nor fails the task."""
    task_id, victim = await victims_slow_task(platform, 3)
    await asyncio.sleep(0.5)
    job = jobs_pb2.GenerationJob(
        task_id=task_id,
        account_id=platform.account_id,
        capability=minted(platform, "task_" + "b" * 22, platform.account_id, 7),
    )
    sealer = PromptSealer.parse(platform.config.job_keys)
    job.key_id, job.sealed_prompt = sealer.seal("forged", task_id, job_binding(job))
    await publish_as_gateway(platform, job)
    await dead_lettered(platform, task_id, "capability_refused")
    task = await poll_until_done(platform.http, task_id, victim)
    assert task["status"] == "completed", task
    assert await upstream_requests(platform, "forged") == 0


async def victims_completed_task(
    platform: Platform,
) -> tuple[str, dict[str, str], dict[str, Any]]:
    key = await new_account(platform, 1000)
    submitted = await platform.http.post(
        "/api/v1/images/generations",
        headers=platform.auth(key),
        json={"model": "gpt-image-2", "prompt": f"victim {uuid.uuid4().hex}"},
    )
    task_id = submitted.json()["id"]
    task = await poll_until_done(platform.http, task_id, platform.auth(key))
    assert task["status"] == "completed", task
    return task_id, platform.auth(key), task


async def test_a_completed_tasks_images_cannot_be_overwritten(platform: Platform) -> None:
    """With the dispatcher's credential, StoreImages overwrote tasks/<another tenant's
    completed task>/0.png: its URL served the attacker's image under the old SHA-256."""
    task_id, victim, task = await victims_completed_task(platform)
    [url] = task["output"]["image_urls"]
    async with httpx.AsyncClient() as download:
        original = (await download.get(url)).content
    forged = render_image("forged", 1024, 1024, "png")
    storage = stolen_storage(platform)
    try:
        images = [ImageBytes(forged, "png", 1024, 1024)]
        # the credential alone: no capability for the victim's task
        store = storage.store_images(task_id, images, quality="high", upstream_ms=1)
        assert await refusal(store) == E.TASK_CAPABILITY_INVALID
        # a capability of the attacker's own task does not name the victim's
        own = minted(platform, "task_" + "a" * 22, platform.account_id, 7)
        store = storage.store_images(task_id, images, quality="high", upstream_ms=1, capability=own)
        assert await refusal(store) == E.TASK_CAPABILITY_INVALID
        # even the victim's own job (a valid capability) never rewrites stored results
        valid = minted(platform, task_id, "acct_" + "v" * 22, task["credits"]["reserved"])
        store = storage.store_images(
            task_id, images, quality="high", upstream_ms=1, capability=valid
        )
        assert await refusal(store) == E.RESULTS_ALREADY_STORED
    finally:
        await storage.close()
    async with httpx.AsyncClient() as download:
        served = (await download.get(url)).content
    assert served == original and served != forged
    listed = (await platform.http.get(f"/api/v1/tasks/{task_id}", headers=victim)).json()
    assert hashlib.sha256(served).hexdigest() == listed["output"]["images"][0]["sha256"]


async def test_a_victims_hold_cannot_be_extended_by_the_caller(platform: Platform) -> None:
    """With the dispatcher's credential, ClaimHold once set a victim's pending hold to
    expire in the year 3000. The dispatcher calls no billing RPC now: its credential is
    refused by every one, the old ClaimHold is gone, and the deadline is billing's alone."""
    task_id, victim = await victims_slow_task(platform, 3)
    year_3000 = 32_503_680_000
    # ClaimHoldRequest as it was (task id, then the old `until` as field 2)
    old_claim = b"\x0a" + _varint(len(task_id)) + task_id.encode() + b"\x10" + _varint(year_3000)
    metadata = credential_metadata(platform.config.credentials[DISPATCHER])
    async with insecure_channel(platform.config.billing_addr) as channel:
        claim = channel.unary_unary(
            "/pixelrelay.v1.Billing/ClaimHold",
            request_serializer=lambda raw: raw,
            response_deserializer=billing_pb2.Hold.FromString,
        )
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await claim(old_claim, metadata=metadata, timeout=10)
        assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED
        billing = billing_pb2_grpc.BillingStub(channel)
        for call in (
            billing.Release(billing_pb2.ReleaseRequest(task_id=task_id), metadata=metadata),
            billing.ReserveMany(billing_pb2.ReserveManyRequest(), metadata=metadata),
        ):
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await call
            assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert hold_expires_at(platform, task_id) <= int(time.time()) + 3600 + 5
    done = await poll_until_done(platform.http, task_id, victim)
    assert done["status"] == "completed"


async def test_the_dispatcher_reads_only_the_inputs_of_its_task(platform: Platform) -> None:
    """With the dispatcher's credential, GetObject read any tenant's uploads and results."""
    task_id, victim, task = await victims_completed_task(platform)
    [result_key] = [k for k in bucket_keys(platform, f"tasks/{task_id}/") if k.endswith(".png")]
    upload = await platform.http.post(
        "/api/v1/uploads",
        headers=victim,
        files={"file": ("a.png", render_image("mine", 64, 64, "png"), "image/png")},
    )
    assert upload.status_code == 200, upload.text
    [upload_key] = bucket_keys(platform, f"uploads/{await _account_of(platform, victim)}/")
    storage = stolen_storage(platform)
    try:
        for key in (result_key, upload_key):
            assert await refusal(storage.get_object(key)) == E.TASK_CAPABILITY_INVALID, key
            own = minted(platform, task_id, "acct_" + "x" * 22, 7)  # even for that task
            assert await refusal(storage.get_object(key, own)) == E.TASK_CAPABILITY_INVALID
        reannounce = storage.reannounce(task_id)
        assert await refusal(reannounce) == E.TASK_CAPABILITY_INVALID
    finally:
        await storage.close()
    gateway = StorageClient(
        f"127.0.0.1:{platform.config.storage_port}", platform.config.credentials[GATEWAY]
    )
    try:  # the gateway reads as before: the uploads it serves, the results it relays
        assert await gateway.get_object(upload_key) and await gateway.get_object(result_key)
    finally:
        await gateway.close()


async def _account_of(platform: Platform, auth: dict[str, str]) -> str:
    return str((await platform.http.get("/api/v1/account", headers=auth)).json()["account_id"])


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)
