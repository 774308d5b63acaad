"""gRPC server builder: aio server, health checking, one error-mapping interceptor."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from pixelrelay.errors import ApiError, E, error_metadata
from pixelrelay.metrics import RPC_LATENCY

log = logging.getLogger(__name__)

# Streaming carries the big payloads; unary messages stay small but allow headroom.
MESSAGE_LIMIT = 32 * 1024 * 1024
CHANNEL_OPTIONS = [
    ("grpc.max_send_message_length", MESSAGE_LIMIT),
    ("grpc.max_receive_message_length", MESSAGE_LIMIT),
    ("grpc.keepalive_time_ms", 30_000),
    # Reconnect to a restarted peer within a second (gRPC's default backoff grows to 2 min).
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
]

# gRPC binds with SO_REUSEPORT by default: a second server on a taken port would start
# without a word and take half its calls. A taken port must fail the start instead.
SERVER_OPTIONS = [*CHANNEL_OPTIONS, ("grpc.so_reuseport", 0)]


class ErrorInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Turns ApiError into a status + metadata, anything else into a logged INTERNAL."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        method = handler_call_details.method.rsplit("/", 1)[-1]
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(
                _guard(method, handler.unary_unary),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.stream_unary:
            return grpc.stream_unary_rpc_method_handler(
                _guard(method, handler.stream_unary),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return handler


def _guard(method: str, inner: Any) -> Any:
    async def wrapper(request: Any, context: grpc.aio.ServicerContext) -> Any:
        started = time.perf_counter()
        code = "OK"
        try:
            return await inner(request, context)
        except grpc.aio.AbortError:
            code = "ABORTED_BY_HANDLER"
            raise
        except ApiError as err:
            code = err.kind.grpc_status.name
            await context.abort(
                err.kind.grpc_status, err.message, trailing_metadata=error_metadata(err)
            )
        except Exception:
            code = "INTERNAL"
            log.exception("unhandled error in %s", method)
            bug = ApiError(E.INTERNAL)
            await context.abort(
                grpc.StatusCode.INTERNAL, bug.message, trailing_metadata=error_metadata(bug)
            )
        finally:
            RPC_LATENCY.labels(method, code).observe(time.perf_counter() - started)

    return wrapper


@dataclass
class GrpcServer:
    server: grpc.aio.Server
    health: health.aio.HealthServicer
    port: int

    async def stop(self, grace: float) -> None:
        """Report NOT_SERVING, refuse new calls, give in-flight calls ``grace`` seconds."""
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace)


async def start_grpc_server(
    port: int,
    register: Callable[[grpc.aio.Server], None],
    service_names: Iterable[str],
    host: str = "0.0.0.0",
) -> GrpcServer:
    """Build → add servicers → bind → start. ``port=0`` binds a free port."""
    server = grpc.aio.server(interceptors=[ErrorInterceptor()], options=SERVER_OPTIONS)
    register(server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    bound = server.add_insecure_port(f"{host}:{port}")
    await server.start()
    for name in [*service_names, ""]:
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    log.info("grpc serving", extra={"port": bound})
    return GrpcServer(server, health_servicer, bound)


def insecure_channel(addr: str) -> grpc.aio.Channel:
    return grpc.aio.insecure_channel(addr, options=CHANNEL_OPTIONS)


async def check_health(addr: str, deadline: float = 1.0) -> bool:
    async with insecure_channel(addr) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            reply = await stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=deadline)
        except grpc.aio.AioRpcError:
            return False
        return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)
