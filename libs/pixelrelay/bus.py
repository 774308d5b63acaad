"""The event bus: NATS JetStream streams, subjects, publishing and pull consumers.

Three streams:
    PIXELRELAY_JOBS        pixelrelay.jobs.images.<task id>  work queue, one message per task
    PIXELRELAY_EVENTS      pixelrelay.events.task.<kind>.<task id>
                           started | completed | failed | expired | settled (task_events.py)
    PIXELRELAY_DEADLETTER  the max-deliveries advisories of the jobs consumer, and
                           pixelrelay.deadletter.{jobs,events}: what could never be handled
Every publish carries Nats-Msg-Id, so JetStream drops a republished duplicate.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DiscardPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)

from pixelrelay.errors import ApiError, E
from pixelrelay.settings import ServiceSettings
from pixelrelay.startup import keep_trying, unless_stopped

log = logging.getLogger(__name__)

JOBS_STREAM = "PIXELRELAY_JOBS"
JOBS_PREFIX = "pixelrelay.jobs.images"
# One subject per task: billing's sweeper asks the stream whether a task's job is still
# queued or running (a work queue keeps a job until its ack) without reading it.
JOBS_SUBJECTS = f"{JOBS_PREFIX}.*"
EVENTS_STREAM = "PIXELRELAY_EVENTS"
EVENTS_PREFIX = "pixelrelay.events.task"
EVENTS_SUBJECTS = f"{EVENTS_PREFIX}.>"
# The durable consumers (bus_access.py grants each to its service alone).
GATEWAY_EVENTS_CONSUMER = "gateway-task-events"
SETTLEMENT_CONSUMER = "billing-settlement"
DISPATCHER_CONSUMER = "dispatcher"
DEADLETTER_CONSUMER = "dispatcher-deadletter"
# Jobs that reached their delivery limit: JetStream's advisory for each, and a copy of the
# job without its prompt, kept a week for inspection.
DEADLETTER_STREAM = "PIXELRELAY_DEADLETTER"
MAX_DELIVERIES_ADVISORY = (
    f"$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{JOBS_STREAM}.{DISPATCHER_CONSUMER}"
)
DEADLETTER_SUBJECT = "pixelrelay.deadletter.jobs"
# Task events the gateway could never apply (undecodable, for no task it knows, or failing
# on every try): kept a week with the reason, instead of being retried forever.
DEADLETTER_EVENTS_SUBJECT = "pixelrelay.deadletter.events"
REASON_HEADER = "Pixelrelay-Reason"
# Core NATS, no stream: a gateway tells the others a task settled (pixelrelay_gateway/core/waiting.py).
SETTLED_PREFIX = "pixelrelay.settled"
SETTLED_SUBJECTS = f"{SETTLED_PREFIX}.*"
# Core NATS, no stream: images from a dispatcher to the request waiting (relay.py).
PUBLISH_TIMEOUT_S = 5.0  # a publish waits this long for the connection, then its ack
RELAY_PREFIX = "pixelrelay.relay"
RELAY_SUBJECTS = f"{RELAY_PREFIX}.*.*"  # <a gateway's inbox>.<a request>
# Core NATS, no stream: each dispatcher's channel health, every few seconds, for every
# gateway (only the latest matters; channel_health.proto).
HEALTH_SUBJECT = "pixelrelay.health.channels"
# How long a consumer waits before asking again after JetStream refused a request.
FETCH_RETRY_SECONDS = 0.5
# How long a consumer's pull request stays open (consume()), and how long past that it
# waits for the server's word that it expired.
PULL_SECONDS = 1.0
PULL_GRACE_SECONDS = 0.5
DEDUP_WINDOW_S = 600.0

Handler = Callable[[Msg], Awaitable[None]]


def job_subject(task_id: str) -> str:
    return f"{JOBS_PREFIX}.{task_id}"


async def job_queued(js: JetStreamContext, task_id: str) -> bool:
    """Whether the task's job is in the work queue: waiting, or taken and not yet acked.
    Asks for the subject's message count only; the job (its sealed prompt) is not read."""
    try:
        info = await js.stream_info(JOBS_STREAM, subjects_filter=job_subject(task_id))
    except (TimeoutError, nats.errors.Error, nats.js.errors.Error) as exc:
        raise ApiError(E.UNAVAILABLE, "the job queue is unavailable") from exc
    return bool(info.state.subjects)


