"""The simulator speaks Azure OpenAI's image deployments too: path, api-version, api-key."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from pixelrelay_sim.app import create_app
from pixelrelay_sim.render import render_image
from pixelrelay_sim.settings import SimSettings

KEY = {"api-key": "az-key"}
VERSION = {"api-version": "2025-04-01-preview"}
GENERATE = "/openai/deployments/{}/images/generations"
BODY = {"prompt": "p", "size": "1024x1024"}


@pytest.fixture
async def sim() -> AsyncIterator[httpx.AsyncClient]:
    settings = SimSettings(api_key="az-key", azure_deployments="images-east=gpt-image-2,img2")
    transport = httpx.ASGITransport(app=create_app(settings))
    async with httpx.AsyncClient(transport=transport, base_url="http://sim") as client:
        yield client


def test_deployments_are_configured_as_name_equals_model() -> None:
    assert SimSettings(azure_deployments="a=gpt-image-2, b").deployments() == {
        "a": "gpt-image-2",
        "b": "b",
    }
    assert SimSettings().deployments() == {"gpt-image-2": "gpt-image-2"}


async def test_a_deployment_serves_its_model_whatever_the_body_says(
    sim: httpx.AsyncClient,
) -> None:
    answer = await sim.post(
        GENERATE.format("images-east"),
        params=VERSION,
        headers=KEY,
        json={**BODY, "model": "something-else"},
    )
    assert answer.status_code == 200, answer.text
    assert len(answer.json()["data"]) == 1
    [seen] = (await sim.get("/_sim/requests")).json()
    assert (seen["provider"], seen["deployment"], seen["model"], seen["key_header"]) == (
        "azure",
        "images-east",
        "gpt-image-2",
        "api-key",
    )


@pytest.mark.parametrize(
    ("deployment", "params", "headers", "status", "code"),
    [
        ("images-east", VERSION, {}, 401, "401"),
        ("images-east", VERSION, {"api-key": "wrong"}, 401, "401"),
        # OpenAI's header is not Azure's: a key there is no key.
        ("images-east", VERSION, {"Authorization": "Bearer az-key"}, 401, "401"),
        ("images-east", {}, KEY, 404, "404"),
        ("images-east", {"api-version": "latest"}, KEY, 400, "BadRequest"),
        ("not-deployed", VERSION, KEY, 404, "DeploymentNotFound"),
    ],
)
async def test_refusals_in_azures_words(
    sim: httpx.AsyncClient,
    deployment: str,
    params: dict[str, str],
    headers: dict[str, str],
    status: int,
    code: str,
) -> None:
    answer = await sim.post(GENERATE.format(deployment), params=params, headers=headers, json=BODY)
    assert answer.status_code == status
    assert set(answer.json()["error"]) == {"code", "message"}  # no type, no param
    assert answer.json()["error"]["code"] == code
    assert (await sim.get("/_sim/requests")).json() == []  # refused before it is read


async def test_edits_have_their_deployment_path_too(sim: httpx.AsyncClient) -> None:
    answer = await sim.post(
        "/openai/deployments/img2/images/edits",
        params=VERSION,
        headers=KEY,
        data={"prompt": "p", "size": "1024x1024"},
        files=[("image[]", ("a.png", render_image("a", 1024, 1024, "png"), "image/png"))],
    )
    assert answer.status_code == 200, answer.text
    [seen] = (await sim.get("/_sim/requests")).json()
    assert (seen["endpoint"], seen["deployment"], seen["model"]) == ("edits", "img2", "img2")


async def test_faults_can_select_a_provider_and_a_deployment(sim: httpx.AsyncClient) -> None:
    await sim.put(
        "/_sim/faults",
        json=[
            {"kind": "status", "status": 503, "provider": "openai"},
            {"kind": "status", "status": 500, "deployment": "img2"},
        ],
    )
    openai = await sim.post(
        "/v1/images/generations",
        headers={"Authorization": "Bearer az-key"},
        json={**BODY, "model": "gpt-image-2"},
    )
    east = await sim.post(GENERATE.format("images-east"), params=VERSION, headers=KEY, json=BODY)
    img2 = await sim.post(GENERATE.format("img2"), params=VERSION, headers=KEY, json=BODY)
    assert (openai.status_code, east.status_code, img2.status_code) == (503, 200, 500)
