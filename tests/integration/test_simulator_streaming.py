"""The simulator streams partial images over SSE as OpenAI does, so the official SDK's
``stream=True`` iterates them: partials first, then the completed image."""

from __future__ import annotations

import base64
import io

import openai
import pytest
from PIL import Image

from tests.integration.conftest import Simulator


def client(simulator: Simulator) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(api_key="sim", base_url=simulator.url, max_retries=0)


async def test_the_sdk_iterates_partials_then_the_final_image(simulator: Simulator) -> None:
    await simulator.faults({"kind": "latency", "match": "slowly", "seconds": 0.3})
    async with client(simulator) as sdk:
        stream = await sdk.images.generate(
            model="gpt-image-2",
            prompt="draw it slowly",
            size="1536x1024",
            stream=True,
            partial_images=2,
        )
        events = [event async for event in stream]
    assert [e.type for e in events] == [
        "image_generation.partial_image",
        "image_generation.partial_image",
        "image_generation.completed",
    ]
    assert [getattr(e, "partial_image_index", None) for e in events[:2]] == [0, 1]
    final = Image.open(io.BytesIO(base64.b64decode(events[-1].b64_json)))
    assert final.size == (1536, 1024)
    assert events[-1].usage.total_tokens > 0  # type: ignore[union-attr]


async def test_edits_stream_their_own_event_types(simulator: Simulator) -> None:
    reference = io.BytesIO()
    Image.new("RGB", (1024, 1024), "red").save(reference, "PNG")
    async with client(simulator) as sdk:
        stream = await sdk.images.edit(
            model="gpt-image-2",
            image=("r.png", reference.getvalue(), "image/png"),
            prompt="bluer",
            stream=True,
            partial_images=1,
        )
        types = [event.type async for event in stream]
    assert types == ["image_edit.partial_image", "image_edit.completed"]


async def test_partial_images_are_checked(simulator: Simulator) -> None:
    async with client(simulator) as sdk:
        with pytest.raises(openai.BadRequestError) as too_many:
            await sdk.images.generate(
                model="gpt-image-2", prompt="x", stream=True, partial_images=4
            )
        with pytest.raises(openai.BadRequestError) as without_stream:
            await sdk.images.generate(model="gpt-image-2", prompt="x", partial_images=1)
    assert too_many.value.param == without_stream.value.param == "partial_images"
