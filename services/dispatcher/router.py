"""Failover across a model's channels: the first that answers with valid images wins."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from dispatcher.errors import UpstreamError
from dispatcher.upstream import Generation, OpenAIImagesChannel
from pixelrelay.v1 import common_pb2

log = logging.getLogger(__name__)


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
        self, task_id: str, prompt: str, spec: common_pb2.ImageSpec
    ) -> tuple[Generation, list[Attempt]]:
        attempts: list[Attempt] = []
        last: UpstreamError | None = None
        for channel in self.channels:
            started = time.perf_counter()
            try:
                result = await channel.generate(prompt, spec)
            except UpstreamError as err:
                elapsed = int((time.perf_counter() - started) * 1000)
                attempts.append(Attempt(channel.name, type(err).__name__, elapsed))
                log.warning(
                    "upstream attempt failed",
                    extra={
                        "task_id": task_id,
                        "channel": channel.name,
                        "error": type(err).__name__,
                        "latency_ms": elapsed,
                    },
                )
                last = err
                if not err.failover:
                    break
                continue
            attempts.append(
                Attempt(channel.name, "ok", int((time.perf_counter() - started) * 1000))
            )
            return result, attempts
        assert last is not None
        raise AllChannelsFailed(last, attempts)

    async def close(self) -> None:
        for channel in self.channels:
            await channel.close()
