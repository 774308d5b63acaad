"""The simulator speaks the OpenAI Images API; the dispatcher's tests rely on that."""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
from collections.abc import AsyncIterator

import httpx
import pytest
from PIL import Image

from pixelrelay_sim.app import create_app
from pixelrelay_sim.render import prompt_color, render_image
from pixelrelay_sim.settings import SimSettings

AUTH = {"Authorization": "Bearer sk-test"}


@pytest.fixture
async def sim() -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(SimSettings()))
    async with httpx.AsyncClient(transport=transport, base_url="http://sim") as client:
        yield client


def decode(b64: str) -> Image.Image:
    image = Image.open(io.BytesIO(base64.b64decode(b64)))
    image.load()
    return image


@pytest.mark.parametrize(("fmt", "pil"), [("png", "PNG"), ("jpeg", "JPEG"), ("webp", "WEBP")])
async def test_renders_requested_size_and_format(
    sim: httpx.AsyncClient, fmt: str, pil: str
) -> None:
    response = await sim.post(
        "/v1/images/generations",
        headers=AUTH,
        json={
            "model": "gpt-image-2",
            "prompt": "p",
            "size": "1536x864",
            "output_format": fmt,
            "n": 2,
            "quality": "low",
        },
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert len(body["data"]) == 2
    image = decode(body["data"][0]["b64_json"])
    assert (image.format, image.size) == (pil, (1536, 864))
    assert body["quality"] == "low" and body["size"] == "1536x864"
    assert body["usage"]["total_tokens"] > 0


async def test_transparent_png_has_alpha(sim: httpx.AsyncClient) -> None:
    response = await sim.post(
        "/v1/images/generations",
        headers=AUTH,
        json={
            "model": "gpt-image-2",
            "prompt": "p",
            "size": "1024x1024",
            "background": "transparent",
        },
    )
    image = decode(response.json()["data"][0]["b64_json"])
    assert image.mode == "RGBA" and image.getchannel("A").getpixel((0, 0)) == 0


def test_rendering_is_deterministic() -> None:
    assert render_image("x", 1024, 1024, "png") == render_image("x", 1024, 1024, "png")
    image = Image.open(io.BytesIO(render_image("x", 1024, 768, "png")))
    assert image.getpixel((1, 1)) == prompt_color("x")


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"model": "gpt-image-2"}, 400, "missing_required_parameter"),
        (
            {"model": "gpt-image-2", "prompt": "p", "response_format": "url"},
            400,
            "unknown_parameter",
        ),
        ({"model": "gpt-image-2", "prompt": "p", "size": "1000x1000"}, 400, "invalid_value"),
        ({"model": "gpt-image-2", "prompt": "p", "n": 11}, 400, "invalid_value"),
        (
            {
                "model": "gpt-image-2",
                "prompt": "p",
                "background": "transparent",
                "output_format": "jpeg",
            },
            400,
            "invalid_value",
        ),
    ],
)
async def test_validates_like_openai(
    sim: httpx.AsyncClient, body: dict[str, object], status: int, code: str
) -> None:
    response = await sim.post("/v1/images/generations", headers=AUTH, json=body)
    assert response.status_code == status
    error = response.json()["error"]
    assert error["code"] == code and error["type"] == "invalid_request_error"


async def test_requires_a_key(sim: httpx.AsyncClient) -> None:
    response = await sim.post("/v1/images/generations", json={"model": "m", "prompt": "p"})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_api_key"


async def test_fault_rules_apply_by_prompt_and_count(sim: httpx.AsyncClient) -> None:
    await sim.put(
        "/_sim/faults",
        json=[
            {
                "kind": "status",
                "status": 429,
                "match": "busy",
                "times": 1,
                "retry_after": 2,
                "code": "rate_limit_exceeded",
            }
        ],
    )
    body = {"model": "gpt-image-2", "prompt": "busy now", "size": "1024x1024"}
    first = await sim.post("/v1/images/generations", headers=AUTH, json=body)
    assert first.status_code == 429 and first.headers["retry-after"] == "2"
    other = await sim.post("/v1/images/generations", headers=AUTH, json={**body, "prompt": "calm"})
    assert other.status_code == 200
    second = await sim.post("/v1/images/generations", headers=AUTH, json=body)
    assert second.status_code == 200


async def bad_output(sim: httpx.AsyncClient, kind: str) -> str:
    await sim.put("/_sim/faults", json=[{"kind": kind}])
    response = await sim.post(
        "/v1/images/generations",
        headers=AUTH,
        json={"model": "gpt-image-2", "prompt": "p", "size": "1024x1024"},
    )
    assert response.status_code == 200
    return str(response.json()["data"][0]["b64_json"])


async def test_bad_base64_fault_is_not_base64(sim: httpx.AsyncClient) -> None:
    with pytest.raises(binascii.Error):
        base64.b64decode(await bad_output(sim, "bad_base64"), validate=True)


async def test_truncated_fault_is_half_an_image(sim: httpx.AsyncClient) -> None:
    data = base64.b64decode(await bad_output(sim, "truncated"))
    assert data.startswith(b"\x89PNG")
    with pytest.raises(OSError, match="truncated|broken"):
        decode(base64.b64encode(data).decode())


async def test_wrong_size_fault_is_half_the_size(sim: httpx.AsyncClient) -> None:
    assert decode(await bad_output(sim, "wrong_size")).size == (512, 512)


async def test_edits_take_images_and_a_matching_mask(sim: httpx.AsyncClient) -> None:
    source = render_image("src", 1024, 1024, "png")
    mask = render_image("mask", 1024, 1024, "png", transparent=True)
    files = [
        ("image[]", ("a.png", source, "image/png")),
        ("image[]", ("b.png", source, "image/png")),
        ("mask", ("m.png", mask, "image/png")),
    ]
    response = await sim.post(
        "/v1/images/edits",
        headers=AUTH,
        files=files,
        data={"model": "gpt-image-2", "prompt": "edit", "size": "1024x1024"},
    )
    assert response.status_code == 200, response.text
    seen = (await sim.get("/_sim/requests")).json()[-1]
    assert (seen["endpoint"], seen["images"], seen["mask"]) == ("edits", 2, True)

    small_mask = render_image("mask", 1024, 768, "png", transparent=True)
    bad = await sim.post(
        "/v1/images/edits",
        headers=AUTH,
        files=[
            ("image[]", ("a.png", source, "image/png")),
            ("mask", ("m.png", small_mask, "image/png")),
        ],
        data={"model": "gpt-image-2", "prompt": "edit"},
    )
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "mask"


async def test_counts_answers_with_images_per_prompt_not_refusals(sim: httpx.AsyncClient) -> None:
    """What a provider would bill: a soak divides it by the tasks it completed."""
    await sim.put("/_sim/faults", json=[{"kind": "status", "status": 500, "match": "fails"}])
    for prompt in ("twice", "twice", "fails", "once"):
        await sim.post(
            "/v1/images/generations", headers=AUTH, json={"model": "gpt-image-2", "prompt": prompt}
        )
    counts = (await sim.get("/_sim/generated")).json()
    digest = {p: hashlib.sha256(p.encode()).hexdigest() for p in ("twice", "fails", "once")}
    assert counts == {digest["twice"]: 2, digest["once"]: 1}
