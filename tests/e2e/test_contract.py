"""The public contract, walked end to end: every option reaches the upstream as the right
OpenAI request, and the images that come back are what was asked for."""

from __future__ import annotations

import asyncio
import hashlib
import io
import re
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from PIL import Image

from pixelrelay_sim.render import render_image
from tests.e2e.conftest import Platform
from tests.e2e.helpers import eventually, new_account, poll_until_done
from tests.integration.image_server import ImageServer, image_server

pytestmark = pytest.mark.e2e

STABLE = "gpt-image-2-official"


@pytest.fixture(scope="module")
async def images() -> AsyncIterator[ImageServer]:
    async with image_server() as server:
        server.files["/mask.png"] = (
            render_image("mask", 1024, 768, "png", transparent=True),
            "image/png",
        )
        server.files["/small-mask.png"] = (
            render_image("mask", 512, 512, "png", transparent=True),
            "image/png",
        )
        server.files["/opaque-mask.png"] = (render_image("mask", 1024, 768, "png"), "image/png")
        yield server


async def sim_request(platform: Platform, prompt: str) -> dict[str, Any]:
    digest = hashlib.sha256(prompt.encode()).hexdigest()
    async with httpx.AsyncClient(base_url=platform.config.sim_url) as sim:
        seen = (await sim.get("/_sim/requests")).json()
    matching = [r for r in seen if r["prompt_sha256"] == digest]
    assert len(matching) == 1, f"upstream saw {len(matching)} requests for this prompt"
    return dict(matching[0])


async def run_task(
    platform: Platform, body: dict[str, Any], key: str | None = None
) -> dict[str, Any]:
    response = await platform.http.post(
        "/api/v1/images/generations", headers=platform.auth(key), json=body
    )
    assert response.status_code == 200, response.text
    return await poll_until_done(platform.http, response.json()["id"], platform.auth(key))


async def download(url: str) -> Image.Image:
    async with httpx.AsyncClient() as anonymous:
        response = await anonymous.get(url)
    assert response.status_code == 200
    image = Image.open(io.BytesIO(response.content))
    image.load()
    return image


# (request fields, upstream size, n, quality sent, format, credits reserved, credits charged)
CASES = [
    ({"model": "gpt-image-2"}, "1024x1024", 1, "auto", "png", 7, 7),
    (
        {"model": "gpt-image-2", "size": "16:9", "resolution": "2k"},
        "2048x1152",
        1,
        "auto",
        "png",
        14,
        14,
    ),
    (
        {"model": "gpt-image-2", "size": "9:21", "resolution": "4k"},
        "1648x3840",
        1,
        "auto",
        "png",
        20,
        20,
    ),
    (
        {"model": "gpt-image-2", "size": "auto", "prompt_suffix": "a wide banner"},
        "2016x864",
        1,
        "auto",
        "png",
        7,
        7,
    ),
    ({"model": STABLE, "quality": "low", "n": 4}, "1024x1024", 4, "low", "png", 24, 24),
    ({"model": STABLE, "quality": "medium", "size": "3:4"}, "768x1024", 1, "medium", "png", 47, 47),
    (
        {"model": STABLE, "quality": "high", "size": "5:4", "resolution": "2k"},
        "2560x2048",
        1,
        "high",
        "png",
        186,
        186,
    ),
    ({"model": STABLE, "quality": "auto", "n": 2}, "1024x1024", 2, "auto", "png", 372, 94),
    (
        {"model": STABLE, "quality": "high", "size": "2:1", "resolution": "4k"},
        "3840x1920",
        1,
        "high",
        "png",
        1467,
        1467,
    ),
    ({"model": STABLE, "quality": "low", "size": "1536x640"}, "1536x640", 1, "low", "png", 6, 6),
    (
        {"model": STABLE, "quality": "low", "output_format": "jpeg", "output_compression": 40},
        "1024x1024",
        1,
        "low",
        "jpeg",
        6,
        6,
    ),
    (
        {"model": STABLE, "quality": "low", "output_format": "webp", "background": "transparent"},
        "1024x1024",
        1,
        "low",
        "webp",
        6,
        6,
    ),
    (
        {"model": STABLE, "quality": "low", "background": "transparent"},
        "1024x1024",
        1,
        "low",
        "png",
        6,
        6,
    ),
    (
        {"model": STABLE, "quality": "low", "background": "opaque", "moderation": "low"},
        "1024x1024",
        1,
        "low",
        "png",
        6,
        6,
    ),
]


