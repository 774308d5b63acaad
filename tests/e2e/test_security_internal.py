"""A stolen internal credential acts on one task at most (issue 24, part 4).

Each test replays an attack a red-team pass made with the dispatcher's service credential
or the gateway's NATS password against another tenant's task, and checks it is refused and
the victim's task, hold and objects are as they were."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable

import grpc
import pytest

from pixelrelay import bus
from pixelrelay.callers import DISPATCHER, credential_metadata
from pixelrelay.errors import ApiError, E, ErrorKind
from pixelrelay.grpc_server import insecure_channel
from pixelrelay.storage_client import ImageBytes, StorageClient
from pixelrelay.v1 import billing_pb2, billing_pb2_grpc, jobs_pb2, storage_pb2, storage_pb2_grpc
from tests.e2e.conftest import Platform
from tests.e2e.helpers import eventually, faults, new_account, poll_until_done
from upstream_sim.render import render_image

pytestmark = [pytest.mark.e2e, pytest.mark.security]


def stolen_storage(platform: Platform) -> StorageClient:
    """Storage, as whoever holds the dispatcher's credential."""
    return StorageClient(
        f"127.0.0.1:{platform.config.storage_port}", platform.config.credentials[DISPATCHER]
    )


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
    metadata = credential_metadata(platform.config.credentials[DISPATCHER])
    async with insecure_channel(platform.config.billing_addr) as channel:
        billing = billing_pb2_grpc.BillingStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await billing.ClaimHold(
                billing_pb2.ClaimHoldRequest(task_id="task_a/../x"), metadata=metadata
            )
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
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


async def test_a_forged_job_is_dead_lettered_without_touching_the_task(
    platform: Platform,
) -> None:
    """With the gateway's NATS password, a GenerationJob for a victim's pending task with a
    junk sealed prompt made the dispatcher claim the real hold and fail the task."""
    task_id, victim = await victims_slow_task(platform, 3)
    forged = jobs_pb2.GenerationJob(
        task_id=task_id,
        account_id="acct_attacker",
        key_id="k0",
        sealed_prompt=b"\0" * 40,
    )
    await asyncio.sleep(0.5)  # the real job is with the upstream
    nc = await bus.connect(
        platform.config.nats_url,
        "attacker",
        "gateway",
        platform.config.nats_passwords["gateway"],
    )
    try:
        js = nc.jetstream()
        await js.publish(
            bus.JOBS_SUBJECT, forged.SerializeToString(), headers={"Nats-Msg-Id": uuid.uuid4().hex}
        )
    finally:
        await nc.close()

    async def dead_lettered() -> bool:
        async with platform.stack.bus() as admin_nc:
            try:
                kept = await admin_nc.jetstream().get_last_msg(
                    bus.DEADLETTER_STREAM, bus.DEADLETTER_SUBJECT
                )
            except Exception:
                return False
        job = jobs_pb2.GenerationJob.FromString(kept.data or b"")
        headers = kept.headers or {}
        return job.task_id == task_id and headers.get(bus.REASON_HEADER) == "unopened"

    task = await poll_until_done(platform.http, task_id, victim)
    assert task["status"] == "completed", task  # not failed by the forgery
    assert task["credits"]["charged"] == task["credits"]["reserved"] > 0
    await eventually(dead_lettered, "the forged job on the dead-letter subject", within=10)
