"""python -m pixelrelay_gateway: REST on HTTP, the public API on gRPC, and the task-event consumer."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Iterator

import grpc
import uvicorn
from nats.aio.msg import Msg

from pixelrelay import bus, catalog
from pixelrelay.billing_client import BillingClient
from pixelrelay.callers import AccessPolicy, TrustedCallers
from pixelrelay.capabilities import TaskCapabilities
from pixelrelay.catalog import Catalog
from pixelrelay.db import Database
from pixelrelay.grpc_server import start_grpc_server
from pixelrelay.lifecycle import finish, repeat, run_until_signalled
from pixelrelay.logging import configure_logging
from pixelrelay.memory import give_back_large_allocations
from pixelrelay.metrics import start_metrics_server
from pixelrelay.relay import RelayInbox
from pixelrelay.schema import prepare_when_ready
from pixelrelay.sealing import PromptSealer
from pixelrelay.startup import starting
from pixelrelay.storage_client import StorageClient
from pixelrelay.v1 import admin_pb2, admin_pb2_grpc, public_api_pb2, public_api_pb2_grpc
from pixelrelay_gateway.core.accounts import AccountData
from pixelrelay_gateway.core.admin import AdminAccess
from pixelrelay_gateway.core.api import PublicApi
from pixelrelay_gateway.core.auth_throttle import AuthThrottle, parse_networks
from pixelrelay_gateway.core.authcache import AuthCache
from pixelrelay_gateway.core.authenticator import Authenticator
from pixelrelay_gateway.core.channel_health import ChannelHealthBoard
from pixelrelay_gateway.core.events import TaskEventHandler
from pixelrelay_gateway.core.idempotency import IdempotencyStore
from pixelrelay_gateway.core.mailer import Links, SmtpMailer
from pixelrelay_gateway.core.object_audit import audit_objects
from pixelrelay_gateway.core.ratelimit import RateLimiter
from pixelrelay_gateway.core.retention import Records, purge_records
from pixelrelay_gateway.core.sessions import Sessions, SignUpsPerAddress
from pixelrelay_gateway.core.store import TaskStore
from pixelrelay_gateway.core.submit import Submitter
from pixelrelay_gateway.core.uploads import Quota, Uploader, UploadStore
from pixelrelay_gateway.core.waiting import TaskWaiters, settled_subject
from pixelrelay_gateway.grpc.servicer import (
    AdminServicer,
    PublicApiServicer,
    SessionsServicer,
    admitter,
)
from pixelrelay_gateway.http.app import asgi_app
from pixelrelay_gateway.http.protocol import guarded_protocol
from pixelrelay_gateway.inputs.decode_pool import DecodeWorkers
from pixelrelay_gateway.inputs.fetch import SafeFetcher
from pixelrelay_gateway.inputs.images import DecodeBudget
from pixelrelay_gateway.inputs.references import ReferenceLoader
from pixelrelay_gateway.migrate import SCHEMA
from pixelrelay_gateway.settings import GatewaySettings

log = logging.getLogger("gateway")


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: our stop Event decides."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def run(settings: GatewaySettings, models: Catalog, stop: asyncio.Event) -> None:
    async with contextlib.AsyncExitStack() as stack:  # unwinds in reverse, also on failure
        await _serve(settings, models, stop, stack)


async def _serve(
    settings: GatewaySettings,
    models: Catalog,
    stop: asyncio.Event,
    stack: contextlib.AsyncExitStack,
) -> None:
    # Bound first, by us: uvicorn reports a taken port from inside its task and leaves the
    # process running without its API; this fails the start instead.
    http_socket = stack.enter_context(
        socket.create_server((settings.http_host, settings.http_port))
    )
    async with starting(settings.grpc_port, settings.grpc_host):
        await prepare_when_ready(
            SCHEMA, settings.database_url, migrate=settings.migrate_on_start, stop=stop
        )
        # No echo: announce wakes this replica's waiters itself (one delivery less a task).
        nc, js = await bus.connect_when_ready(
            settings, "gateway", (bus.JOBS_STREAM, bus.EVENTS_STREAM), stop, echo=False
        )
    stack.push_async_callback(nc.drain)
    credential = settings.service_credential.get_secret_value()
    db = Database(settings.database_url)
    stack.callback(db.close)
    store = TaskStore(db.engine)
    uploads = UploadStore(db.engine)
    waiters = TaskWaiters(longest=settings.sync_wait_seconds)

    async def on_settled(msg: Msg) -> None:  # nats-py wants a coroutine function
        waiters.on_subject(msg.subject)

    async def announce(task_id: str) -> None:
        waiters.settled(task_id)  # this replica's waiters at once (the bus does not echo)
        await nc.publish(settled_subject(task_id))  # the other replicas'

    settled = await nc.subscribe(bus.SETTLED_SUBJECTS, cb=on_settled)
    stack.push_async_callback(settled.unsubscribe)
    relays = await RelayInbox().open(nc)  # every waiting request's relayed images
    stack.push_async_callback(relays.close)
    channel_health = ChannelHealthBoard()

    async def on_health(msg: Msg) -> None:
        channel_health.heard(msg.data)

    health = await nc.subscribe(bus.HEALTH_SUBJECT, cb=on_health)
    stack.push_async_callback(health.unsubscribe)
    billing = BillingClient(settings.billing_addr, credential)
    stack.push_async_callback(billing.close)
    storage = StorageClient(settings.storage_addr, credential)
    stack.push_async_callback(storage.close)
    fetcher = SafeFetcher(
        allow_private=settings.fetch_allow_private,
        max_bytes=settings.max_image_bytes,
        timeout=settings.fetch_timeout,
    )
    stack.push_async_callback(fetcher.close)
    decode_workers = DecodeWorkers(settings.decode_workers, settings.decode_timeout)
    stack.push_async_callback(decode_workers.close)
    await decode_workers.start()
    idempotency = IdempotencyStore(
        db.engine, in_flight_ms=int(settings.idempotency_in_flight_seconds * 1000)
    )
    references = ReferenceLoader(
        fetcher,
        storage,
        DecodeBudget(settings.decode_budget_mb * 1024 * 1024),
        decode_workers,
        max_image_bytes=settings.max_image_bytes,
        per_account=settings.fetch_per_account,
        decodes_per_account=settings.decode_per_account,
        total_timeout=settings.fetch_total_timeout,
    )
    accounts = AccountData(storage, db, store, uploads, idempotency)
    api = PublicApi(
        models=models,
        submitter=Submitter(
            models=models,
            billing=billing,
            references=references,
            db=db,
            store=store,
            js=js,
            sealer=PromptSealer.parse(settings.job_keys.get_secret_value()),
            capabilities=TaskCapabilities.parse(settings.task_capability_keys.get_secret_value()),
            hold_ttl_seconds=settings.hold_ttl_seconds,
        ),
        uploader=Uploader(
            references=references,
            storage=storage,
            db=db,
            uploads=uploads,
            quota=Quota(count=settings.upload_quota_count, bytes=settings.upload_quota_bytes),
        ),
        billing=billing,
        storage=storage,
        db=db,
        store=store,
        idempotency=idempotency,
        accounts=accounts,
        waiters=waiters,
        relays=relays,
    )
    # Every edge (gRPC, REST, sessions) knows a key through the same cache.
    auth_cache = AuthCache(billing.authenticate)
    authenticator = Authenticator(
        cache=auth_cache,
        limiter=RateLimiter(billing.take_request, settings.default_rate_limit),
    )
    purge_stop = asyncio.Event()
    records = Records(tasks=store, uploads=uploads, idempotency=idempotency)
    purge = asyncio.create_task(
        repeat(
            "record purge",
            lambda: purge_records(records, db, task_retention_days=settings.task_retention_days),
            settings.record_sweep_interval,
            purge_stop,
        )
    )
    stack.push_async_callback(finish, purge, purge_stop)
    if settings.object_audit_interval:
        audit_stop = asyncio.Event()
        audit = asyncio.create_task(
            repeat(
                "object audit",
                lambda: audit_objects(store, db, storage),
                settings.object_audit_interval,
                audit_stop,
            )
        )
        stack.push_async_callback(finish, audit, audit_stop)
    events_stop = asyncio.Event()
    events = asyncio.create_task(
        bus.consume(
            js,
            stream=bus.EVENTS_STREAM,
            subject=bus.EVENTS_SUBJECTS,
            config=bus.consumer_config(
                bus.GATEWAY_EVENTS_CONSUMER, ack_wait=settings.events_ack_wait, max_deliver=-1
            ),
            handler=TaskEventHandler(
                storage=storage,
                db=db,
                store=store,
                js=js,
                announce=announce,
            ),
            stop=events_stop,
            concurrency=settings.event_concurrency,
            grace=settings.shutdown_grace,
        )
    )
    stack.push_async_callback(finish, events, events_stop)

    throttle = AuthThrottle(
        settings.auth_failures_per_minute,
        trusted_proxies=parse_networks(settings.trusted_proxies),
        vouched=authenticator.vouched,
    )
    servicer = PublicApiServicer(api, authenticator, throttle)
    sessions = Sessions(
        billing=billing,
        auth=auth_cache,
        mode=settings.signup_mode,
        links=mail_links(settings),
        signups=SignUpsPerAddress(settings.signups_per_address_hour),
    )
    sessions_servicer = SessionsServicer(sessions, throttle)
    admin = AdminAccess(
        billing,
        own_credential=credential,
        accounts=accounts,
        channels=channel_health,
        public_url=settings.public_url.rstrip("/"),
    )
    admin_servicer = AdminServicer(admin, throttle)

    def register(server: grpc.aio.Server) -> None:
        public_api_pb2_grpc.add_PublicApiServicer_to_server(servicer, server)
        admin_pb2_grpc.add_AdminServicer_to_server(admin_servicer, server)
        public_api_pb2_grpc.add_SessionsServicer_to_server(sessions_servicer, server)

    grpc_server = await start_grpc_server(
        settings.grpc_port,
        register,
        [
            public_api_pb2.DESCRIPTOR.services_by_name["PublicApi"].full_name,
            admin_pb2.DESCRIPTOR.services_by_name["Admin"].full_name,
            public_api_pb2.DESCRIPTOR.services_by_name["Sessions"].full_name,
        ],
        # API keys and the operator's token, checked by the servicers (billing decides
        # whether a token is the operator's).
        policy=AccessPolicy({}, public=True),
        callers=TrustedCallers({}),
        host=settings.grpc_host,
        admit=admitter(authenticator, admin, throttle),
    )
    http = _Server(
        uvicorn.Config(
            asgi_app(
                api,
                authenticator,
                admin,
                max_body_bytes=settings.max_body_bytes,
                max_upload_bytes=settings.max_image_bytes + 64 * 1024,
                max_edit_bytes=settings.max_edit_bytes,
                stream_keepalive_seconds=settings.stream_keepalive_seconds,
                throttle=throttle,
                sessions=sessions,
                secure_cookie=settings.session_cookie_secure,
            ),
            host=settings.http_host,
            port=settings.http_port,
            log_config=None,
            access_log=False,
            lifespan="off",
            # The failed-auth throttle reads X-Forwarded-For itself, from trusted proxies
            # only; uvicorn's rewrite of every request costs ~5% of a poll.
            proxy_headers=False,
            timeout_graceful_shutdown=int(settings.shutdown_grace),
            # Clients poll every 1-2 s: keep their connections (uvicorn's default is 5 s).
            timeout_keep_alive=75,
            http=guarded_protocol(
                max_header_bytes=settings.max_header_bytes,
                max_headers=settings.max_headers,
                header_timeout=settings.header_timeout,
                body_timeout=settings.body_timeout,
                min_body_rate=settings.min_body_rate,
                max_connections=settings.max_connections,
                max_connections_per_client=settings.max_connections_per_client,
                trusted_proxies=parse_networks(settings.trusted_proxies),
            ),
        )
    )
    http_task = asyncio.create_task(http.serve(sockets=[http_socket]))

    async def stop_serving() -> None:
        """First of all: stop taking requests and let in-flight ones finish (events are
        applied until then)."""
        http.should_exit = True
        await asyncio.gather(http_task, grpc_server.stop(settings.shutdown_grace))

    stack.push_async_callback(stop_serving)
    metrics_port = start_metrics_server(settings.metrics_port, settings.metrics_host)
    log.info(
        "gateway ready",
        extra={
            "http_port": settings.http_port,
            "grpc_port": grpc_server.port,
            "metrics_port": metrics_port,
        },
    )
    await stop.wait()


def mail_links(settings: GatewaySettings) -> Links | None:
    """The mailer the settings describe, or None (no SMTP_HOST: nothing is mailed)."""
    if not settings.smtp_host:
        return None
    mailer = SmtpMailer(
        host=settings.smtp_host,
        port=settings.smtp_port,
        sender=settings.mail_from,
        username=settings.smtp_username,
        password=settings.smtp_password.get_secret_value(),
        security=settings.smtp_security,
    )
    return Links(mailer, settings.public_url.rstrip("/"))


def main() -> None:
    settings = GatewaySettings()
    configure_logging("gateway", settings.log_level)
    give_back_large_allocations()  # request bodies of tens of MB come and go
    models = catalog.load_or_refuse(log)
    run_until_signalled(lambda stop: run(settings, models, stop))


if __name__ == "__main__":
    main()
