"""Routing a job to upstream channels: capability filter, breakers, failover.

For each job: the model's route gives the channel order (as listed, or a weighted
shuffle); channels that cannot do the request, whose breaker is open, or that are at their
concurrency limit (unless last) are skipped without delay; the first to return valid
images wins. A permanent error (the request itself is refused) stops at once.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from prometheus_client import Counter, Gauge, Histogram

from pixelrelay.v1 import channel_health_pb2, common_pb2
from pixelrelay_dispatcher.breaker import CircuitBreaker
from pixelrelay_dispatcher.channels import ChannelConfig, ChannelsFile
from pixelrelay_dispatcher.errors import (
    ChannelAuthError,
    ChannelNotFoundError,
    PermanentError,
    RetryableError,
    UpstreamError,
)
from pixelrelay_dispatcher.health import CallWindow
from pixelrelay_dispatcher.upstream import Generation, ImagesChannel, InputImage, Partials

log = logging.getLogger(__name__)

UPSTREAM_CALLS = Histogram(
    "pixelrelay_upstream_seconds",
    "Upstream call time",
    ["channel", "outcome"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300),
)
UPSTREAM_REQUESTS = Counter("pixelrelay_upstream_requests_total", "Upstream calls", ["channel"])
UPSTREAM_ERRORS = Counter(
    "pixelrelay_upstream_errors_total", "Upstream failures by class", ["channel", "error_class"]
)
UPSTREAM_COST = Counter(
    "pixelrelay_upstream_cost_micros_total",
    "What the upstreams charge for the images delivered, at the channels' configured "
    "prices, in millionths of a dollar",
    ["channel", "upstream_model"],
)
BREAKER_STATE = Gauge(
    "pixelrelay_channel_breaker_state", "0 closed, 1 half-open, 2 open", ["channel"]
)

# How long a channel whose key was refused (401/403, exhausted quota) or whose deployment
# is not there (404) is left alone.
AUTH_FAILURE_COOLDOWN = 300.0


@dataclass(frozen=True)
class Attempt:
    channel: str
    outcome: str  # "ok", an UpstreamError's outcome, or "skipped_open" / "skipped_busy"
    latency_ms: int
    usage: common_pb2.Usage | None = None  # what the upstream reported (an ok attempt)
    cost_micros: int = 0  # its usage at the channel's price, in millionths of a dollar
    priced: bool = False  # the channel has a price

    def to_proto(self) -> common_pb2.Attempt:
        return common_pb2.Attempt(
            channel=self.channel,
            outcome=self.outcome,
            latency_ms=self.latency_ms,
            usage=self.usage,
            cost_micros=self.cost_micros,
            priced=self.priced,
        )


class AllChannelsFailed(Exception):
    def __init__(self, last: UpstreamError, attempts: list[Attempt]):
        super().__init__(last.message)
        self.last = last
        self.attempts = attempts


@dataclass
class Channel:
    name: str
    config: ChannelConfig
    adapter: ImagesChannel
    breaker: CircuitBreaker
    calls: CallWindow = field(default_factory=CallWindow)  # for the operator (health.py)
    slots: asyncio.Semaphore = field(init=False)

    def __post_init__(self) -> None:
        self.slots = asyncio.Semaphore(self.config.max_concurrency)

    def refuses(self, spec: common_pb2.ImageSpec, mask: bool) -> str | None:
        """Why this channel cannot take ``spec`` (its own limits), or None if it can."""
        limits = self.config.capabilities
        return limits.supports(spec, mask=mask) if limits else None

    @property
    def streams_previews(self) -> bool:
        limits = self.config.capabilities
        return limits.partial_images if limits else True


class Router:
    def __init__(
        self,
        config: ChannelsFile,
        api_keys: dict[str, str],
        *,
        rng: random.Random | None = None,
        breaker: Callable[[], CircuitBreaker] = CircuitBreaker,
    ):
        self.config = config
        self.rng = rng or random.Random()
        self.channels = {
            name: Channel(
                name,
                cfg,
                ImagesChannel.from_config(name, cfg, api_keys[cfg.api_key_env]),
                breaker(),
            )
            for name, cfg in config.channels.items()
        }
        for name in self.channels:
            BREAKER_STATE.labels(name).set(0)

    async def generate(
        self,
        task_id: str,
        prompt: str,
        spec: common_pb2.ImageSpec,
        references: list[InputImage] | None = None,
        mask: InputImage | None = None,
        partials: Partials | None = None,
    ) -> tuple[Generation, list[Attempt]]:
        attempts: list[Attempt] = []
        candidates = self._candidates(spec, mask is not None)
        if not candidates:
            raise AllChannelsFailed(
                PermanentError("no upstream channel supports this request"), attempts
            )
        last: UpstreamError | None = None
        for position, channel in enumerate(candidates):
            final = position == len(candidates) - 1
            if not channel.breaker.allow() and not (final and last is None):
                attempts.append(Attempt(channel.name, "skipped_open", 0))
                continue
            if channel.slots.locked() and not final:
                attempts.append(Attempt(channel.name, "skipped_busy", 0))
                continue
            started = time.perf_counter()
            try:
                async with channel.slots:
                    UPSTREAM_REQUESTS.labels(channel.name).inc()
                    result = await channel.adapter.generate(
                        prompt,
                        spec,
                        references,
                        mask,
                        partials if channel.streams_previews else None,
                    )
            except UpstreamError as err:
                attempts.append(self._record(channel, err.outcome, started))
                self._judge(channel, err)
                log.warning(
                    "upstream attempt failed",
                    extra={
                        "task_id": task_id,
                        "channel": channel.name,
                        "error": err.outcome,
                        "latency_ms": attempts[-1].latency_ms,
                    },
                )
                last = err
                if not err.failover:
                    break
                continue
            channel.breaker.record_success()
            BREAKER_STATE.labels(channel.name).set(channel.breaker.state)
            attempts.append(self._paid(self._record(channel, "ok", started), channel, result))
            return result, attempts
        raise AllChannelsFailed(
            last or RetryableError("every upstream channel is cooling down"), attempts
        )

    def _candidates(self, spec: common_pb2.ImageSpec, mask: bool) -> list[Channel]:
        order = self.config.routes[spec.model].order(self.rng)
        return [
            self.channels[name] for name in order if self.channels[name].refuses(spec, mask) is None
        ]

    @staticmethod
    def _judge(channel: Channel, err: UpstreamError) -> None:
        UPSTREAM_ERRORS.labels(channel.name, err.outcome).inc()
        if isinstance(err, PermanentError):
            channel.breaker.record_success()  # the channel answered; the request was bad
        elif isinstance(err, (ChannelAuthError, ChannelNotFoundError)):
            channel.breaker.hold_open(AUTH_FAILURE_COOLDOWN)
        else:
            channel.breaker.record_failure()
            if err.retry_after:
                channel.breaker.hold_open(err.retry_after)
        BREAKER_STATE.labels(channel.name).set(channel.breaker.state)

    @staticmethod
    def _paid(attempt: Attempt, channel: Channel, result: Generation) -> Attempt:
        """The attempt with the usage the upstream reported and its cost at the channel's
        price (the operator's margin)."""
        price = channel.config.price
        cost = price.cost_micros(result.usage) if price else 0
        if cost:
            UPSTREAM_COST.labels(channel.name, channel.config.model).inc(cost)
        return dataclasses.replace(attempt, usage=result.usage, cost_micros=cost)

    @staticmethod
    def _record(channel: Channel, outcome: str, started: float) -> Attempt:
        elapsed = time.perf_counter() - started
        UPSTREAM_CALLS.labels(channel.name, outcome).observe(elapsed)
        channel.calls.record(outcome, elapsed * 1000)
        return Attempt(
            channel.name, outcome, int(elapsed * 1000), priced=channel.config.price is not None
        )

    def health(self) -> list[channel_health_pb2.ChannelWindow]:
        """Each channel's breaker and its calls of the recent window (health.py)."""
        return [
            channel.calls.totals(name, channel.breaker.state.name.lower())
            for name, channel in self.channels.items()
        ]

    async def close(self) -> None:
        for channel in self.channels.values():
            await channel.adapter.close()