@pytest.mark.parametrize(
    ("fields", "size", "n", "quality", "fmt", "reserved", "charged"),
    CASES,
    ids=[str(i) for i in range(len(CASES))],
)
async def test_each_option_reaches_the_upstream_and_comes_back_as_asked(
    platform: Platform,
    fields: dict[str, Any],
    size: str,
    n: int,
    quality: str,
    fmt: str,
    reserved: int,
    charged: int,
) -> None:
    prompt = f"contract {uuid.uuid4().hex} {fields.pop('prompt_suffix', '')}"
    task = await run_task(platform, {**fields, "prompt": prompt})
    assert task["status"] == "completed", task
    seen = await sim_request(platform, prompt)
    assert (seen["endpoint"], seen["size"], seen["n"], seen["output_format"]) == (
        "generations",
        size,
        n,
        fmt,
    )
    assert seen["quality"] == quality
    assert seen["output_compression"] == fields.get("output_compression")
    assert seen["background"] == fields.get("background", "auto")
    assert seen["moderation"] == fields.get("moderation", "auto" if "quality" in fields else None)
    assert task["credits"]["reserved"] == reserved and task["credits"]["charged"] == charged
    assert len(task["output"]["image_urls"]) == n
    width, height = (int(x) for x in size.split("x"))
    image = await download(task["output"]["image_urls"][-1])
    assert image.size == (width, height)
    assert image.format == {"png": "PNG", "jpeg": "JPEG", "webp": "WEBP"}[fmt]
    if fields.get("background") == "transparent":
        assert "A" in image.getbands()
    meta = task["output"]["images"][-1]
    assert (meta["width"], meta["height"], meta["format"]) == (width, height, fmt)


async def test_references_and_mask_make_an_edit(platform: Platform, images: ImageServer) -> None:
    prompt = f"edit {uuid.uuid4().hex}"
    task = await run_task(
        platform,
        {
            "model": STABLE,
            "prompt": prompt,
            "quality": "low",
            "size": "auto",
            "image_urls": [images.url("/cat.png"), images.url("/cat.jpg")],
            "mask_url": images.url("/mask.png"),
        },
    )
    assert task["status"] == "completed", task
    seen = await sim_request(platform, prompt)
    assert (seen["endpoint"], seen["images"], seen["mask"]) == ("edits", 2, True)
    assert seen["size"] == "1024x768"  # auto: the first reference is 4:3
    assert task["params"]["size"] == "4:3"
    assert task["params"]["image_urls"] == [images.url("/cat.png"), images.url("/cat.jpg")]


async def test_uploads_are_usable_as_references(platform: Platform) -> None:
    png = render_image("upload", 1536, 864, "png")
    uploaded = await platform.http.post(
        "/api/v1/uploads", headers=platform.auth(), files={"file": ("u.png", png, "image/png")}
    )
    assert uploaded.status_code == 200, uploaded.text
    upload = uploaded.json()
    assert (upload["format"], upload["width"], upload["height"], upload["bytes"]) == (
        "png",
        1536,
        864,
        len(png),
    )
    task = await run_task(
        platform, {"model": "gpt-image-2", "size": "auto", "image_urls": [upload["url"]]}
    )
    assert task["status"] == "completed", task
    assert task["params"]["size"] == "16:9"


async def error_of(
    platform: Platform, body: dict[str, Any], key: str | None = None
) -> dict[str, Any]:
    before = (await platform.http.get("/api/v1/account", headers=platform.auth(key))).json()
    response = await platform.http.post(
        "/api/v1/images/generations", headers=platform.auth(key), json=body
    )
    after = (await platform.http.get("/api/v1/account", headers=platform.auth(key))).json()
    assert after == before, "a refused request must not move credits"
    return {"status": response.status_code, **response.json()["error"]}


@pytest.mark.parametrize(
    ("refs", "mask", "status", "code", "param"),
    [
        (["/page.html"], None, 422, 20007, "image_urls[0]"),
        (["/fake.png"], None, 422, 20007, "image_urls[0]"),
        (["/cat.png", "/missing.png"], None, 422, 20008, "image_urls[1]"),
        (["/cat.png"], "/small-mask.png", 422, 20007, "mask_url"),
        (["/cat.png"], "/opaque-mask.png", 422, 20007, "mask_url"),
        (["/cat.png"], "/cat.jpg", 422, 20007, "mask_url"),
    ],
)
async def test_bad_references_are_refused_before_any_charge(
    platform: Platform,
    images: ImageServer,
    refs: list[str],
    mask: str | None,
    status: int,
    code: int,
    param: str,
) -> None:
    body: dict[str, Any] = {
        "model": STABLE,
        "prompt": "x",
        "quality": "low",
        "image_urls": [images.url(r) for r in refs],
    }
    if mask:
        body["mask_url"] = images.url(mask)
    error = await error_of(platform, body)
    assert (error["status"], error["code"], error["param"]) == (status, code, param)


async def test_a_repeated_upload_is_the_same_upload(platform: Platform) -> None:
    """An upload is named by its content and owner: a client that lost the answer and
    sends the file again gets the same upload, stored once (no Idempotency-Key needed)."""
    png = render_image(f"uploaded twice {uuid.uuid4().hex}", 512, 512, "png")

    async def upload(key: str | None = None) -> dict[str, Any]:
        response = await platform.http.post(
            "/api/v1/uploads",
            headers=platform.auth(key),
            files={"file": ("u.png", png, "image/png")},
        )
        assert response.status_code == 200, response.text
        return dict(response.json())

    first, second = await upload(), await upload()
    assert first["id"] == second["id"]
    assert first["url"].split("?")[0] == second["url"].split("?")[0]
    other = await upload(await new_account(platform, 100))
    assert other["id"] != first["id"]


