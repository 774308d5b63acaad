"""The OpenAI adapter and the router against the simulator over real HTTP."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from pixelrelay.v1 import common_pb2
from pixelrelay_dispatcher.channels import ChannelsFile
from pixelrelay_dispatcher.errors import (
    AmbiguousError,
    BadOutputError,
    ChannelAuthError,
    PermanentError,
    RetryableError,
)
from pixelrelay_dispatcher.router import AllChannelsFailed, Router
from pixelrelay_dispatcher.upstream import ImagesChannel, InputImage, Partials
from pixelrelay_sim.render import render_image
from tests.integration.conftest import Simulator
from tests.utils.servers import refusing_port

SPEC = common_pb2.ImageSpec(
    model="gpt-image-2",
    size="1:1",
    resolution="1k",
    width=1024,
    height=1024,
    n=1,
    output_format="png",
)


def channel(url: str, name: str = "c", timeout: float = 10.0) -> ImagesChannel:
    return ImagesChannel(name, url, "sk-test", "gpt-image-2", timeout)


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


class Collected:
    def __init__(self) -> None:
        self.previews: list[bytes] = []

    async def send(self, data: bytes) -> None:
        self.previews.append(data)


async def test_a_streamed_call_sends_each_preview_on_and_returns_the_images(
    simulator: Simulator,
) -> None:
    sink = Collected()
    result = await channel(simulator.url).generate("a fox", SPEC, partials=Partials(2, sink.send))
    assert len(sink.previews) == 2
    assert all(Image.open(io.BytesIO(p)).size == (1024, 1024) for p in sink.previews)
    assert [(i.format, i.width) for i in result.images] == [("png", 1024)]
    assert result.usage.output_tokens > 0 and result.usage.input_text_tokens > 0
    [seen] = await simulator.requests()
    assert {"stream", "partial_images"} <= set(seen["fields"])  # type: ignore[call-overload]


async def test_a_streamed_edit_uses_the_edits_endpoint(simulator: Simulator) -> None:
    sink = Collected()
    ref = InputImage("ref0.png", render_image("ref", 1024, 1024, "png"))
    result = await channel(simulator.url).generate(
        "paint it", SPEC, [ref], partials=Partials(1, sink.send)
    )
    assert len(result.images) == 1 and len(sink.previews) == 1
    [seen] = await simulator.requests()
    assert seen["endpoint"] == "edits"


@pytest.mark.parametrize(
    ("rule", "error"),
    [
        ({"kind": "status", "status": 500}, RetryableError),
        ({"kind": "bad_base64"}, BadOutputError),
        ({"kind": "wrong_size"}, BadOutputError),
    ],
)
async def test_a_streamed_call_is_judged_like_any_other(
    simulator: Simulator, rule: dict[str, object], error: type[Exception]
) -> None:
    await simulator.faults(rule)
    with pytest.raises(error):
        await channel(simulator.url).generate("p", SPEC, partials=Partials(1, Collected().send))


async def test_a_channel_without_previews_is_called_plainly(simulator: Simulator) -> None:
    sink = Collected()
    r = router(simulator.url, caps={"partial_images": False})
    result, _attempts = await r.generate("t", "p", SPEC, partials=Partials(2, sink.send))
    assert len(result.images) == 1 and sink.previews == []
    [seen] = await simulator.requests()
    assert "stream" not in seen["fields"]  # type: ignore[operator]


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
    with refusing_port() as port, pytest.raises(RetryableError):
        await channel(f"http://127.0.0.1:{port}/v1").generate("p", SPEC)


def router(*urls: str, caps: dict[str, object] | None = None) -> Router:
    names = [f"c{i}" for i in range(len(urls))]
    config = ChannelsFile.model_validate(
        {
            "channels": {
                name: {
                    "base_url": url,
                    "model": "gpt-image-2",
                    "timeout": 5,
                    "capabilities": caps or {"max_n": 4, "masks": True},
                }
                for name, url in zip(names, urls, strict=True)
            },
            "routes": {m: {"channels": names} for m in ("gpt-image-2", "gpt-image-2-official")},
        }
    )
    return Router(config, {"UPSTREAM_API_KEY": "sk-test"})


async def test_router_fails_over_past_a_refused_connection(simulator: Simulator) -> None:
    with refusing_port() as port:
        r = router(f"http://127.0.0.1:{port}/v1", simulator.url)
        result, attempts = await r.generate("t", "p", SPEC)
    assert len(result.images) == 1
    assert [(a.channel, a.outcome) for a in attempts] == [
        ("c0", "upstream_unavailable"),
        ("c1", "ok"),
    ]


@pytest.mark.parametrize(
    "rule",
    [
        {"kind": "status", "status": 500},
        {"kind": "status", "status": 503},
        {"kind": "status", "status": 429, "retry_after": 30},
        {"kind": "drop"},
        {"kind": "bad_base64"},
        {"kind": "status", "status": 401},
    ],
)
async def test_router_fails_over_on_upstream_failures(
    simulator: Simulator, backup_simulator: Simulator, rule: dict[str, object]
) -> None:
    await simulator.faults(rule)
    r = router(simulator.url, backup_simulator.url)
    result, attempts = await r.generate("t", "p", SPEC)
    assert [a.channel for a in attempts] == ["c0", "c1"]
    assert attempts[-1].outcome == "ok" and len(await backup_simulator.requests()) == 1


async def test_an_open_breaker_skips_the_channel_without_trying_it(
    simulator: Simulator, backup_simulator: Simulator
) -> None:
    await simulator.faults({"kind": "status", "status": 500})
    r = router(simulator.url, backup_simulator.url)
    for _ in range(3):
        await r.generate("t", "p", SPEC)
    assert len(await simulator.requests()) == 3
    _, attempts = await r.generate("t", "p", SPEC)
    assert [(a.channel, a.outcome, a.latency_ms) for a in attempts][0] == ("c0", "skipped_open", 0)
    assert len(await simulator.requests()) == 3  # not contacted while open


async def test_429_retry_after_cools_the_channel(
    simulator: Simulator, backup_simulator: Simulator
) -> None:
    await simulator.faults({"kind": "status", "status": 429, "retry_after": 60, "times": 1})
    r = router(simulator.url, backup_simulator.url)
    await r.generate("t", "p", SPEC)
    _, attempts = await r.generate("t", "p", SPEC)
    assert attempts[0].outcome == "skipped_open"
    assert r.channels["c0"].breaker.reopens_in() > 50


async def test_capabilities_steer_requests(simulator: Simulator) -> None:
    r = router(simulator.url, caps={"max_n": 1})
    with pytest.raises(AllChannelsFailed) as caught:
        await r.generate(
            "t",
            "p",
            common_pb2.ImageSpec(
                model="gpt-image-2-official", width=1024, height=1024, n=2, output_format="png"
            ),
        )
    assert isinstance(caught.value.last, PermanentError)
    assert await simulator.requests() == []


async def test_router_does_not_fail_over_a_rejected_request(
    simulator: Simulator, backup_simulator: Simulator
) -> None:
    await simulator.faults({"kind": "status", "status": 400, "code": "moderation_blocked"})
    r = router(simulator.url, backup_simulator.url)
    with pytest.raises(AllChannelsFailed) as caught:
        await r.generate("t", "p", SPEC)
    assert isinstance(caught.value.last, PermanentError)
    assert "moderation_blocked" in caught.value.last.message
    assert [a.channel for a in caught.value.attempts] == ["c0"]
    assert await backup_simulator.requests() == []


@pytest.mark.security
@pytest.mark.parametrize("code", ["content_policy_violation", "Not A Code <script>"])
async def test_upstream_free_text_never_reaches_the_task(simulator: Simulator, code: str) -> None:
    """The upstream's message may echo the request: only its status and code travel on."""
    await simulator.faults(
        {"kind": "status", "status": 400, "code": code, "message": "echo: SECRET-PROMPT-TEXT"}
    )
    with pytest.raises(PermanentError) as caught:
        await channel(simulator.url).generate("p", SPEC)
    assert (
        "SECRET-PROMPT-TEXT" not in caught.value.message and "<script>" not in caught.value.message
    )
    assert caught.value.message.startswith("the upstream refused the request (400)")
    assert (code in caught.value.message) == (code == "content_policy_violation")
