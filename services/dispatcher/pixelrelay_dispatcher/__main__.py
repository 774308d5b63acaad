"""python -m pixelrelay_dispatcher: the JetStream job worker."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import sys

from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from prometheus_client import Gauge

from pixelrelay import bus, catalog
from pixelrelay.callers import AccessPolicy, TrustedCallers
from pixelrelay.catalog import Catalog
from pixelrelay.grpc_server import start_grpc_server
from pixelrelay.ids import random_token
from pixelrelay.lifecycle import repeat, run_until_signalled
from pixelrelay.logging import configure_logging
from pixelrelay.metrics import start_metrics_server
from pixelrelay.sealing import PromptSealer
from pixelrelay.startup import starting
from pixelrelay.storage_client import StorageClient
from pixelrelay_dispatcher import channels
from pixelrelay_dispatcher.breaker import CircuitBreaker
from pixelrelay_dispatcher.deadletter import DeadLetterHandler
from pixelrelay_dispatcher.health import snapshot
from pixelrelay_dispatcher.router import Router
from pixelrelay_dispatcher.settings import DispatcherSettings
from pixelrelay_dispatcher.worker import JobHandler

log = logging.getLogger("dispatcher")

JOBS_PENDING = Gauge("pixelrelay_jobs_pending", "Jobs queued or in flight (JetStream)")


def build_router(settings: DispatcherSettings, models: Catalog) -> Router:
    config = channels.load(
        settings.channels_file, allow_loopback=settings.channels_allow_loopback, models=models
    )
    keys = {c.api_key_env: os.environ[c.api_key_env] for c in config.channels.values()}
    return Router(
        config,
        keys,
        breaker=lambda: CircuitBreaker(
            consecutive_failures=settings.breaker_consecutive_failures,
            failure_rate=settings.breaker_failure_rate,
            min_calls=settings.breaker_min_calls,
            window=settings.breaker_window,
            cooldown=settings.breaker_cooldown,
        ),
    )


async def watch_queue(js: JetStreamContext, stop: asyncio.Event) -> None:
    while not stop.is_set():
        with contextlib.suppress(Exception):
            info = await js.consumer_info(bus.JOBS_STREAM, bus.DISPATCHER_CONSUMER)
            JOBS_PENDING.set((info.num_pending or 0) + (info.num_ack_pending or 0))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 5.0)


async def publish_health(nats: NATS, router: Router, replica: str, every: float) -> None:
    """This dispatcher's channels for the gateways' operator view (health.py)."""
    health = snapshot(replica, router.health(), every=every)
    await nats.publish(bus.HEALTH_SUBJECT, health.SerializeToString())


async def run(settings: DispatcherSettings, router: Router, stop: asyncio.Event) -> None:
    async with contextlib.AsyncExitStack() as stack:  # unwinds in reverse, also on failure
        stack.push_async_callback(router.close)
        await _serve(settings, router, stop, stack)


async def _serve(
    settings: DispatcherSettings,
    router: Router,
    stop: asyncio.Event,
    stack: contextlib.AsyncExitStack,
) -> None:
    credential = settings.service_credential.get_secret_value()
    storage = StorageClient(settings.storage_addr, credential)
    stack.push_async_callback(storage.close)
    async with starting(settings.grpc_port, settings.grpc_host):
        nc, js = await bus.connect_when_ready(
            settings,
            settings.worker_name,
            (bus.JOBS_STREAM, bus.EVENTS_STREAM, bus.DEADLETTER_STREAM),
            stop,
        )
    stack.push_async_callback(nc.drain)
    handler = JobHandler(
        nc=nc,
        js=js,
        router=router,
        storage=storage,
        worker=settings.worker_name,
        heartbeat_every=settings.heartbeat_every,
        max_deliver=settings.max_deliver,
        sealer=PromptSealer.parse(settings.job_keys.get_secret_value()),
    )
    server = await start_grpc_server(  # health checks only: every other call is refused
        settings.grpc_port,
        lambda s: None,
        [],
        policy=AccessPolicy({}),
        callers=TrustedCallers({}),
        host=settings.grpc_host,
    )
    stack.push_async_callback(server.stop, 1.0)
    metrics_port = start_metrics_server(settings.metrics_port, settings.metrics_host)
    log.info(
        "dispatcher ready",
        extra={
            "grpc_port": server.port,
            "metrics_port": metrics_port,
            "channels": len(router.channels),
        },
    )
    await asyncio.gather(
        bus.consume(
            js,
            stream=bus.JOBS_STREAM,
            subject=bus.JOBS_SUBJECTS,
            config=bus.consumer_config(
                bus.DISPATCHER_CONSUMER,
                ack_wait=settings.ack_wait,
                max_deliver=settings.max_deliver,
            ),
            handler=handler,
            stop=stop,
            concurrency=settings.concurrency,
            grace=settings.shutdown_grace,
        ),
        bus.consume(
            js,
            stream=bus.DEADLETTER_STREAM,
            subject=bus.MAX_DELIVERIES_ADVISORY,
            config=bus.consumer_config(bus.DEADLETTER_CONSUMER, ack_wait=30.0, max_deliver=-1),
            handler=DeadLetterHandler(js),
            stop=stop,
            concurrency=4,
            grace=settings.shutdown_grace,
        ),
        watch_queue(js, stop),
        repeat(
            "channel health",
            # Replicas may share a worker name: the suffix tells their snapshots apart.
            functools.partial(
                publish_health,
                nc,
                router,
                f"{settings.worker_name}-{random_token(6)}",
                settings.channel_health_every,
            ),
            settings.channel_health_every,
            stop,
        ),
    )


def main() -> None:
    settings = DispatcherSettings()
    configure_logging("dispatcher", settings.log_level)
    models = catalog.load_or_refuse(log)
    try:
        router = build_router(settings, models)
    except channels.ConfigError as exc:
        log.critical("refusing to start: %s", exc)
        sys.exit(2)
    run_until_signalled(lambda stop: run(settings, router, stop))


if __name__ == "__main__":
    main()
