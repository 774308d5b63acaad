"""A stolen internal credential acts on one task at most (issue 24, part 4).

Each test replays an attack a red-team pass made with the dispatcher's service credential
or the gateway's NATS password against another tenant's task, and checks it is refused and
the victim's task, hold and objects are as they were."""

from __future__ import annotations

from collections.abc import Awaitable

import grpc
import pytest

from pixelrelay.callers import DISPATCHER, credential_metadata
from pixelrelay.errors import ApiError, E, ErrorKind
from pixelrelay.grpc_server import insecure_channel
from pixelrelay.storage_client import ImageBytes, StorageClient
from pixelrelay.v1 import billing_pb2, billing_pb2_grpc, storage_pb2, storage_pb2_grpc
from tests.e2e.conftest import Platform
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
