"""bus.consume keeps going through what a JetStream cluster answers while it elects a
leader (a node was killed): the dispatcher once crashed on a 503 from ``fetch``.

The NATS client is replaced by a scripted stand-in here: a real cluster only answers 503
during an election, which `make cluster-test` provokes with real processes."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import nats.errors
import nats.js.errors
import pytest

from pixelrelay import bus


class ScriptedSubscription:
    def __init__(self, answers: list[Any], stop: asyncio.Event) -> None:
        self.answers = answers
        self.stop = stop
        self.fetches = 0

    async def fetch(self, batch: int, **_wait: float) -> list[Any]:
        self.fetches += 1
        if not self.answers:
            self.stop.set()
            return []
        answer = self.answers.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return [answer]

    async def unsubscribe(self) -> None:
        pass


class ScriptedJetStream:
    def __init__(self, subscribe_failures: int, sub: ScriptedSubscription) -> None:
        self.subscribe_failures = subscribe_failures
        self.sub = sub

    async def pull_subscribe(self, *_args: Any, **_kwargs: Any) -> ScriptedSubscription:
        if self.subscribe_failures:
            self.subscribe_failures -= 1
            raise nats.errors.NoRespondersError()
        return self.sub


async def run(js: ScriptedJetStream, stop: asyncio.Event) -> list[str]:
    handled: list[str] = []

    async def handler(msg: Any) -> None:
        handled.append(msg)

    await asyncio.wait_for(
        bus.consume(
            js,  # type: ignore[arg-type]
            stream=bus.JOBS_STREAM,
            subject=bus.JOBS_SUBJECT,
            config=bus.consumer_config("test", ack_wait=5, max_deliver=3),
            handler=handler,
            stop=stop,
            concurrency=4,
            grace=1.0,
        ),
        timeout=30,
    )
    return handled


async def test_a_refused_fetch_is_retried_and_logged_once(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bus, "FETCH_RETRY_SECONDS", 0.01)
    stop = asyncio.Event()
    unavailable = nats.js.errors.ServiceUnavailableError()
    sub = ScriptedSubscription(
        ["first", unavailable, unavailable, nats.errors.NoRespondersError(), "second"], stop
    )
    with caplog.at_level(logging.WARNING, logger="pixelrelay.bus"):
        handled = await run(ScriptedJetStream(0, sub), stop)
    assert handled == ["first", "second"]
    warnings = [
        r for r in caplog.records if r.getMessage() == "JetStream cannot serve the consumer"
    ]
    assert len(warnings) == 1  # three refusals in a row, one line


async def test_the_consumer_is_created_once_the_cluster_answers() -> None:
    stop = asyncio.Event()
    sub = ScriptedSubscription(["job"], stop)
    assert await run(ScriptedJetStream(1, sub), stop) == ["job"]


async def test_a_closed_connection_ends_the_loop() -> None:
    stop = asyncio.Event()
    sub = ScriptedSubscription(["job", nats.errors.ConnectionClosedError(), "never"], stop)
    assert await run(ScriptedJetStream(0, sub), stop) == ["job"]
    assert not stop.is_set()
