"""The official `openai` SDK, unchanged, against a running platform's /v1: it generates,
gets the images as OpenAI returns them, and raises its own exception classes for every
bad input, with nothing charged."""

from __future__ import annotations

import base64
import io
import uuid
from collections.abc import AsyncIterator
from typing import Any

import grpc
import httpx
import openai
import pytest
from PIL import Image

from pixelrelay.v1 import public_api_pb2, public_api_pb2_grpc
from pixelrelay_sim.render import render_image
from tests.e2e import conftest
from tests.e2e.conftest import Platform
from tests.e2e.helpers import faults, new_account, poll_until_done, upstream_requests
from tests.e2e.test_contract import sim_request

pytestmark = pytest.mark.e2e


@pytest.fixture
async def key(platform: Platform) -> str:
    """An account of the test's own: the shared one's credits are other tests' too."""
    return await new_account(platform, grant=5000)


@pytest.fixture
async def client(platform: Platform, key: str) -> AsyncIterator[openai.AsyncOpenAI]:
    async with sdk(platform, key) as made:
        yield made


def sdk(platform: Platform, key: str, **options: Any) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(
        api_key=key,
        base_url=f"{platform.config.base_url}/v1",
        max_retries=options.pop("max_retries", 0),
        # Each test is its own client address to the failed-auth throttle (conftest.py).
        default_headers={"x-forwarded-for": conftest._client_address[0]},
        **options,
    )


def image_of(b64: str | None) -> Image.Image:
    assert b64 is not None
    image = Image.open(io.BytesIO(base64.b64decode(b64)))
    image.load()
    return image


async def account(platform: Platform, key: str) -> dict[str, int]:
    answer = await platform.http.get("/api/v1/account", headers=platform.auth(key))
    return {k: answer.json()[k] for k in ("balance", "held")}


async def test_generate_answers_like_openai_and_charges_like_the_async_api(
    platform: Platform, client: openai.AsyncOpenAI, key: str
) -> None:
    raw = await client.images.with_raw_response.generate(
        model="gpt-image-2", prompt="a lighthouse", size="1024x1024"
    )
    result = raw.parse()
    assert result.size == "1024x1024" and result.output_format == "png"
    [made] = result.data or []
    assert image_of(made.b64_json).size == (1024, 1024)
    task_id = raw.headers["x-pixelrelay-task-id"]
    task = await platform.http.get(f"/api/v1/tasks/{task_id}", headers=platform.auth(key))
    assert task.json()["status"] == "completed"
    assert task.json()["credits"]["charged"] == 7
    assert made.url == task.json()["output"]["image_urls"][0]  # our 7-day link, as an extra
    assert result.usage is not None and result.usage.output_tokens > 0  # the upstream's count
    assert result.usage.total_tokens == result.usage.input_tokens + result.usage.output_tokens


async def test_the_stable_model_makes_two_jpegs_of_the_asked_size(
    client: openai.AsyncOpenAI,
) -> None:
    result = await client.images.generate(
        model="gpt-image-2-official",
        prompt="two cats",
        n=2,
        size="1536x1024",
        quality="low",
        output_format="jpeg",
    )
    assert (result.output_format, result.quality, result.size) == ("jpeg", "low", "1536x1024")
    images = [image_of(d.b64_json) for d in result.data or []]
    assert [(i.format, i.size) for i in images] == [("JPEG", (1536, 1024))] * 2


async def test_models_lists_the_public_models(client: openai.AsyncOpenAI) -> None:
    models = [m.id async for m in client.models.list()]
    assert models == ["gpt-image-2", "gpt-image-2-official"]


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"model": "dall-e-3"}, "model"),
        ({"model": "gpt-image-2-official", "n": 5}, "n"),
        ({"size": "1200x800"}, "size"),  # the basic model makes the table's sizes only
        ({"response_format": "url"}, "response_format"),
        ({"style": "vivid"}, "style"),
    ],
)
async def test_bad_input_raises_bad_request_naming_the_param(
    platform: Platform, client: openai.AsyncOpenAI, fields: dict[str, Any], param: str, key: str
) -> None:
    before = await account(platform, key)
    with pytest.raises(openai.BadRequestError) as caught:
        await client.images.generate(**{"model": "gpt-image-2", "prompt": "x", **fields})
    assert caught.value.param == param
    assert caught.value.type == "invalid_request_error"
    assert await account(platform, key) == before