def inbox_prefix(user: str) -> str:
    return f"_INBOX_{user}"


async def connect(
    url: str, name: str, user: str = "", password: str = "", *, echo: bool = True
) -> NATS:
    """Connect as ``user`` (bus_access.py), retrying forever on later disconnects
    (JetStream keeps the data). Replies arrive under the user's own inbox prefix, the only
    one its permissions let it read. ``echo=False``: the connection's own publishes are
    not delivered back to its subscriptions."""
    credentials: dict[str, str] = {}
    if user:
        credentials = {"user": user, "password": password, "inbox_prefix": inbox_prefix(user)}
    return await nats.connect(
        [server.strip() for server in url.split(",")],  # a cluster: every server, comma-separated
        name=name,
        max_reconnect_attempts=-1,  # the first connect too: it waits for the bus to come up
        reconnect_time_wait=0.5,
        connect_timeout=5,
        error_cb=_error_log(),
        no_echo=not echo,
        **credentials,  # type: ignore[arg-type]
    )


def _error_log(
    every: float = 10.0, what: str = "NATS unreachable"
) -> Callable[[Exception], Awaitable[None]]:
    """Errors that repeat while the bus is down (the client reconnects every 0.5 s, a
    consumer fetches again): one line now and then, not a traceback per attempt."""
    last, unlogged = -every, 0

    async def on_error(exc: Exception) -> None:
        nonlocal last, unlogged
        unlogged += 1
        now = asyncio.get_running_loop().time()
        if now - last >= every:
            log.warning(
                what,
                extra={"error": f"{type(exc).__name__}: {exc}"[:200], "times": unlogged},
            )
            last, unlogged = now, 0

    return on_error


class StreamsMissing(Exception):
    """The bus is reachable but not set up."""


async def require_streams(js: JetStreamContext, *streams: str) -> None:
    """The streams exist, or StreamsMissing: the bus is set up by its administrator
    (`pixelrelay admin bus-setup`; `make run` does it), never by a service."""
    for stream in streams:
        try:
            await js.stream_info(stream)
        except nats.js.errors.NotFoundError:
            raise StreamsMissing(
                f"stream {stream} does not exist: run `pixelrelay admin bus-setup`"
            ) from None


async def connect_when_ready(
    settings: ServiceSettings,
    name: str,
    streams: tuple[str, ...],
    stop: asyncio.Event,
    *,
    echo: bool = True,
) -> tuple[NATS, JetStreamContext]:
    """Connect as the service's NATS user and find ``streams``, waiting (startup.py) until
    the bus is up and set up, or ``stop`` is set."""
    password = settings.nats_password.get_secret_value()
    nc = await unless_stopped(
        "NATS",
        connect(settings.nats_url, name, settings.nats_user, password, echo=echo),
        stop,
    )
    js = nc.jetstream()
    try:
        await keep_trying("the bus streams", lambda: require_streams(js, *streams), stop)
    except BaseException:
        await nc.close()
        raise
    return nc, js


async def ensure_streams(js: JetStreamContext, replicas: int = 1) -> None:
    """Create or update every stream (the bus administrator's job, idempotent), each kept
    on ``replicas`` servers: 3 on a 3-node cluster, so a node's loss loses nothing."""
    configs = [
        StreamConfig(
            name=JOBS_STREAM,
            subjects=[JOBS_SUBJECTS],
            retention=RetentionPolicy.WORK_QUEUE,
            storage=StorageType.FILE,
            duplicate_window=DEDUP_WINDOW_S,
            max_age=86_400.0,
            discard=DiscardPolicy.NEW,
        ),
        StreamConfig(
            name=DEADLETTER_STREAM,
            subjects=[MAX_DELIVERIES_ADVISORY, DEADLETTER_SUBJECT, DEADLETTER_EVENTS_SUBJECT],
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            max_age=7 * 86_400.0,
        ),
        StreamConfig(
            name=EVENTS_STREAM,
            subjects=[EVENTS_SUBJECTS],
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            duplicate_window=DEDUP_WINDOW_S,
            max_age=86_400.0,
        ),
    ]
    for config in configs:
        config.num_replicas = replicas
        try:
            await js.add_stream(config)
        except nats.js.errors.BadRequestError:
            await js.update_stream(config)


