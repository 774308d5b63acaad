"""bus.consume: one pull request open at a time for as many messages as there are free
handlers, each message handled as it arrives; and it keeps going through what a JetStream
cluster answers while it elects a leader (a node was killed): the dispatcher once crashed
on a 503.

The NATS client is replaced by a scripted stand-in here: a real cluster only answers 409 or
nothing during an election, which `make cluster-test` provokes with real processes; the
e2e tests run the real thing on every consumer."""

from __future__ import annotations

import asyncio
import json
import logging
from types import SimpleNamespace
from typing import Any

import nats.errors
import nats.js.errors
import pytest

from pixelrelay import bus


class Message:
    def __init__(self, data: str, status: str | None = None) -> None:
        self.data = data
        self.headers = {"Status": status, "Description": "x"} if status else None


class ScriptedConnection:
    """Answers each pull request's wait with the next scripted answer: a message, a status
    message, or an exception; stops the consumer when the script ends."""

    def __init__(self, answers: list[Any], stop: asyncio.Event) -> None:
        self.answers = answers
        self.stop = stop
        self.pulls: list[dict[str, int]] = []

    def new_inbox(self) -> str:
        return "_INBOX_test.1"

    async def subscribe(self, subject: str) -> ScriptedConnection:
        return self

    async def publish(self, subject: str, payload: bytes, reply: str = "") -> None:
        assert subject == f"$JS.API.CONSUMER.MSG.NEXT.{bus.JOBS_STREAM}.test"
        assert reply == "_INBOX_test.1"
        self.pulls.append(json.loads(payload))

    async def next_msg(self, timeout: float) -> Any:  # noqa: ASYNC109 (nats-py's signature)
        if not self.answers:
            self.stop.set()
            raise nats.errors.TimeoutError
        answer = self.answers.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return answer

    async def unsubscribe(self) -> None:
        pass


class ScriptedJetStream:
    def __init__(self, lookup_failures: int, nc: ScriptedConnection) -> None:
        self.lookup_failures = lookup_failures
        self._nc = nc
        self.created: list[Any] = []

    async def consumer_info(self, stream: str, durable: str) -> Any:
        if self.lookup_failures:
            self.lookup_failures -= 1
            raise nats.errors.NoRespondersError()
        if not self.created:
            raise nats.js.errors.NotFoundError()
        return SimpleNamespace(config=self.created[-1])

    async def add_consumer(self, stream: str, config: Any) -> None:
        self.created.append(config)


async def run(js: ScriptedJetStream, stop: asyncio.Event, concurrency: int = 4) -> list[str]:
    handled: list[str] = []

    async def handler(msg: Any) -> None:
        handled.append(msg.data)

    await asyncio.wait_for(
        bus.consume(
            js,  # type: ignore[arg-type]
            stream=bus.JOBS_STREAM,
            subject=bus.JOBS_SUBJECTS,
            config=bus.consumer_config("test", ack_wait=5, max_deliver=3),
            handler=handler,
            stop=stop,
            concurrency=concurrency,
            grace=1.0,
        ),
        timeout=30,
    )
    return handled


async def test_one_request_serves_a_burst_and_a_used_up_one_is_renewed() -> None:
    stop = asyncio.Event()
    nc = ScriptedConnection(
        [Message("a"), Message("b"), Message("c"), Message("", "408"), Message("d")], stop
    )
    js = ScriptedJetStream(0, nc)
    assert await run(js, stop) == ["a", "b", "c", "d"]
    # The first request asked for every free handler; the expired one (408) was renewed.
    assert nc.pulls[0]["batch"] == 4 and len(nc.pulls) >= 2
    assert js.created[0].filter_subject == bus.JOBS_SUBJECTS  # made once, on first use


async def test_a_refused_request_is_renewed_and_logged_once(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bus, "FETCH_RETRY_SECONDS", 0.01)
    stop = asyncio.Event()
    leaderless = Message("", "409")
    nc = ScriptedConnection(
        [Message("first"), leaderless, leaderless, Message("", "100"), Message("second")], stop
    )
    with caplog.at_level(logging.WARNING, logger="pixelrelay.bus"):
        handled = await run(ScriptedJetStream(0, nc), stop)
    assert handled == ["first", "second"]  # a heartbeat (100) is not a message
    warnings = [
        r for r in caplog.records if r.getMessage() == "JetStream cannot serve the consumer"
    ]
    assert len(warnings) == 1  # two refusals in a row, one line


async def test_the_consumer_is_found_once_the_cluster_answers() -> None:
    stop = asyncio.Event()
    nc = ScriptedConnection([Message("job")], stop)
    assert await run(ScriptedJetStream(1, nc), stop) == ["job"]


async def test_a_consumer_made_with_another_filter_is_updated() -> None:
    """A bus kept from an earlier release: the consumer's filter follows the code's."""
    stop = asyncio.Event()
    js = ScriptedJetStream(0, ScriptedConnection([], stop))
    js.created.append(bus.consumer_config("test", ack_wait=5, max_deliver=3))
    js.created[0].filter_subject = "pixelrelay.jobs.images"  # the old subject
    await run(js, stop)
    assert [c.filter_subject for c in js.created] == ["pixelrelay.jobs.images", bus.JOBS_SUBJECTS]


async def test_a_closed_connection_ends_the_loop() -> None:
    stop = asyncio.Event()
    nc = ScriptedConnection(
        [Message("job"), nats.errors.ConnectionClosedError(), Message("never")], stop
    )
    assert await run(ScriptedJetStream(0, nc), stop) == ["job"]
    assert not stop.is_set()


async def test_no_more_is_asked_than_there_are_free_handlers() -> None:
    stop = asyncio.Event()
    release = asyncio.Event()
    nc = ScriptedConnection([Message("a"), Message("b"), Message("", "408")], stop)
    handled: list[str] = []

    async def slow(msg: Any) -> None:
        handled.append(msg.data)
        await release.wait()

    consuming = asyncio.create_task(
        bus.consume(
            ScriptedJetStream(0, nc),  # type: ignore[arg-type]
            stream=bus.JOBS_STREAM,
            subject=bus.JOBS_SUBJECTS,
            config=bus.consumer_config("test", ack_wait=5, max_deliver=3),
            handler=slow,
            stop=stop,
            concurrency=2,
            grace=1.0,
        )
    )
    await asyncio.sleep(0.1)
    assert handled == ["a", "b"] and [p["batch"] for p in nc.pulls] == [2]  # both busy
    release.set()
    await asyncio.wait_for(consuming, 10)
    assert all(p["batch"] <= 2 for p in nc.pulls)