async def test_a_bad_key_or_no_credits_raise_the_sdks_own_errors(platform: Platform) -> None:
    async with sdk(platform, "pr_live_" + "x" * 32) as stranger:
        with pytest.raises(openai.AuthenticationError):
            await stranger.images.generate(model="gpt-image-2", prompt="x")
    broke = await new_account(platform, grant=0)
    async with sdk(platform, broke, max_retries=2) as poor:
        with pytest.raises(openai.RateLimitError) as caught:
            await poor.images.generate(model="gpt-image-2", prompt="x")
    assert caught.value.code == "insufficient_quota"
    # x-should-retry: false kept the SDK from retrying a request that cannot succeed.
    assert caught.value.response.request.headers.get("x-stainless-retry-count") == "0"
    assert await account(platform, broke) == {"balance": 0, "held": 0}


def png(width: int, height: int, *, alpha: bool = False, text: str = "ref") -> bytes:
    if alpha:
        out = io.BytesIO()
        Image.new("RGBA", (width, height), (0, 0, 0, 0)).save(out, "PNG")
        return out.getvalue()
    return render_image(text, width, height, "png")


async def test_edit_with_an_image_and_a_mask(
    platform: Platform, client: openai.AsyncOpenAI, key: str
) -> None:
    prompt = f"put a hat on it {uuid.uuid4().hex}"
    raw = await client.images.with_raw_response.edit(
        model="gpt-image-2-official",
        image=("photo.png", png(1536, 1024), "image/png"),
        mask=("mask.png", png(1536, 1024, alpha=True), "image/png"),
        prompt=prompt,
        quality="low",
    )
    result = raw.parse()
    [made] = result.data or []
    assert image_of(made.b64_json).size == (1536, 1024)  # size auto: the image's 3:2
    seen = await sim_request(platform, prompt)
    assert (seen["endpoint"], seen["images"], seen["mask"]) == ("edits", 1, True)
    task_id = raw.headers["x-pixelrelay-task-id"]
    task = (await platform.http.get(f"/api/v1/tasks/{task_id}", headers=platform.auth(key))).json()
    assert task["status"] == "completed" and task["credits"]["charged"] > 0


async def test_edit_with_several_images(platform: Platform, client: openai.AsyncOpenAI) -> None:
    prompt = f"a collage {uuid.uuid4().hex}"
    images = [(f"{i}.png", png(1024, 1024, text=str(i)), "image/png") for i in range(3)]
    result = await client.images.edit(model="gpt-image-2", image=images, prompt=prompt)
    assert len(result.data or []) == 1
    assert (await sim_request(platform, prompt))["images"] == 3


@pytest.mark.parametrize(
    ("files", "param"),
    [
        ({"image": ("x.png", b"not an image at all", "image/png")}, "image"),
        (
            {
                "image": ("x.png", png(1024, 1024), "image/png"),
                "mask": ("m.png", png(512, 512, alpha=True), "image/png"),
            },
            "mask",
        ),
        ({"image": [(f"{i}.png", png(64, 64), "image/png") for i in range(17)]}, "image"),
        ({"image": ("big.png", b"\x89PNG" + bytes(60 * 1024 * 1024), "image/png")}, "image"),
    ],
    ids=["not-an-image", "mask-of-another-size", "17-images", "60-MB"],
)
async def test_bad_edits_raise_bad_request_naming_the_param(
    platform: Platform, client: openai.AsyncOpenAI, files: dict[str, Any], param: str, key: str
) -> None:
    before = await account(platform, key)
    with pytest.raises(openai.BadRequestError) as caught:
        await client.images.edit(model="gpt-image-2-official", prompt="x", **files)
    assert caught.value.param == param, caught.value.message
    assert await account(platform, key) == before