async def publish(js: JetStreamContext, subject: str, payload: bytes, msg_id: str) -> None:
    """Publish and wait for the stream's ack; a bus outage becomes 90002."""
    await publish_raw(js, subject, payload, {"Nats-Msg-Id": msg_id})


async def publish_raw(
    js: JetStreamContext, subject: str, payload: bytes, headers: dict[str, str]
) -> None:
    # While the client reconnects, nats-py keeps a publish in its buffer and sends it when
    # the bus is back, even after its caller was told it failed (a refused submit's job
    # would then run). So a publish waits for the connection instead, and is never made
    # if it does not come back in time.
    if not await _connected(js._nc, PUBLISH_TIMEOUT_S):  # the context's connection
        raise ApiError(E.UNAVAILABLE, "the job queue is unavailable")
    try:
        await js.publish(subject, payload, timeout=PUBLISH_TIMEOUT_S, headers=headers)
    except (TimeoutError, nats.errors.Error, nats.js.errors.Error) as exc:
        raise ApiError(E.UNAVAILABLE, "the job queue is unavailable") from exc


async def _connected(nc: NATS, within: float) -> bool:
    """Whether ``nc`` is connected, or connects again within ``within`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not nc.is_connected:
        if nc.is_closed or loop.time() >= deadline:
            return False
        await asyncio.sleep(0.05)
    return True


async def dead_letter(js: JetStreamContext, msg: Msg, reason: str) -> None:
    """Keep a message that can never be handled on the events dead-letter subject, with why
    and where it came from, then ack it: a poison message is not retried forever."""
    seq = msg.metadata.sequence.stream
    await publish_raw(
        js,
        DEADLETTER_EVENTS_SUBJECT,
        msg.data,
        {
            "Nats-Msg-Id": f"dead.{msg.subject}.{seq}",
            REASON_HEADER: reason,
            "Pixelrelay-Subject": msg.subject,
        },
    )
    await msg.ack()


def consumer_config(
    durable: str, *, ack_wait: float, max_deliver: int, only: list[str] | None = None
) -> ConsumerConfig:
    """``only``: the subjects it takes (all of the stream's if None)."""
    return ConsumerConfig(
        durable_name=durable,
        ack_policy=AckPolicy.EXPLICIT,
        ack_wait=ack_wait,
        max_deliver=max_deliver,
        max_ack_pending=10_000,
        filter_subjects=only,
    )


async def consume(
    js: JetStreamContext,
    *,
    stream: str,
    subject: str,
    config: ConsumerConfig,
    handler: Handler,
    stop: asyncio.Event,
    concurrency: int,
    grace: float,
) -> None:
    """Pull messages into up to ``concurrency`` handler tasks until ``stop`` is set.

    One pull request stays open (``PULL_SECONDS``) for as many messages as there are free
    handlers, and each message is handled the moment it arrives; the next request goes out
    once the last one is used up or expires. So a trickle costs one request per message at
    most and a burst one per batch, and an idle consumer one request a second (nats-py's
    ``fetch`` made two per message: one for it, one to see what else was ready; and its
    batch fetch held a first message until the batch filled).

    The handler owns the ack decision. On stop: no new requests, in-flight handlers
    get ``grace`` seconds, and whatever is left unacked is redelivered by JetStream.
    """
    durable = config.durable_name or ""
    await keep_trying(
        f"the {durable} consumer", lambda: _find_or_create(js, stream, subject, config), stop
    )
    nc: NATS = js._nc  # the connection the context was made from (nats-py has no getter)
    inbox = nc.new_inbox()
    sub = await nc.subscribe(inbox)
    request_subject = f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{durable}"
    loop = asyncio.get_running_loop()
    running: set[asyncio.Task[None]] = set()
    asked, open_until = 0, 0.0  # what the open request may still deliver, and until when
    trouble = _error_log(what="JetStream cannot serve the consumer")
    try:
        while not stop.is_set():
            now = loop.time()
            if asked and now >= open_until:
                asked = 0  # expired (its 408 may have been lost in a reconnect)
            free = concurrency - len(running)
            if asked == 0:
                if free <= 0:
                    await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                    continue
                pull = {"batch": free, "expires": int(PULL_SECONDS * 1e9)}
                try:
                    await nc.publish(request_subject, json.dumps(pull).encode(), reply=inbox)
                except nats.errors.ConnectionClosedError:
                    return
                asked, open_until = free, now + PULL_SECONDS + PULL_GRACE_SECONDS
            try:
                msg = await sub.next_msg(timeout=max(0.001, open_until - now))
            except (TimeoutError, nats.errors.TimeoutError):
                asked = 0
                continue
            except nats.errors.ConnectionClosedError:
                return
            status = JetStreamContext.is_status_msg(msg)
            if status == "100":  # an idle heartbeat
                continue
            if status is not None:  # 404/408: the request is used up; others: trouble
                asked = 0
                if status not in ("404", "408"):
                    # A JetStream cluster electing a new stream or consumer leader (a node
                    # died) answers 409 or nothing for a moment: wait and ask again.
                    described = (msg.headers or {}).get("Description", "")
                    await trouble(nats.js.errors.APIError(code=int(status), description=described))
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), FETCH_RETRY_SECONDS)
                continue
            asked -= 1
            task = asyncio.create_task(_run_handler(handler, msg))
            running.add(task)
            task.add_done_callback(running.discard)
    finally:
        if running:
            _done, pending = await asyncio.wait(running, timeout=grace)
            for task in pending:
                task.cancel()
        with contextlib.suppress(Exception):
            await sub.unsubscribe()


