"""A call that ends in an error leaves nothing behind for the garbage collector: raised
through ``context.abort``, its AbortError tied the call's state, frames and request into a
reference cycle, and a gateway kept ~600 MB of refused 19 MB uploads per 16 until a full
collection. Counted here, in one process, where the collector can be asked (on the
platform the figure is the allocator's and varies by hundreds of MB from run to run)."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator, Iterator
from typing import Any

import grpc
import pytest

from pixelrelay.callers import AccessPolicy, TrustedCallers
from pixelrelay.errors import ApiError, E
from pixelrelay.grpc_server import start_grpc_server
from pixelrelay.v1 import public_api_pb2, public_api_pb2_grpc

pytestmark = pytest.mark.security


class Refusing(public_api_pb2_grpc.PublicApiServicer):
    async def CreateUpload(self, request: Any, context: Any) -> Any:
        raise ApiError(E.INVALID_IMAGE, "not an image", param="file")

    async def GenerateImages(self, request: Any, context: Any) -> AsyncIterator[Any]:
        raise ApiError(E.INVALID_PARAMETER, "no", param="partial_images")
        yield  # a server stream


async def admit_everyone(path: str, context: grpc.aio.ServicerContext) -> None:
    return None


@pytest.fixture
def collector_paused() -> Iterator[None]:
    """Garbage kept, not freed, so that what a cycle holds can be counted."""
    gc.collect()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        yield
    finally:
        gc.set_debug(0)
        gc.garbage.clear()


@pytest.mark.parametrize("admit", [None, admit_everyone], ids=["internal", "public"])
async def test_refused_calls_leave_no_request_in_a_reference_cycle(
    collector_paused: None, admit: Any
) -> None:
    server = await start_grpc_server(
        0,
        # the other methods are never called
        lambda s: public_api_pb2_grpc.add_PublicApiServicer_to_server(Refusing(), s),  # type: ignore[abstract]
        [],
        policy=AccessPolicy({}, public=True),
        callers=TrustedCallers({}),
        host="127.0.0.1",
        admit=admit,
    )
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            stub = public_api_pb2_grpc.PublicApiStub(channel)
            for _ in range(3):
                with pytest.raises(grpc.aio.AioRpcError) as refused:
                    await stub.CreateUpload(public_api_pb2.CreateUploadRequest(data=b"x" * 1000))
                assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
                with pytest.raises(grpc.aio.AioRpcError) as refused:
                    async for _event in stub.GenerateImages(public_api_pb2.GenerateImagesRequest()):
                        pass
                assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    finally:
        await server.stop(0)
    gc.collect()
    kept = [
        o
        for o in gc.garbage
        if isinstance(o, public_api_pb2.CreateUploadRequest | public_api_pb2.GenerateImagesRequest)
    ]
    assert kept == []