async def test_a_client_gone_mid_wait_leaves_its_task_to_complete_charged_once(
    platform: Platform,
) -> None:
    key = await new_account(platform, grant=100)
    prompt = f"slow {uuid.uuid4().hex}"
    await faults(platform, {"kind": "latency", "match": prompt, "seconds": 2})
    async with sdk(platform, key, timeout=0.5) as impatient:
        with pytest.raises(openai.APITimeoutError):
            await impatient.images.generate(model="gpt-image-2", prompt=prompt)
    listed = await platform.http.get("/api/v1/tasks", headers=platform.auth(key))
    [task] = listed.json()["data"]
    done = await poll_until_done(platform.http, task["id"], platform.auth(key))
    assert done["status"] == "completed" and done["credits"]["charged"] == 7
    usage = (await platform.http.get("/api/v1/usage", headers=platform.auth(key))).json()
    entries = [(e["kind"], e["book"]) for e in usage["data"] if e["task_id"] == task["id"]]
    assert sorted(set(entries)) == sorted(entries)  # each movement once: one hold, one capture
    assert {kind for kind, _book in entries} == {"reserve", "capture"}
    assert await account(platform, key) == {"balance": 93, "held": 0}


async def test_generate_images_over_grpc_streams_accepted_images_settled(
    platform: Platform, key: str
) -> None:
    meta = (("authorization", f"Bearer {key}"),)
    request = public_api_pb2.GenerateImagesRequest(
        request=public_api_pb2.CreateGenerationRequest(
            model="gpt-image-2-official", prompt="two", n=2, output_format="webp"
        )
    )
    async with grpc.aio.insecure_channel(f"127.0.0.1:{platform.config.grpc_port}") as channel:
        stub = public_api_pb2_grpc.PublicApiStub(channel)
        events = [e async for e in stub.GenerateImages(request, metadata=meta, timeout=60)]
    kinds = [e.WhichOneof("event") for e in events]
    assert kinds == ["accepted", "image", "image", "settled"]
    assert events[0].accepted.id == events[-1].settled.id
    assert events[-1].settled.status == "completed"
    assert [Image.open(io.BytesIO(e.image.data)).format for e in events[1:3]] == ["WEBP"] * 2


async def test_streaming_sends_the_previews_then_the_image(
    platform: Platform, client: openai.AsyncOpenAI, key: str
) -> None:
    """Two previews from the upstream, relayed over the bus as they come (the second
    channel, after the first failed over), then the final image with its usage."""
    prompt = f"a slow sunrise {uuid.uuid4().hex}"
    await faults(platform, {"kind": "latency", "match": prompt, "seconds": 1.5})
    raw = await client.images.with_raw_response.generate(
        model="gpt-image-2", prompt=prompt, size="1536x1024", stream=True, partial_images=2
    )
    events = [event async for event in raw.parse()]
    assert [e.type for e in events] == [
        "image_generation.partial_image",
        "image_generation.partial_image",
        "image_generation.completed",
    ]
    partials, completed = events[:2], events[2]
    assert [p.partial_image_index for p in partials] == [0, 1]  # type: ignore[union-attr]
    assert all(image_of(p.b64_json).size == (1536, 1024) for p in partials)
    assert image_of(completed.b64_json).size == (1536, 1024)
    assert completed.usage.output_tokens > 0  # type: ignore[union-attr]
    task_id = raw.headers["x-pixelrelay-task-id"]
    task = await platform.http.get(f"/api/v1/tasks/{task_id}", headers=platform.auth(key))
    assert task.json()["status"] == "completed" and task.json()["credits"]["charged"] == 7
    assert await upstream_requests(platform, prompt) == 1  # previews cost no second call


