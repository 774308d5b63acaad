"""python -m pixelrelay_billing: the ledger's gRPC server."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from datetime import timedelta

from pixelrelay import bus, catalog, task_events
from pixelrelay.callers import TrustedCallers
from pixelrelay.db import Database
from pixelrelay.grpc_server import start_grpc_server
from pixelrelay.lifecycle import finish, run_until_signalled
from pixelrelay.logging import configure_logging
from pixelrelay.metrics import start_metrics_server
from pixelrelay.schema import prepare_when_ready
from pixelrelay.startup import starting
from pixelrelay.v1 import billing_pb2, billing_pb2_grpc
from pixelrelay_billing.access import BILLING_ACCESS
from pixelrelay_billing.ledger import Ledger
from pixelrelay_billing.migrate import SCHEMA
from pixelrelay_billing.passwords import Passwords
from pixelrelay_billing.prices import PriceList
from pixelrelay_billing.servicer import BillingServicer
from pixelrelay_billing.settings import BillingSettings
from pixelrelay_billing.settlement import SETTLES_ON, Settlement
from pixelrelay_billing.sweeper import Sweeper, run_ledger_checks, run_sweeper

log = logging.getLogger("billing")


async def run(settings: BillingSettings, prices: PriceList, stop: asyncio.Event) -> None:
    async with contextlib.AsyncExitStack() as stack:  # unwinds in reverse, also on failure
        async with starting(settings.grpc_port, settings.grpc_host):
            await prepare_when_ready(
                SCHEMA, settings.database_url, migrate=settings.migrate_on_start, stop=stop
            )
            nc, js = await bus.connect_when_ready(
                settings,
                "billing",
                (bus.EVENTS_STREAM,),
                stop,
            )
            stack.push_async_callback(nc.drain)
        db = Database(settings.database_url)
        stack.callback(db.close)
        ledger = Ledger(db.engine, prices, settings.signup_grant)
        ledger.session_ttl = timedelta(hours=settings.session_hours)
        ledger.sign_in_failures = settings.sign_in_failures
        ledger.sign_in_window = settings.sign_in_window_seconds
        servicer = BillingServicer(
            ledger,
            db,
            settings.submit_hold_seconds,
            Passwords(settings.password_hash_parallel),
            announce=functools.partial(task_events.publish_event, js),
        )
        server = await start_grpc_server(
            settings.grpc_port,
            lambda s: billing_pb2_grpc.add_BillingServicer_to_server(servicer, s),
            [billing_pb2.DESCRIPTOR.services_by_name["Billing"].full_name],
            policy=BILLING_ACCESS,
            callers=TrustedCallers.parse(settings.trusted_callers),
            host=settings.grpc_host,
        )
        stack.push_async_callback(server.stop, settings.shutdown_grace)
        settling_stop = asyncio.Event()
        settling = asyncio.create_task(
            bus.consume(
                js,
                stream=bus.EVENTS_STREAM,
                subject=bus.EVENTS_SUBJECTS,
                config=bus.consumer_config(
                    bus.SETTLEMENT_CONSUMER,
                    ack_wait=settings.settlement_ack_wait,
                    max_deliver=-1,
                    only=task_events.kinds_subjects(*SETTLES_ON),
                ),
                handler=Settlement(ledger, db, js),
                stop=settling_stop,
                concurrency=settings.settlement_concurrency,
                grace=settings.shutdown_grace,
            )
        )
        stack.push_async_callback(finish, settling, settling_stop)
        sweeper = asyncio.create_task(
            run_sweeper(
                Sweeper.on_bus(ledger, db, js, settings.hold_ttl_seconds),
                stop,
                settings.sweep_interval,
            )
        )
        stack.push_async_callback(finish, sweeper, stop)
        if settings.ledger_check_interval > 0:
            checks = asyncio.create_task(
                run_ledger_checks(ledger, db, stop, settings.ledger_check_interval)
            )
            stack.push_async_callback(finish, checks, stop)
        metrics_port = start_metrics_server(settings.metrics_port, settings.metrics_host)
        log.info(
            "billing ready",
            extra={
                "grpc_port": server.port,
                "metrics_port": metrics_port,
                "database": settings.database_url.split("://")[0],
            },
        )
        await stop.wait()


def main() -> None:
    settings = BillingSettings()
    configure_logging("billing", settings.log_level)
    prices = PriceList(catalog.load_or_refuse(log))
    run_until_signalled(lambda stop: run(settings, prices, stop))


if __name__ == "__main__":
    main()
