"""The OpenAI adapter and the router against the simulator over real HTTP."""

from __future__ import annotations

import pytest

from dispatcher.errors import (
    AmbiguousError,
    BadOutputError,
    ChannelAuthError,
    PermanentError,
    RetryableError,
)
from dispatcher.router import AllChannelsFailed, Router
from dispatcher.upstream import OpenAIImagesChannel
from pixelrelay.metrics import free_port
from pixelrelay.v1 import common_pb2
from tests.integration.conftest import Simulator

SPEC = common_pb2.ImageSpec(
    model="gpt-image-2",
    size="1:1",
    resolution="1k",
    width=1024,
    height=1024,
    n=1,
    output_format="png",
)


def channel(url: str, name: str = "c", timeout: float = 10.0) -> OpenAIImagesChannel:
    return OpenAIImagesChannel(name, url, "sk-test", "gpt-image-2", timeout)


async def test_generates_valid_images(simulator: Simulator) -> None:
    stable = common_pb2.ImageSpec(
        model="gpt-image-2-official",
        width=1536,
        height=1024,
        n=3,
        quality="low",
        output_format="webp",
        output_compression=80,
    )
    result = await channel(simulator.url).generate("a fox", stable)
    assert [(i.format, i.width, i.height) for i in result.images] == [("webp", 1536, 1024)] * 3
    assert result.quality == "low"
    [seen] = await simulator.requests()
    assert (seen["size"], seen["n"], seen["output_format"], seen["output_compression"]) == (
        "1536x1024",
        3,
        "webp",
        80,
    )


@pytest.mark.parametrize(
    ("rule", "error"),
    [
        ({"kind": "status", "status": 500}, RetryableError),
        ({"kind": "status", "status": 503, "code": "server_is_overloaded"}, RetryableError),
        ({"kind": "status", "status": 429, "retry_after": 3}, RetryableError),
        ({"kind": "status", "status": 401, "code": "invalid_api_key"}, ChannelAuthError),
        ({"kind": "status", "status": 429, "code": "insufficient_quota"}, ChannelAuthError),
        (
            {
                "kind": "status",
                "status": 400,
                "code": "moderation_blocked",
                "type": "image_generation_user_error",
            },
            PermanentError,
        ),
        ({"kind": "bad_base64"}, BadOutputError),
        ({"kind": "truncated"}, BadOutputError),
        ({"kind": "wrong_size"}, BadOutputError),
        ({"kind": "drop"}, AmbiguousError),
        ({"kind": "hang", "seconds": 5}, AmbiguousError),
    ],
)
async def test_upstream_failures_are_classified(
    simulator: Simulator, rule: dict[str, object], error: type[Exception]
) -> None:
    await simulator.faults(rule)
    with pytest.raises(error) as caught:
        await channel(simulator.url, timeout=1.0).generate("p", SPEC)
    if rule.get("retry_after"):
        assert caught.value.retry_after == 3  # type: ignore[attr-defined]


async def test_refused_connection_is_retryable() -> None:
    with pytest.raises(RetryableError):
        await channel(f"http://127.0.0.1:{free_port()}/v1").generate("p", SPEC)


async def test_router_fails_over_to_the_next_channel(simulator: Simulator) -> None:
    dead = channel(f"http://127.0.0.1:{free_port()}/v1", "dead")
    router = Router([dead, channel(simulator.url, "live")])
    result, attempts = await router.generate("t", "p", SPEC)
    assert len(result.images) == 1
    assert [(a.channel, a.outcome) for a in attempts] == [
        ("dead", "RetryableError"),
        ("live", "ok"),
    ]


async def test_router_does_not_fail_over_a_rejected_request(simulator: Simulator) -> None:
    await simulator.faults(
        {"kind": "status", "status": 400, "code": "moderation_blocked", "times": 1}
    )
    router = Router([channel(simulator.url, "first"), channel(simulator.url, "second")])
    with pytest.raises(AllChannelsFailed) as caught:
        await router.generate("t", "p", SPEC)
    assert isinstance(caught.value.last, PermanentError)
    assert "moderation_blocked" in caught.value.last.message
    assert [a.channel for a in caught.value.attempts] == ["first"]
    assert len(await simulator.requests()) == 1