async def test_a_quiet_stream_carries_keepalive_comments(platform: Platform, key: str) -> None:
    """While the upstream works, the stream is not silent (STREAM_KEEPALIVE_SECONDS is
    0.3 s on the test platform): SSE comment lines, which the SDK skips (the tests above)."""
    prompt = f"a quiet wait {uuid.uuid4().hex}"
    await faults(platform, {"kind": "latency", "match": prompt, "seconds": 1})
    body = {"model": "gpt-image-2", "prompt": prompt, "stream": True}
    async with platform.http.stream(
        "POST", "/v1/images/generations", json=body, headers=platform.auth(key)
    ) as answer:
        lines = [line async for line in answer.aiter_lines()]
    assert answer.headers["content-type"].startswith("text/event-stream")
    assert lines.count(": keepalive") >= 2
    assert "event: image_generation.completed" in lines


async def test_streaming_an_edit_uses_the_edit_events(
    platform: Platform, client: openai.AsyncOpenAI
) -> None:
    prompt = f"paint it blue {uuid.uuid4().hex}"
    stream = await client.images.edit(
        model="gpt-image-2",
        image=("photo.png", png(1024, 1024), "image/png"),
        prompt=prompt,
        stream=True,
        partial_images=1,
    )
    kinds = [event.type async for event in stream]
    assert kinds == ["image_edit.partial_image", "image_edit.completed"]
    assert (await sim_request(platform, prompt))["endpoint"] == "edits"


async def test_a_stream_whose_task_fails_ends_with_an_error_event_and_charges_nothing(
    platform: Platform, client: openai.AsyncOpenAI, key: str
) -> None:
    prompt = f"refused {uuid.uuid4().hex}"
    await faults(
        platform,
        {"kind": "status", "match": prompt, "status": 400, "code": "moderation_blocked"},
    )
    before = await account(platform, key)
    stream = await client.images.generate(
        model="gpt-image-2", prompt=prompt, stream=True, partial_images=1
    )
    with pytest.raises(openai.APIError) as caught:
        async for _event in stream:
            pass
    assert isinstance(caught.value.body, dict) and caught.value.body["code"] == "moderation_blocked"
    assert await account(platform, key) == before


async def test_bad_stream_options_are_refused_before_anything_is_held(
    platform: Platform, client: openai.AsyncOpenAI, key: str
) -> None:
    before = await account(platform, key)
    options: list[dict[str, Any]] = [{"stream": True, "partial_images": 4}, {"partial_images": 2}]
    for fields in options:
        with pytest.raises(openai.BadRequestError) as caught:
            await client.images.generate(model="gpt-image-2", prompt="x", **fields)
        assert caught.value.param == "partial_images"
    assert await account(platform, key) == before


async def test_a_client_gone_mid_stream_leaves_its_task_to_complete_charged_once(
    platform: Platform,
) -> None:
    key = await new_account(platform, grant=100)
    prompt = f"left early {uuid.uuid4().hex}"
    await faults(platform, {"kind": "latency", "match": prompt, "seconds": 1.5})
    async with sdk(platform, key) as client:
        stream = await client.images.generate(
            model="gpt-image-2", prompt=prompt, stream=True, partial_images=3
        )
        async for event in stream:
            assert event.type == "image_generation.partial_image"
            break  # one preview is enough: the client hangs up
        await stream.close()
    listed = await platform.http.get("/api/v1/tasks", headers=platform.auth(key))
    [task] = listed.json()["data"]
    done = await poll_until_done(platform.http, task["id"], platform.auth(key))
    assert done["status"] == "completed" and done["credits"]["charged"] == 7
    assert await account(platform, key) == {"balance": 93, "held": 0}
    assert await upstream_requests(platform, prompt) == 1


