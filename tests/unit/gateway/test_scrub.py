"""Input images keep their pixels and lose their metadata and trailing bytes."""

from __future__ import annotations

import contextlib
import io

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image, ImageCms, ImageDraw
from PIL.PngImagePlugin import PngInfo

from pixelrelay.errors import ApiError, E
from pixelrelay_gateway.inputs.decode_pool import DecodeWorkers
from pixelrelay_gateway.inputs.images import MAX_PIXELS, DecodeBudget, inspect_image
from pixelrelay_gateway.inputs.scrub import Malformed, scrub

GPS = "51 deg 30' N"  # what a phone writes, and what must not survive
SECRET = b"private-note-4711"
ZIP = b"PK\x03\x04" + b"a zip file riding along" * 4
BUDGET = DecodeBudget(MAX_PIXELS * 4)


def picture(mode: str = "RGB", size: tuple[int, int] = (64, 40)) -> Image.Image:
    image = Image.new(mode, size, "white" if mode != "P" else 0)
    draw = ImageDraw.Draw(image)
    draw.rectangle((4, 4, 30, 20), fill="red" if mode != "P" else 1)
    draw.ellipse((32, 10, 60, 36), fill="blue" if mode != "P" else 2)
    return image


def exif(orientation: int = 1) -> Image.Exif:
    tags = Image.Exif()
    tags[0x0112] = orientation
    tags[0x010F] = "PhoneMaker"
    tags[0x9286] = GPS  # user comment
    return tags


def encoded(image: Image.Image, fmt: str, **options: object) -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt, **options)
    return out.getvalue()


def pixels(data: bytes) -> bytes:
    with Image.open(io.BytesIO(data)) as image:
        return image.convert("RGBA").tobytes()


def assert_clean(original: bytes, clean: bytes) -> None:
    assert pixels(clean) == pixels(original)
    for leaked in (GPS.encode(), b"PhoneMaker", SECRET, b"PK\x03\x04", b"Exif\x00\x00"):
        assert leaked not in clean


XMP = b"http://ns.adobe.com/xap/1.0/\x00<x:xmpmeta>" + SECRET + b"</x:xmpmeta>"


@pytest.mark.parametrize("options", [{}, {"progressive": True}, {"restart_marker_blocks": 4}])
def test_jpeg_loses_exif_xmp_comments_and_trailing_bytes(options: dict[str, object]) -> None:
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    original = encoded(
        picture(), "JPEG", exif=exif(), comment=SECRET, icc_profile=srgb, quality=90, **options
    )
    app1_xmp = b"\xff\xe1" + (len(XMP) + 2).to_bytes(2, "big") + XMP
    original = original[:2] + app1_xmp + original[2:] + ZIP
    clean = scrub(original, "jpeg")
    assert_clean(original, clean)
    assert clean.endswith(b"\xff\xd9")
    with Image.open(io.BytesIO(clean)) as image:
        assert image.info.get("icc_profile") == srgb  # colour is not metadata


def test_png_loses_text_and_exif_chunks_and_keeps_transparency() -> None:
    info = PngInfo()
    info.add_text("Comment", SECRET.decode())
    info.add_itxt("Location", GPS)
    image = picture("P")
    image.putpalette([255, 255, 255, 255, 0, 0, 0, 0, 255])
    original = encoded(image, "PNG", pnginfo=info, exif=exif(), transparency=0) + ZIP
    clean = scrub(original, "png")
    assert_clean(original, clean)
    assert clean.endswith(b"IEND\xaeB`\x82")
    with Image.open(io.BytesIO(clean)) as decoded:
        assert decoded.info["transparency"] == 0


@pytest.mark.parametrize("lossless", [False, True])
def test_webp_loses_exif_and_xmp_and_bytes_past_riff(lossless: bool) -> None:
    original = encoded(picture("RGBA"), "WEBP", exif=exif(), xmp=XMP, lossless=lossless) + ZIP
    clean = scrub(original, "webp")
    assert_clean(original, clean)
    assert b"XMP " not in clean and b"EXIF" not in clean
    assert int.from_bytes(clean[4:8], "little") == len(clean) - 8


async def test_a_turned_photo_is_stored_upright_without_its_exif(
    decode_workers: DecodeWorkers,
) -> None:
    # orientation 6: the camera was turned; viewers rotate the 64x40 pixels to 40x64
    original = encoded(picture(), "JPEG", exif=exif(orientation=6), quality=95)
    image = await inspect_image(original, "file", BUDGET, decode_workers)
    assert (image.width, image.height) == (40, 64)
    assert b"Exif" not in image.data and GPS.encode() not in image.data


@pytest.mark.parametrize("fmt", ["png", "jpeg", "webp"])
async def test_uploads_and_references_are_scrubbed_on_inspection(
    fmt: str, decode_workers: DecodeWorkers
) -> None:
    original = encoded(picture(), fmt.upper(), exif=exif()) + ZIP
    image = await inspect_image(original, "file", BUDGET, decode_workers)
    assert_clean(original, image.data)


@pytest.mark.parametrize(
    ("fmt", "missing"),
    [("png", 12), ("jpeg", 2), ("webp", 10)],  # IEND, EOI, the last chunk
)
async def test_a_file_cut_short_is_refused(
    fmt: str, missing: int, decode_workers: DecodeWorkers
) -> None:
    cut = encoded(picture(), fmt.upper())[:-missing]
    with pytest.raises(Malformed):
        scrub(cut, fmt)
    with pytest.raises(ApiError) as caught:
        await inspect_image(cut, "file", BUDGET, decode_workers)
    assert caught.value.kind is E.INVALID_IMAGE


@settings(max_examples=300, deadline=None)
@given(
    fmt=st.sampled_from(["png", "jpeg", "webp"]),
    flips=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=6),
    cut=st.integers(0, 10_000),
)
def test_damaged_files_are_malformed_never_a_crash(
    fmt: str, flips: list[tuple[int, int]], cut: int
) -> None:
    data = bytearray(SAMPLES[fmt])
    for at, value in flips:
        data[at % len(data)] = value
    with contextlib.suppress(Malformed):  # anything else fails the test
        scrub(bytes(data[: max(12, len(data) - cut % len(data))]), fmt)


SAMPLES = {fmt: encoded(picture(), fmt.upper(), exif=exif()) for fmt in ("png", "jpeg", "webp")}
