"""Images built to cost their decoder, replayed against a running platform.

The progressive-JPEG decode bomb: one account uploads files built to cost a decode
seconds of CPU each while another tenant uploads a small image, which must be answered in
its normal time. Before the fix the bombs were decoded, each in one of the few threads
every decode shares, and another tenant's 64x64 upload waited for a free one (26.8 s when
reported, 10 s and more here). And PNGs whose chunks inflate past any sense: once a 500,
or accepted and passed upstream."""

from __future__ import annotations

import asyncio
import io
import re
import struct
import time
import uuid
import zlib

import httpx
import PIL.Image
import pytest

from tests.e2e.conftest import Platform
from tests.e2e.helpers import new_account

pytestmark = [pytest.mark.e2e, pytest.mark.security]


def progressive_jpeg(width: int, height: int, scans: int) -> bytes:
    """A greyscale progressive JPEG whose last refinement scan is repeated up to ``scans``:
    libjpeg redoes each over every coefficient (~25 ms at 40 MP). 6000x6600 with 1,500
    scans is the reported 169 KB file that cost 40 s of CPU."""
    out = io.BytesIO()
    PIL.Image.new("L", (width, height), 0).save(out, "JPEG", progressive=True, quality=50)
    jpeg = out.getvalue()
    last = jpeg.rindex(b"\xff\xda")
    end = re.compile(rb"\xff[^\x00\xd0-\xd7]").search(jpeg, last + 2)
    assert end is not None
    scan = jpeg[last : end.start()]
    return jpeg[: end.start()] + scan * (scans - jpeg.count(b"\xff\xda")) + jpeg[end.start() :]


def small_png() -> bytes:
    out = io.BytesIO()
    PIL.Image.new("RGB", (64, 64), (uuid.uuid4().int % 256, 90, 200)).save(out, "PNG")
    return out.getvalue()


async def upload(platform: Platform, key: str, data: bytes, kind: str) -> httpx.Response:
    return await platform.http.post(
        "/api/v1/uploads",
        headers=platform.auth(key),
        files={"file": (f"f.{kind}", data, f"image/{kind}")},
        timeout=60,
    )


async def timed_upload(platform: Platform) -> float:
    started = time.monotonic()
    answer = await upload(platform, platform.api_key, small_png(), "png")
    assert answer.status_code == 200, answer.text
    return time.monotonic() - started


async def test_a_decode_bomb_does_not_hold_up_another_tenants_upload(
    platform: Platform,
) -> None:
    normal = min([await timed_upload(platform) for _ in range(3)])
    attacker = await new_account(platform, 1000)
    # Eight bombs of 1,500 scans, small enough in pixels (4 MP, 4 s of CPU each) to be
    # decoded side by side within the budget; and two files of 100 scans at 40 MP (the
    # most a file may have: 2.5 s each, within every limit but heavy).
    bomb, heavy = progressive_jpeg(2000, 2000, 1500), progressive_jpeg(6000, 6600, 100)
    files = [bomb] * 8 + [heavy] * 2
    attack = [asyncio.create_task(upload(platform, attacker, data, "jpeg")) for data in files]
    await asyncio.sleep(0.5)  # the attack's decodes are under way

    try:
        waited = await asyncio.wait_for(timed_upload(platform), timeout=15)
    except TimeoutError:
        pytest.fail("another tenant's 64x64 upload waited more than 15 s behind the bombs")

    assert waited < max(1.5, 5 * normal), f"{waited:.2f} s during the attack, {normal:.2f} s before"
    answers = await asyncio.gather(*attack)
    for answer, data in zip(answers, files, strict=True):
        if data is heavy:
            assert answer.status_code == 200, answer.text
        else:
            error = answer.json()["error"]
            assert (answer.status_code, error["code"], error["param"]) == (422, 20007, "file")
            assert "1,500 scans" in error["message"]


def chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_64(extra: bytes = b"") -> bytes:
    """A 64x64 RGBA PNG with ``extra`` chunks after its header."""
    out = io.BytesIO()
    PIL.Image.new("RGBA", (64, 64), (10, 20, 30, 0)).save(out, "PNG")
    return out.getvalue()[:33] + extra + out.getvalue()[33:]


# 2 MB of zeros behind a text and an ICC chunk (PIL refuses past 1 MB with a ValueError),
# and a 1x1 PNG whose pixel data inflates to 50 MB (a row of 1x1 RGBA is 5 bytes).
TEXT_BOMB = png_64(chunk(b"zTXt", b"c\x00\x00" + zlib.compress(bytes(2 << 20))))
ICC_BOMB = png_64(chunk(b"iCCP", b"icc\x00\x00" + zlib.compress(bytes(2 << 20))))
IDAT_BOMB = (
    b"\x89PNG\r\n\x1a\n"
    + chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 6, 0, 0, 0))
    + chunk(b"IDAT", zlib.compress(bytes(50 << 20), 9))
    + chunk(b"IEND", b"")
)


@pytest.mark.parametrize(
    ("route", "files", "status", "param"),
    [
        ("/api/v1/uploads", {"file": TEXT_BOMB}, 422, "file"),
        ("/api/v1/uploads", {"file": ICC_BOMB}, 422, "file"),
        ("/api/v1/uploads", {"file": IDAT_BOMB}, 422, "file"),
        ("/v1/images/edits", {"image": TEXT_BOMB}, 400, "image"),
        ("/v1/images/edits", {"image": IDAT_BOMB}, 400, "image"),
        ("/v1/images/edits", {"image": png_64(), "mask": ICC_BOMB}, 400, "mask"),
    ],
    ids=["upload-zTXt", "upload-iCCP", "upload-IDAT", "edit-zTXt", "edit-IDAT", "mask-iCCP"],
)
async def test_png_chunks_inflating_past_their_size_are_invalid_images(
    platform: Platform, route: str, files: dict[str, bytes], status: int, param: str
) -> None:
    openai = route.startswith("/v1/")
    form = {"prompt": "x", "model": "gpt-image-2-official"} if openai else {}  # takes masks
    answer = await platform.http.post(
        route,
        headers=platform.auth(),
        data=form,
        files={name: (f"{name}.png", data, "image/png") for name, data in files.items()},
    )
    assert answer.status_code == status, answer.text
    error = answer.json()["error"]
    assert (error["param"], error["pixelrelay_code" if openai else "code"]) == (param, 20007)