async def test_generate_images_over_grpc_passes_the_previews_on(
    platform: Platform, key: str
) -> None:
    meta = (("authorization", f"Bearer {key}"),)
    prompt = f"previews {uuid.uuid4().hex}"
    await faults(platform, {"kind": "latency", "match": prompt, "seconds": 1})
    request = public_api_pb2.GenerateImagesRequest(
        request=public_api_pb2.CreateGenerationRequest(model="gpt-image-2", prompt=prompt),
        partial_images=2,
    )
    async with grpc.aio.insecure_channel(f"127.0.0.1:{platform.config.grpc_port}") as channel:
        stub = public_api_pb2_grpc.PublicApiStub(channel)
        events = [e async for e in stub.GenerateImages(request, metadata=meta, timeout=60)]
        too_many = public_api_pb2.GenerateImagesRequest(request=request.request, partial_images=4)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.GenerateImages(too_many, metadata=meta, timeout=10).read()
    kinds = [e.WhichOneof("event") for e in events]
    assert kinds == ["accepted", "partial", "partial", "image", "settled"]
    assert [e.partial.partial_image_index for e in events[1:3]] == [0, 1]
    assert events[-1].settled.usage.output_tokens > 0
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def sync_images(platform: Platform) -> dict[str, float]:
    """The gateway's pixelrelay_sync_images_total, by source."""
    _grpc, metrics_port = platform.config.service_ports()["gateway"]
    async with httpx.AsyncClient() as http:
        text = (await http.get(f"http://127.0.0.1:{metrics_port}/metrics")).text
    counts = {"relayed": 0.0, "storage": 0.0}
    for line in text.splitlines():
        if line.startswith("pixelrelay_sync_images_total{"):
            source = line.split('source="', 1)[1].split('"', 1)[0]
            counts[source] = float(line.rsplit(" ", 1)[1])
    return counts


async def test_the_answer_uses_the_relayed_images_and_storage_when_none_came(
    platform: Platform, client: openai.AsyncOpenAI
) -> None:
    """The dispatcher relays the finished images to the waiting request (no read-back);
    a request that did not make the task (an idempotent repeat) reads them from storage.
    Both answers are the same stored bytes."""
    before = await sync_images(platform)
    key = {"Idempotency-Key": uuid.uuid4().hex}
    first = await client.images.generate(
        model="gpt-image-2-official", prompt="twice", n=2, extra_headers=key
    )
    middle = await sync_images(platform)
    again = await client.images.generate(
        model="gpt-image-2-official", prompt="twice", n=2, extra_headers=key
    )
    after = await sync_images(platform)
    assert middle["relayed"] - before["relayed"] == 2 and middle["storage"] == before["storage"]
    assert after["storage"] - middle["storage"] == 2 and after["relayed"] == middle["relayed"]
    assert [d.b64_json for d in first.data or []] == [d.b64_json for d in again.data or []]


@pytest.mark.security
async def test_every_v1_route_and_rpc_needs_a_key_with_the_scope(platform: Platform) -> None:
    """/v1's routes and the new RPCs: no key 401, a key without `generate` 403, both in
    OpenAI's envelope on /v1; nothing accepted."""
    made = await platform.http.post(
        "/api/v1/keys", headers=platform.auth(), json={"name": "reader", "scopes": ["read"]}
    )
    reader = made.json()["api_key"]
    form = {"prompt": "x", "model": "gpt-image-2"}
    image = {"image": ("i.png", png(64, 64), "image/png")}
    for headers, status in (({}, 401), (platform.auth(reader), 403)):
        answers = [
            await platform.http.post("/v1/images/generations", headers=headers, json={**form}),
            await platform.http.post("/v1/images/edits", headers=headers, data=form, files=image),
            await platform.http.get("/v1/models", headers=headers),
        ]
        for answer in answers:
            assert answer.status_code == status, answer.text
            assert answer.json()["error"]["type"] == "invalid_request_error"
    async with grpc.aio.insecure_channel(f"127.0.0.1:{platform.config.grpc_port}") as channel:
        stub = public_api_pb2_grpc.PublicApiStub(channel)
        for call in (
            stub.ListModels(public_api_pb2.ListModelsRequest(), timeout=10),
            stub.GenerateImages(public_api_pb2.GenerateImagesRequest(), timeout=10).read(),
        ):
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await call
            assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
