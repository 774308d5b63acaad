"""A model added to the catalog as data (CATALOG_FILE, and a route in the channel file):
listed with its capabilities and prices, priced by the estimate, generated on a channel
that really serves it (never a silent substitution), charged at its price; an alias
names it; the reAPI flow of the packaged models is unchanged."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import pytest_asyncio
import yaml

from pixelrelay import catalog
from pixelrelay_dev.config import StackConfig
from pixelrelay_dev.devstack import Stack
from tests.e2e.helpers import poll_until_done

pytestmark = pytest.mark.e2e

# OpenAI's gpt-image-1 at 1024x1024, as docs/operations.md shows adding it.
GPT_IMAGE_1 = {
    "description": "GPT Image 1: square or 3:2 at about 1 megapixel",
    "released": "2025-04-23",
    "capabilities": {
        "max_n": 4,
        "sizes": "ratios",
        "ratios": ["1:1", "3:2", "2:3"],
        "resolutions": ["1k"],
        "qualities": ["auto", "low", "medium", "high"],
        "backgrounds": ["auto", "opaque", "transparent"],
        "moderations": ["auto", "low"],
        "formats": ["png", "jpeg", "webp"],
        "output_compression": True,
        "masks": True,
    },
    "auto_quoted_as": "high",
    "prices": [
        {"id": "gpt-image-1-low", "quality": "low", "credits": 11},
        {"id": "gpt-image-1-medium", "quality": "medium", "credits": 42},
        {"id": "gpt-image-1-high", "quality": "high", "credits": 167},
    ],
}


@dataclass
class Platform:
    stack: Stack
    http: httpx.AsyncClient
    auth: dict[str, str]


@pytest_asyncio.fixture(scope="module")
async def platform(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Platform]:
    work = tmp_path_factory.mktemp("catalog")
    models = yaml.safe_load(catalog.DEFAULT_CATALOG.read_text())
    models["models"]["gpt-image-1"] = GPT_IMAGE_1
    models["aliases"] = {"gpt-image-1-latest": "gpt-image-1"}
    (work / "catalog.yaml").write_text(yaml.safe_dump(models, sort_keys=False))
    config = StackConfig.leased_ports(work / "var", sim_latency_ms=20)
    sim = {"base_url": f"{config.sim_url}/v1", "api_key_env": "SIM_KEY"}
    (work / "channels.yaml").write_text(
        yaml.safe_dump(
            {
                "channels": {
                    "sim-gpt-image-2": {**sim, "model": "gpt-image-2"},
                    "sim-gpt-image-1": {**sim, "model": "gpt-image-1"},
                },
                "routes": {
                    "gpt-image-2": {"channels": ["sim-gpt-image-2"]},
                    "gpt-image-2-official": {"channels": ["sim-gpt-image-2"]},
                    "gpt-image-1": {"channels": ["sim-gpt-image-1"]},
                },
            }
        )
    )
    config.channels_file = str(work / "channels.yaml")
    config.extra_env = {"CATALOG_FILE": str(work / "catalog.yaml"), "SIM_KEY": "sk-sim"}
    stack = Stack(config)
    await stack.start()
    try:
        _account, key = await stack.dev_account()
        async with httpx.AsyncClient(base_url=config.base_url, timeout=30) as http:
            yield Platform(stack, http, {"Authorization": f"Bearer {key}"})
    finally:
        await stack.stop()


async def submitted_and_done(platform: Platform, body: dict[str, Any]) -> dict[str, Any]:
    answer = await platform.http.post(
        "/api/v1/images/generations", headers=platform.auth, json=body
    )
    assert answer.status_code == 200, answer.text
    return await poll_until_done(platform.http, answer.json()["id"], platform.auth)


async def test_the_added_model_is_listed_with_what_it_takes_and_costs(platform: Platform) -> None:
    listed = await platform.http.get("/api/v1/models", headers=platform.auth)
    assert listed.status_code == 200, listed.text
    models = {m["id"]: m for m in listed.json()["data"]}
    assert list(models) == ["gpt-image-2", "gpt-image-2-official", "gpt-image-1"]
    added = models["gpt-image-1"]
    assert added["aliases"] == ["gpt-image-1-latest"]
    assert added["capabilities"]["ratios"] == ["1:1", "3:2", "2:3"]
    assert [(p["id"], p["credits"], p["qualities"]) for p in added["prices"]] == [
        ("gpt-image-1-low", 11, ["low"]),
        ("gpt-image-1-medium", 42, ["medium"]),
        ("gpt-image-1-high", 167, ["high"]),
    ]
    openai_list = await platform.http.get("/v1/models", headers=platform.auth)
    assert [m["id"] for m in openai_list.json()["data"]] == list(models)


async def test_the_added_model_is_priced_generated_where_it_is_served_and_charged(
    platform: Platform,
) -> None:
    estimate = await platform.http.post(
        "/api/v1/images/estimate",
        headers=platform.auth,
        json={"model": "gpt-image-1", "prompt": "x", "quality": "low", "n": 2},
    )
    assert estimate.status_code == 200, estimate.text
    assert estimate.json()["credits"] == 22

    prompt = "a teapot, by its alias"
    task = await submitted_and_done(
        platform,
        {"model": "gpt-image-1-latest", "prompt": prompt, "quality": "low", "n": 2},
    )
    assert task["status"] == "completed", (task.get("error"), task.get("attempts"))
    assert task["model"] == "gpt-image-1"  # the alias named it; the task shows the model
    assert task["credits"]["charged"] == 22 and task["credits"]["price_id"] == "gpt-image-1-low"
    digest = hashlib.sha256(prompt.encode()).hexdigest()
    async with httpx.AsyncClient(base_url=platform.stack.config.sim_url) as sim:
        seen = [r for r in (await sim.get("/_sim/requests")).json() if r["prompt_sha256"] == digest]
    assert [(r["model"], r["size"], r["n"]) for r in seen] == [("gpt-image-1", "1024x1024", 2)]


async def test_the_packaged_models_answer_as_before(platform: Platform) -> None:
    task = await submitted_and_done(
        platform, {"model": "gpt-image-2", "prompt": "unchanged", "resolution": "1k"}
    )
    assert (task["status"], task["credits"]["charged"], task["credits"]["price_id"]) == (
        "completed",
        7,
        "basic-1k",
    )


@pytest.mark.parametrize(
    ("body", "status", "code", "param"),
    [
        ({"model": "gpt-image-1", "size": "16:9"}, 400, 20003, "size"),
        ({"model": "gpt-image-1", "resolution": "2k"}, 400, 20003, "resolution"),
        ({"model": "gpt-image-1", "n": 5}, 400, 20003, "n"),
        ({"model": "gpt-image-1-mini"}, 400, 20003, "model"),
    ],
)
async def test_what_the_added_model_does_not_take_is_refused_by_name(
    platform: Platform, body: dict[str, Any], status: int, code: int, param: str
) -> None:
    refused = await platform.http.post(
        "/api/v1/images/generations", headers=platform.auth, json={"prompt": "x", **body}
    )
    error = refused.json()["error"]
    assert (refused.status_code, error["code"], error["param"]) == (status, code, param)
