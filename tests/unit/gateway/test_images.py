"""Input images are sized from their header and refused above the pixel cap before any
pixel is decoded; decodes share a memory budget."""

from __future__ import annotations

import asyncio
import struct
import zlib

import pytest

from pixelrelay.errors import ApiError, E
from pixelrelay_gateway.inputs.decode_pool import DecodeWorkers
from pixelrelay_gateway.inputs.images import MAX_PIXELS, DecodeBudget, inspect_image
from pixelrelay_sim.render import render_image


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that announces its size and holds no pixels: a decode would fail (422), so a
    413 proves the size was judged before decoding."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


BUDGET = DecodeBudget(MAX_PIXELS * 4)


@pytest.mark.parametrize(
    ("width", "height"),
    [(20_000, 20_000), (8_000, 8_000), (MAX_PIXELS + 1, 1)],  # a bomb, over the cap, a strip
)
async def test_too_many_pixels_is_413_before_any_decode(
    width: int, height: int, decode_workers: DecodeWorkers
) -> None:
    with pytest.raises(ApiError) as caught:
        await inspect_image(png_header_only(width, height), "image_urls[0]", BUDGET, decode_workers)
    assert (caught.value.kind, caught.value.param) == (E.IMAGE_TOO_LARGE, "image_urls[0]")


async def test_a_header_within_the_cap_still_has_to_decode(decode_workers: DecodeWorkers) -> None:
    with pytest.raises(ApiError) as caught:
        await inspect_image(png_header_only(1024, 1024), "file", BUDGET, decode_workers)
    assert caught.value.kind is E.INVALID_IMAGE


async def test_a_real_image_passes(decode_workers: DecodeWorkers) -> None:
    image = await inspect_image(render_image("x", 1024, 768, "png"), "file", BUDGET, decode_workers)
    assert (image.format, image.width, image.height) == ("png", 1024, 768)


async def test_decodes_wait_for_their_share_of_the_budget() -> None:
    budget = DecodeBudget(MAX_PIXELS * 4)
    order: list[str] = []

    async def decode(name: str, nbytes: int, hold: asyncio.Event) -> None:
        async with budget.share(nbytes):
            order.append(f"{name} in")
            await hold.wait()
        order.append(f"{name} out")

    first_done, second_done = asyncio.Event(), asyncio.Event()
    first = asyncio.create_task(decode("a", MAX_PIXELS * 3, first_done))
    while not order:
        await asyncio.sleep(0)
    second = asyncio.create_task(decode("b", MAX_PIXELS * 2, second_done))
    for _ in range(10):
        await asyncio.sleep(0)
    assert order == ["a in"]  # b does not fit beside a
    first_done.set()
    second_done.set()
    await asyncio.gather(first, second)
    assert order == ["a in", "a out", "b in", "b out"]
    assert budget.free == MAX_PIXELS * 4


def test_the_budget_must_hold_one_full_image() -> None:
    with pytest.raises(ValueError, match="one"):
        DecodeBudget(MAX_PIXELS * 4 - 1)
