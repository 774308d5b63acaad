"""Failover across a model's channels: the first that answers with valid images wins."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from prometheus_client import Histogram

from dispatcher.errors import UpstreamError
from dispatcher.upstream import Generation, InputImage, OpenAIImagesChannel
from pixelrelay.v1 import common_pb2

log = logging.getLogger(__name__)

UPSTREAM_CALLS = Histogram(
    "pixelrelay_upstream_seconds",
    "Upstream call time",
    ["channel", "outcome"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300),
)


@dataclass(frozen=True)
class Attempt:
    channel: str
    outcome: str  # "ok" or the error class name
    latency_ms: int


class AllChannelsFailed(Exception):
    def __init__(self, last: UpstreamError, attempts: list[Attempt]):
        super().__init__(last.message)
        self.last = last
        self.attempts = attempts


class Router:
    def __init__(self, channels: list[OpenAIImagesChannel]):
        if not channels:
            raise ValueError("at least one upstream channel is required")
        self.channels = channels

    async def generate(
        self,
        task_id: str,
        prompt: str,
        spec: common_pb2.ImageSpec,
        references: list[InputImage] | None = None,
        mask: InputImage | None = None,
    ) -> tuple[Generation, list[Attempt]]:
        attempts: list[Attempt] = []
        last: UpstreamError | None = None
        for channel in self.channels:
            started = time.perf_counter()
            try:
                result = await channel.generate(prompt, spec, references, mask)
            except UpstreamError as err:
                attempts.append(self._record(channel.name, type(err).__name__, started))
                log.warning(
                    "upstream attempt failed",
                    extra={
                        "task_id": task_id,
                        "channel": channel.name,
                        "error": type(err).__name__,
                        "latency_ms": attempts[-1].latency_ms,
                    },
                )
                last = err
                if not err.failover:
                    break
                continue
            attempts.append(self._record(channel.name, "ok", started))
            return result, attempts
        assert last is not None
        raise AllChannelsFailed(last, attempts)

    @staticmethod
    def _record(channel: str, outcome: str, started: float) -> Attempt:
        elapsed = time.perf_counter() - started
        UPSTREAM_CALLS.labels(channel, outcome).observe(elapsed)
        return Attempt(channel, outcome, int(elapsed * 1000))

    async def close(self) -> None:
        for channel in self.channels:
            await channel.close()