async def _find_or_create(
    js: JetStreamContext, stream: str, subject: str, config: ConsumerConfig
) -> None:
    """The durable consumer, created with ``config`` if it does not exist (filtered on
    ``subject`` unless the config names its subjects), its filter updated if it changed
    (a consumer made by an earlier release, on a bus that was kept)."""
    if not config.filter_subjects:
        config.filter_subject = subject
    try:
        info = await js.consumer_info(stream, config.durable_name or "")
    except nats.js.errors.NotFoundError:
        await js.add_consumer(stream, config=config)
        return
    found = info.config
    if (found.filter_subject, found.filter_subjects) != (
        config.filter_subject,
        config.filter_subjects,
    ):
        await js.add_consumer(stream, config=config)  # create-or-update on nats-server 2.10+


async def _run_handler(handler: Handler, msg: Msg) -> None:
    try:
        await handler(msg)
    except asyncio.CancelledError:
        # Shutting down mid-job: no ack, so JetStream redelivers it to another worker.
        raise
    except Exception:
        log.exception("message handler failed; will be redelivered")
        with contextlib.suppress(Exception):
            await msg.nak(delay=1.0)


def backoff(delivered: int, *, first: float, most: float) -> float:
    """The nak delay after a message's ``delivered``-th attempt: ``first``, twice that,
    four times… up to ``most``."""
    return float(min(most, first * 2 ** max(0, delivered - 1)))


@contextlib.asynccontextmanager
async def heartbeat(msg: Msg, every: float) -> AsyncIterator[None]:
    """Tell JetStream we are still working (``+WPI``) so a slow job is not redelivered."""

    async def beat() -> None:
        while True:
            await asyncio.sleep(every)
            with contextlib.suppress(Exception):
                await msg.in_progress()

    task = asyncio.create_task(beat())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