async def test_someone_elses_upload_is_not_found(platform: Platform) -> None:
    png = render_image("private upload", 1024, 1024, "png")
    upload = (
        await platform.http.post(
            "/api/v1/uploads", headers=platform.auth(), files={"file": ("u.png", png, "image/png")}
        )
    ).json()
    other = await new_account(platform, 100)
    error = await error_of(
        platform,
        {"model": "gpt-image-2", "prompt": "steal", "image_urls": [upload["url"]]},
        key=other,
    )
    assert (error["status"], error["code"]) == (404, 40006)


async def test_a_missing_upload_of_your_own_is_not_found(platform: Platform) -> None:
    """Storage's answer streams back (GetObject): it used to skip the error mapping (500)."""
    png = render_image("own upload", 1024, 1024, "png")
    upload = (
        await platform.http.post(
            "/api/v1/uploads", headers=platform.auth(), files={"file": ("u.png", png, "image/png")}
        )
    ).json()
    missing = re.sub(r"upl_[0-9A-Za-z]+", "upl_doesnotexist", upload["url"])
    assert missing != upload["url"]
    error = await error_of(
        platform, {"model": "gpt-image-2", "prompt": "gone", "image_urls": [missing]}
    )
    assert (error["status"], error["code"], error["param"]) == (404, 40006, "image_urls[0]")


@pytest.mark.parametrize(
    ("content", "content_type", "status", "code"),
    [
        (b"<html></html>", "text/html", 422, 20007),
        (b"GIF89a....", "image/gif", 422, 20007),
        (b"\x89PNG\r\n\x1a\nbroken", "image/png", 422, 20007),
    ],
)
async def test_bad_uploads_are_refused(
    platform: Platform, content: bytes, content_type: str, status: int, code: int
) -> None:
    response = await platform.http.post(
        "/api/v1/uploads", headers=platform.auth(), files={"file": ("x", content, content_type)}
    )
    assert response.status_code == status
    assert response.json()["error"]["code"] == code


async def test_upload_without_a_file_or_key(platform: Platform) -> None:
    missing = await platform.http.post(
        "/api/v1/uploads", headers=platform.auth(), data={"other": "x"}
    )
    assert missing.status_code == 400 and missing.json()["error"]["code"] == 20002
    anonymous = await platform.http.post(
        "/api/v1/uploads",
        files={"file": ("u.png", render_image("a", 1024, 1024, "png"), "image/png")},
    )
    assert anonymous.status_code == 401


async def test_private_reference_urls_are_refused_in_production_policy(
    fragile_platform: Platform, images: ImageServer
) -> None:
    hits_before = len(images.hits)
    error = await error_of(
        fragile_platform,
        {"model": "gpt-image-2", "prompt": "x", "image_urls": [images.url("/cat.png")]},
    )
    assert (error["status"], error["code"]) == (422, 20009)
    assert images.hits[hits_before:] == []  # refused before any connection


@pytest.mark.security
async def test_no_credits_is_402_before_any_reference_is_fetched(
    platform: Platform, images: ImageServer
) -> None:
    """An empty account once made the gateway fetch and decode 17 large images first."""
    broke = await new_account(platform, 0)
    hits_before = len(images.hits)
    error = await error_of(
        platform,
        {
            "model": "gpt-image-2-official",
            "prompt": "x",
            "image_urls": [images.url("/cat.png")] * 16,
            "mask_url": images.url("/mask.png"),
        },
        key=broke,
    )
    assert (error["status"], error["code"]) == (402, 30001)
    assert images.hits[hits_before:] == []


@pytest.mark.security
async def test_one_account_cannot_take_every_reference_fetch(
    platform: Platform, images: ImageServer
) -> None:
    """64 slow URLs from one account once took every fetch connection of the gateway and
    timed out another account's fetch. Now one account has 8 fetches in flight at most."""
    greedy = await new_account(platform, 10_000)
    group = uuid.uuid4().hex[:8]  # this test's /slow requests, apart from earlier tests'
    # Slow but good images: no fetch fails early (a failure cancels the other fetches of its
    # request, and a cancelled one is still counted by the server for a moment).
    slow = [images.url(f"/slow?s=0.5&g={group}&i={i}&then=/cat.png") for i in range(16)]
    body = {"model": "gpt-image-2-official", "prompt": "x", "image_urls": slow}
    flood = [
        asyncio.create_task(
            platform.http.post(
                "/api/v1/images/generations", headers=platform.auth(greedy), json=body
            )
        )
        for _ in range(4)
    ]

    async def flooding() -> bool:
        return images.in_flight[group] >= 8

    await eventually(flooding, "the greedy account's fetches under way")
    other = await platform.http.post(
        "/api/v1/images/generations",
        headers=platform.auth(),
        json={"model": "gpt-image-2", "prompt": "mine", "image_urls": [images.url("/cat.png")]},
    )
    assert other.status_code == 200, other.text
    answers = await asyncio.gather(*flood)
    assert {a.status_code for a in answers} == {200}, [a.text for a in answers]
    assert images.most_in_flight[group] == 8
