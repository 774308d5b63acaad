"""Attacks on the public surface that a security sweep found to work, replayed: each test
here failed before its fix."""

from __future__ import annotations

import grpc
import pytest

from pixelrelay.limits import MAX_UNIX_SECONDS
from pixelrelay.v1 import public_api_pb2, public_api_pb2_grpc
from tests.e2e.conftest import Platform

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
