"""Files whose decode costs far more than their size or pixel count says are refused
before that work is done: a progressive JPEG of 1,500 scans, a PNG whose text or ICC chunk
inflates past PIL's cap, a 1x1 PNG whose pixel data inflates to 50 MB."""

from __future__ import annotations

import io
import re
import struct
import time
import zlib

import PIL.Image
import pytest

from pixelrelay.errors import ApiError, E
from pixelrelay_gateway.inputs.decode_pool import DecodeWorkers
from pixelrelay_gateway.inputs.images import MAX_PIXELS, DecodeBudget, inspect_image
from pixelrelay_gateway.inputs.work_bounds import MAX_JPEG_SCANS, jpeg_scans, png_raw_size

BUDGET = DecodeBudget(MAX_PIXELS * 4)


def chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def encoded(mode: str, size: tuple[int, int], fmt: str, **options: object) -> bytes:
    out = io.BytesIO()
    PIL.Image.new(mode, size, 0).save(out, fmt, **options)
    return out.getvalue()


def with_scans(jpeg: bytes, scans: int) -> bytes:
    """``jpeg`` (progressive) with its last scan repeated until it has ``scans``: libjpeg
    decodes every one, each over the whole image."""
    last = jpeg.rindex(b"\xff\xda")
    end = re.compile(rb"\xff[^\x00\xd0-\xd7]").search(jpeg, last + 2)
    assert end is not None
    extra = jpeg[last : end.start()] * (scans - jpeg_scans(jpeg))
    return jpeg[: end.start()] + extra + jpeg[end.start() :]


async def refusal(data: bytes, decode_workers: DecodeWorkers) -> ApiError:
    with pytest.raises(ApiError) as caught:
        await inspect_image(data, "file", BUDGET, decode_workers)
    return caught.value


@pytest.mark.parametrize(("mode", "scans"), [("L", 6), ("RGB", 10)])
def test_an_encoders_progressive_jpeg_has_few_scans(mode: str, scans: int) -> None:
    assert jpeg_scans(encoded(mode, (64, 64), "JPEG", progressive=True)) == scans


async def test_a_jpeg_of_1500_scans_is_refused_without_decoding(
    decode_workers: DecodeWorkers,
) -> None:
    bomb = with_scans(encoded("L", (6000, 6600), "JPEG", progressive=True), 1500)
    assert len(bomb) < 400_000 and jpeg_scans(bomb) == 1500
    started = time.process_time()
    refused = await refusal(bomb, decode_workers)
    assert time.process_time() - started < 1.0  # the decode alone costs 40 s
    assert (refused.kind, refused.param) == (E.INVALID_IMAGE, "file")
    assert "1,500 scans" in refused.message


async def test_a_jpeg_at_the_scan_limit_still_decodes(decode_workers: DecodeWorkers) -> None:
    image = await inspect_image(
        with_scans(encoded("L", (64, 64), "JPEG", progressive=True), MAX_JPEG_SCANS),
        "file",
        BUDGET,
        decode_workers,
    )
    assert (image.format, image.width) == ("jpeg", 64)


def png_with(extra: bytes, mode: str = "RGBA") -> bytes:
    """A 1x1 PNG with ``extra`` chunks after its header."""
    png = encoded(mode, (1, 1), "PNG")
    return png[:33] + extra + png[33:]


@pytest.mark.parametrize(
    "extra",
    [
        chunk(b"zTXt", b"comment\x00\x00" + zlib.compress(bytes(2 * 1024 * 1024))),
        chunk(b"iCCP", b"icc\x00\x00" + zlib.compress(bytes(2 * 1024 * 1024))),
    ],
    ids=["zTXt", "iCCP"],
)
async def test_a_chunk_inflating_past_1_mb_is_an_invalid_image_not_a_crash(
    extra: bytes, decode_workers: DecodeWorkers
) -> None:
    """PIL raises ValueError past its 1 MB cap: it once escaped as a 500."""
    refused = await refusal(png_with(extra), decode_workers)
    assert (refused.kind, refused.param) == (E.INVALID_IMAGE, "file")


def zeros_deflated(nbytes: int) -> bytes:
    """``nbytes`` of zeros, deflated (about 1,000:1) without holding them all."""
    deflater, step = zlib.compressobj(9), bytes(1024 * 1024)
    parts = [deflater.compress(step) for _ in range(nbytes // len(step))]
    return b"".join([*parts, deflater.flush()])


async def test_a_1x1_png_inflating_to_50_mb_is_refused_after_a_megabyte(
    decode_workers: DecodeWorkers,
) -> None:
    header = struct.pack(">IIBBBBB", 1, 1, 8, 6, 0, 0, 0)
    bomb = (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zeros_deflated(50 * 1024 * 1024))
        + chunk(b"IEND", b"")
    )
    assert len(bomb) < 100_000
    started = time.process_time()
    refused = await refusal(bomb, decode_workers)
    assert time.process_time() - started < 0.5
    assert (refused.kind, refused.param) == (E.INVALID_IMAGE, "file")
    assert "inflates" in refused.message


@pytest.mark.parametrize(
    ("mode", "size"),
    [("RGBA", (37, 11)), ("RGB", (5, 300)), ("L", (1, 1)), ("1", (13, 3)), ("P", (9, 9))],
)
def test_the_raw_size_is_what_a_png_inflates_to(mode: str, size: tuple[int, int]) -> None:
    png = encoded(mode, size, "PNG")
    idat, pos = b"", 8
    while pos < len(png):
        length = int.from_bytes(png[pos : pos + 4], "big")
        if png[pos + 4 : pos + 8] == b"IDAT":
            idat += png[pos + 8 : pos + 8 + length]
        pos += 12 + length
    width, height, depth, colour = struct.unpack(">IIBB", png[16:26])
    assert len(zlib.decompress(idat)) == png_raw_size(width, height, depth, colour, False)


def test_an_interlaced_png_has_a_row_per_pass() -> None:
    # 1x1: the first pass only. 3x3 RGBA: passes 1 and 4 have a 1-pixel row, 5 a row of
    # 2, 6 two rows of 1, 7 a row of 3; passes 2 and 3 start outside the image.
    assert png_raw_size(1, 1, 8, 6, True) == 1 + 4
    assert png_raw_size(3, 3, 8, 6, True) == 5 + 5 + 9 + 2 * 5 + 13
