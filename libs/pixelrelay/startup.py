"""Starting before the dependencies are up: retry with backoff, NOT_SERVING meanwhile.

In a cluster the pods start in any order: a service whose NATS or database is not there
yet must neither crash-loop nor look ready. ``starting`` holds the service's gRPC port
with a health-only server that answers NOT_SERVING (so probes and load balancers keep
traffic away), and ``keep_trying`` retries each dependency with capped exponential
backoff, saying in the log what it waits for and why. The real server replaces the
health-only one on the same port once everything answered.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from pixelrelay.grpc_server import SERVER_OPTIONS

log = logging.getLogger(__name__)

T = TypeVar("T")


class StopRequested(Exception):
    """SIGTERM arrived while a dependency was still being waited for."""


@dataclass(frozen=True)
class Backoff:
    first: float = 0.5
    factor: float = 2.0
    cap: float = 15.0

    def delay(self, attempt: int, rng: random.Random) -> float:
        """Seconds before try ``attempt + 1``: exponential, capped, with ±20 % jitter so
        replicas that lost the same dependency do not come back in step."""
        base = min(self.cap, self.first * self.factor**attempt)
        return base * rng.uniform(0.8, 1.2)


async def keep_trying(
    what: str,
    attempt: Callable[[], Awaitable[T]],
    stop: asyncio.Event,
    backoff: Backoff = Backoff(),
    rng: random.Random | None = None,
) -> T:
    """``attempt()`` until it returns; each failure is logged (its type and message, which
    for our dependencies never hold a secret) and retried after a backoff. Raises
    StopRequested if ``stop`` is set meanwhile."""
    rng = rng or random.Random()
    failures = 0
    while True:
        try:
            return await attempt()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            wait = backoff.delay(failures, rng)
            failures += 1
            log.warning(
                "waiting for %s",
                what,
                extra={
                    "error": f"{type(exc).__name__}: {exc}"[:300],
                    "attempt": failures,
                    "retry_in_s": round(wait, 2),
                },
            )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), wait)
        if stop.is_set():
            raise StopRequested(what)


async def unless_stopped(what: str, waiting: Awaitable[T], stop: asyncio.Event) -> T:
    """``waiting``'s result, or StopRequested if ``stop`` is set first (for waits that
    retry by themselves, like the NATS client's first connect)."""
    task = asyncio.ensure_future(waiting)
    stopped = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, stopped}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped.cancel()
    if not task.done():
        task.cancel()
        with contextlib.suppress(BaseException):
            await task
        raise StopRequested(what)
    return task.result()


@contextlib.asynccontextmanager
async def starting(port: int, host: str) -> AsyncIterator[None]:
    """Answer health checks on ``host:port`` with NOT_SERVING until the block ends; the
    port is free again when it does, for the real server."""
    if port == 0:  # a free port picked at random: nobody could be probing it
        yield
        return
    server = grpc.aio.server(options=SERVER_OPTIONS)  # a taken port fails here, as later
    servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    server.add_insecure_port(f"{host}:{port}")
    await server.start()
    await servicer.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
    try:
        yield
    finally:
        await server.stop(None)
