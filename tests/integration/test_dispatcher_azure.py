"""The adapter as an Azure OpenAI image deployment's client, and failover across
providers, against the simulator over real HTTP (it answers both request shapes)."""

from __future__ import annotations

import pytest

from pixelrelay_dispatcher.channels import ChannelsFile
from pixelrelay_dispatcher.errors import ChannelAuthError, ChannelNotFoundError, RetryableError
from pixelrelay_dispatcher.router import AUTH_FAILURE_COOLDOWN, AllChannelsFailed, Router
from pixelrelay_dispatcher.upstream import ImagesChannel, InputImage, Partials
from pixelrelay_sim.render import render_image
from pixelrelay_sim.settings import SimSettings
from tests.integration.conftest import Simulator, running_simulator
from tests.integration.test_dispatcher_upstream import SPEC, Collected

API_VERSION = "2025-04-01-preview"


def azure(endpoint: str, deployment: str = "gpt-image-2", key: str = "azure-key") -> ImagesChannel:
    return ImagesChannel(
        "az",
        endpoint,
        key,
        "gpt-image-2",
        10.0,
        provider="azure",
        deployment=deployment,
        api_version=API_VERSION,
    )


async def test_a_generation_takes_azures_path_query_and_key_header(simulator: Simulator) -> None:
    result = await azure(simulator.endpoint).generate("a fox", SPEC)
    assert [(i.format, i.width, i.height) for i in result.images] == [("png", 1024, 1024)]
    assert result.usage.output_tokens > 0
    [seen] = await simulator.requests()
    assert (seen["provider"], seen["deployment"], seen["api_version"]) == (
        "azure",
        "gpt-image-2",
        API_VERSION,
    )
    assert (seen["endpoint"], seen["key_header"]) == ("generations", "api-key")


async def test_an_edit_with_previews_streams_from_the_deployments_edits_path(
    simulator: Simulator,
) -> None:
    sink = Collected()
    ref = InputImage("ref0.png", render_image("ref", 1024, 1024, "png"))
    result = await azure(simulator.endpoint).generate(
        "paint it", SPEC, [ref], partials=Partials(2, sink.send)
    )
    assert len(result.images) == 1 and len(sink.previews) == 2
    [seen] = await simulator.requests()
    assert (seen["provider"], seen["endpoint"], seen["images"]) == ("azure", "edits", 1)


async def test_an_unknown_deployment_is_the_channels_fault_not_the_requests(
    simulator: Simulator,
) -> None:
    with pytest.raises(ChannelNotFoundError) as caught:
        await azure(simulator.endpoint, deployment="no-such-deployment").generate("p", SPEC)
    assert caught.value.failover and "404" in caught.value.message


async def test_a_refused_key_is_an_auth_error() -> None:
    async with running_simulator(SimSettings(api_key="the-right-key")) as sim:
        with pytest.raises(ChannelAuthError):
            await azure(sim.endpoint, key="a-wrong-key").generate("p", SPEC)
        assert len((await azure(sim.endpoint, key="the-right-key").generate("p", SPEC)).images)


def mixed_router(sim: Simulator, deployment: str = "gpt-image-2") -> Router:
    """c0 on OpenAI's API, c1 an Azure deployment: the same simulator serves both."""
    config = ChannelsFile.model_validate(
        {
            "channels": {
                "c0": {"base_url": sim.url, "model": "gpt-image-2", "timeout": 5},
                "c1": {
                    "provider": "azure",
                    "base_url": sim.endpoint,
                    "deployment": deployment,
                    "api_version": API_VERSION,
                    "api_key_env": "AZURE_KEY",
                    "model": "gpt-image-2",
                    "timeout": 5,
                },
            },
            "routes": {
                m: {"channels": ["c0", "c1"]} for m in ("gpt-image-2", "gpt-image-2-official")
            },
        }
    )
    return Router(config, {"UPSTREAM_API_KEY": "sk-test", "AZURE_KEY": "azure-key"})


@pytest.mark.parametrize(
    "rule",
    [
        {"kind": "status", "status": 500},
        {"kind": "status", "status": 401, "code": "invalid_api_key"},
        {"kind": "status", "status": 404, "code": "model_not_found"},
        {"kind": "drop"},
    ],
)
async def test_failover_crosses_from_openai_to_azure(
    simulator: Simulator, rule: dict[str, object]
) -> None:
    await simulator.faults({**rule, "provider": "openai"})  # Azure's path is not faulted
    result, attempts = await mixed_router(simulator).generate("t", "p", SPEC)
    assert len(result.images) == 1
    assert [a.channel for a in attempts] == ["c0", "c1"] and attempts[-1].outcome == "ok"
    assert [(r["provider"], r["key_header"]) for r in await simulator.requests()] == [
        ("openai", "authorization"),
        ("azure", "api-key"),
    ]


async def test_an_azure_404_or_401_fails_over_and_is_recorded(
    simulator: Simulator, backup_simulator: Simulator
) -> None:
    """[azure (no such deployment), azure (refuses the key), openai]: the task is served by
    the third, each failure recorded with its class; both Azure channels are held open."""
    config = ChannelsFile.model_validate(
        {
            "channels": {
                "missing": {
                    "provider": "azure",
                    "base_url": simulator.endpoint,
                    "deployment": "not-deployed",
                    "api_version": API_VERSION,
                    "model": "gpt-image-2",
                },
                "refused": {
                    "provider": "azure",
                    "base_url": simulator.endpoint,
                    "deployment": "gpt-image-2",
                    "api_version": API_VERSION,
                    "model": "gpt-image-2",
                },
                "openai": {"base_url": backup_simulator.url, "model": "gpt-image-2"},
            },
            "routes": {
                m: {"channels": ["missing", "refused", "openai"]}
                for m in ("gpt-image-2", "gpt-image-2-official")
            },
        }
    )
    await simulator.faults(
        {"kind": "status", "status": 401, "code": "401", "deployment": "gpt-image-2"}
    )
    r = Router(config, {"UPSTREAM_API_KEY": "k"})
    result, attempts = await r.generate("t", "p", SPEC)
    assert len(result.images) == 1
    assert [(a.channel, a.outcome) for a in attempts] == [
        ("missing", "upstream_not_found"),
        ("refused", "upstream_auth_failed"),
        ("openai", "ok"),
    ]
    for name in ("missing", "refused"):
        assert r.channels[name].breaker.reopens_in() > AUTH_FAILURE_COOLDOWN - 10
    _, again = await r.generate("t", "p", SPEC)
    assert [a.outcome for a in again] == ["skipped_open", "skipped_open", "ok"]


async def test_when_every_channel_fails_the_last_failure_is_the_tasks(
    simulator: Simulator,
) -> None:
    await simulator.faults({"kind": "status", "status": 503, "provider": "openai"})
    with pytest.raises(AllChannelsFailed) as caught:
        await mixed_router(simulator, deployment="not-deployed").generate("t", "p", SPEC)
    assert [(a.channel, a.outcome) for a in caught.value.attempts] == [
        ("c0", "upstream_unavailable"),
        ("c1", "upstream_not_found"),
    ]
    assert isinstance(caught.value.last, RetryableError)
