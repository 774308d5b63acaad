"""Attacks on the public surface that a security sweep found to work, replayed: each test
here failed before its fix."""

from __future__ import annotations

import contextlib
import uuid

import grpc
import httpx
import nats.errors
import pytest

from pixelrelay import bus
from pixelrelay.limits import MAX_UNIX_SECONDS
from pixelrelay.v1 import events_pb2, public_api_pb2, public_api_pb2_grpc
from tests.e2e.conftest import Platform
from tests.e2e.helpers import eventually

pytestmark = [pytest.mark.e2e, pytest.mark.security]


@pytest.mark.parametrize(
    ("method", "request_", "param"),
    [
        ("ListUsage", public_api_pb2.ListUsageRequest(since=2**62), "since"),
        ("ListUsage", public_api_pb2.ListUsageRequest(until=MAX_UNIX_SECONDS + 1), "until"),
        ("CreateKey", public_api_pb2.CreateKeyRequest(expires_at=2**62), "expires_at"),
        ("CreateKey", public_api_pb2.CreateKeyRequest(expires_at=-1), "expires_at"),
    ],
)
async def test_grpc_gets_the_same_bounds_as_rest(
    platform: Platform, method: str, request_: object, param: str
) -> None:
    """Out-of-range timestamps once reached datetime and came back INTERNAL."""
    meta = (("authorization", f"Bearer {platform.api_key}"),)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{platform.config.grpc_port}") as channel:
        stub = public_api_pb2_grpc.PublicApiStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await getattr(stub, method)(request_, metadata=meta, timeout=10)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, caught.value.details()
    trailers = dict(caught.value.trailing_metadata() or ())
    assert (trailers["pixelrelay-error-code"], trailers["pixelrelay-error-param"]) == (
        "20003",
        param,
    )


async def test_poison_events_are_dead_lettered_not_retried_forever(platform: Platform) -> None:
    """Undecodable bytes, an event for no task and one without a kind were once nak'ed about
    once a second without end."""
    run = uuid.uuid4().hex[:10]
    unknown = events_pb2.TaskEvent(
        task_id=f"task_unknown{run}", completed=events_pb2.TaskCompleted(quality="high")
    )
    poison = {
        f"garbage {run}".encode() + b"\xff\xfe": "undecodable",
        unknown.SerializeToString(): "hold_not_found",
        events_pb2.TaskEvent(task_id=f"task_nokind{run}").SerializeToString(): "no_kind",
    }
    async with platform.stack.bus() as nc:
        js = nc.jetstream()
        before = await js.consumer_info(bus.EVENTS_STREAM, bus.GATEWAY_EVENTS_CONSUMER)
        for i, data in enumerate(poison):
            await js.publish(
                f"{bus.EVENTS_PREFIX}.completed", data, headers={"Nats-Msg-Id": f"{run}.{i}"}
            )
        dead = await js.pull_subscribe(bus.DEADLETTER_EVENTS_SUBJECT, stream=bus.DEADLETTER_STREAM)
        found: dict[bytes, str] = {}

        async def all_dead() -> bool:
            with contextlib.suppress(nats.errors.TimeoutError):
                for msg in await dead.fetch(50, timeout=0.5):
                    found[msg.data] = (msg.headers or {}).get(bus.REASON_HEADER, "")
            return set(poison) <= set(found)

        await eventually(all_dead, "every poison event in the dead-letter stream")
        assert {data: found[data] for data in poison} == poison

        async def settled() -> bool:
            info = await js.consumer_info(bus.EVENTS_STREAM, bus.GATEWAY_EVENTS_CONSUMER)
            return bool(info.num_ack_pending == 0)

        await eventually(settled, "the gateway acked them")
        after = await js.consumer_info(bus.EVENTS_STREAM, bus.GATEWAY_EVENTS_CONSUMER)
        assert after.num_redelivered == before.num_redelivered  # each handled on its first try
    async with httpx.AsyncClient() as scraper:
        metrics = await scraper.get(f"http://127.0.0.1:{platform.config.metrics_port}/metrics")
    assert 'pixelrelay_events_dead_lettered_total{reason="undecodable"}' in metrics.text
