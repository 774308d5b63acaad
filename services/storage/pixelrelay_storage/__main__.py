"""python -m pixelrelay_storage: the object-storage gRPC server."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from pixelrelay import bus
from pixelrelay.callers import TrustedCallers
from pixelrelay.capabilities import TaskCapabilities
from pixelrelay.grpc_server import start_grpc_server
from pixelrelay.lifecycle import finish, repeat, run_until_signalled
from pixelrelay.logging import configure_logging
from pixelrelay.metrics import start_metrics_server
from pixelrelay.startup import keep_trying, starting
from pixelrelay.v1 import storage_pb2, storage_pb2_grpc
from pixelrelay_storage.access import STORAGE_ACCESS
from pixelrelay_storage.blobstore import BlobStore, watch_bucket
from pixelrelay_storage.retention import apply_lifecycle_rules, sweep_expired
from pixelrelay_storage.servicer import StorageServicer
from pixelrelay_storage.settings import StorageSettings

log = logging.getLogger("storage")


async def run(settings: StorageSettings, stop: asyncio.Event) -> None:
    # A missing or malformed key stops the start at once: waiting would not fix it.
    capabilities = TaskCapabilities.parse(settings.task_capability_keys.get_secret_value())
    callers = TrustedCallers.parse(settings.trusted_callers)
    blobs = BlobStore(settings)
    async with contextlib.AsyncExitStack() as stack:  # unwinds in reverse, also on failure
        async with starting(settings.grpc_port, settings.grpc_host):
            await keep_trying("the object store", blobs.ensure_bucket, stop)
            if settings.s3_lifecycle_rules:
                await apply_lifecycle_rules(blobs)
            nc, js = await bus.connect_when_ready(
                settings,
                "storage",
                (bus.EVENTS_STREAM,),
                stop,
            )
        stack.push_async_callback(nc.drain)
        servicer = StorageServicer(blobs, js, capabilities, callers)
        server = await start_grpc_server(
            settings.grpc_port,
            lambda s: storage_pb2_grpc.add_StorageServicer_to_server(servicer, s),
            [storage_pb2.DESCRIPTOR.services_by_name["Storage"].full_name],
            policy=STORAGE_ACCESS,
            callers=callers,
            host=settings.grpc_host,
        )
        stack.push_async_callback(server.stop, settings.shutdown_grace)
        watch = asyncio.create_task(watch_bucket(blobs, server.report, stop))
        stack.push_async_callback(finish, watch, stop)
        if settings.object_sweep_interval > 0:
            sweep = asyncio.create_task(
                repeat(
                    "object sweep",
                    lambda: sweep_expired(blobs),
                    settings.object_sweep_interval,
                    stop,
                )
            )
            stack.push_async_callback(finish, sweep, stop)
        metrics_port = start_metrics_server(settings.metrics_port, settings.metrics_host)
        log.info("storage ready", extra={"grpc_port": server.port, "metrics_port": metrics_port})
        await stop.wait()


def main() -> None:
    settings = StorageSettings()
    configure_logging("storage", settings.log_level)
    run_until_signalled(lambda stop: run(settings, stop))


if __name__ == "__main__":
    main()
