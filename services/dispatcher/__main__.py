"""python -m dispatcher: the JetStream job worker."""

from __future__ import annotations

import asyncio
import logging

from dispatcher.router import Router
from dispatcher.settings import DispatcherSettings
from dispatcher.upstream import OpenAIImagesChannel
from dispatcher.worker import JobHandler
from pixelrelay import bus
from pixelrelay.grpc_server import start_grpc_server
from pixelrelay.lifecycle import run_until_signalled
from pixelrelay.logging import configure_logging
from pixelrelay.metrics import start_metrics_server
from pixelrelay.storage_client import StorageClient

log = logging.getLogger("dispatcher")


def build_router(settings: DispatcherSettings) -> Router:
    urls = [u.strip() for u in settings.upstream_base_urls.split(",") if u.strip()]
    return Router(
        [
            OpenAIImagesChannel(
                f"channel-{i}",
                url,
                settings.upstream_api_key.get_secret_value(),
                settings.upstream_model,
                settings.upstream_timeout,
            )
            for i, url in enumerate(urls)
        ]
    )


async def run(settings: DispatcherSettings, stop: asyncio.Event) -> None:
    router = build_router(settings)
    nc = await bus.connect(settings.nats_url, settings.worker_name)
    js = nc.jetstream()
    await bus.ensure_streams(js)
    storage = StorageClient(settings.storage_addr)
    handler = JobHandler(
        js=js,
        router=router,
        storage=storage,
        worker=settings.worker_name,
        heartbeat_every=settings.heartbeat_every,
        max_deliver=settings.max_deliver,
    )
    server = await start_grpc_server(settings.grpc_port, lambda s: None, [])
    metrics_port = start_metrics_server(settings.metrics_port)
    log.info(
        "dispatcher ready",
        extra={
            "grpc_port": server.port,
            "metrics_port": metrics_port,
            "channels": len(router.channels),
        },
    )
    try:
        await bus.consume(
            js,
            stream=bus.JOBS_STREAM,
            subject=bus.JOBS_SUBJECT,
            config=bus.consumer_config(
                "dispatcher", ack_wait=settings.ack_wait, max_deliver=settings.max_deliver
            ),
            handler=handler,
            stop=stop,
            concurrency=settings.concurrency,
            grace=settings.shutdown_grace,
        )
    finally:
        await server.stop(1.0)
        await nc.drain()
        await storage.close()
        await router.close()


def main() -> None:
    settings = DispatcherSettings()
    configure_logging("dispatcher", settings.log_level)
    run_until_signalled(lambda stop: run(settings, stop))


if __name__ == "__main__":
    main()
