"""What an input image is: checked by magic bytes, declared type, the size in its header
(refused above MAX_PIXELS before any decode), the work its structure implies (refused when
a decode would cost far more than its pixels: work_bounds.py) and a full decode within a
memory budget; what is kept of it: the image alone, without metadata or trailing bytes
(scrub.py)."""

from __future__ import annotations

import asyncio
import contextlib
import io
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from PIL import Image, UnidentifiedImageError

from pixelrelay.errors import ApiError, E
from pixelrelay.image_formats import MIME_TYPES
from pixelrelay_gateway.inputs.scrub import scrub
from pixelrelay_gateway.inputs.work_bounds import (
    MAX_JPEG_SCANS,
    InflatesPastItsSize,
    check_png_inflation,
    jpeg_scans,
    png_icc_profiles,
)

if TYPE_CHECKING:  # decode_pool runs read_header() and decode() below in its workers
    from pixelrelay_gateway.inputs.decode_pool import DecodeWorkers

MAX_PIXELS = 40_000_000
# Declared types we accept; octet-stream because many object stores serve that.
ACCEPTED_CONTENT_TYPES = {
    "image/png",
    "image/jpeg",
    "image/jpg",
    "image/webp",
    "application/octet-stream",
    "binary/octet-stream",
    "",
}


@dataclass(frozen=True)
class InputImage:
    data: bytes
    format: str  # png | jpeg | webp
    width: int
    height: int
    has_alpha: bool

    @property
    def content_type(self) -> str:
        return MIME_TYPES[self.format]


def sniff(data: bytes) -> str | None:
    """The format the first bytes announce, whatever the file claims to be."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if data.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return None


def check_content_type(content_type: str, param: str) -> None:
    declared = content_type.split(";", 1)[0].strip().lower()
    if declared not in ACCEPTED_CONTENT_TYPES:
        raise ApiError(E.INVALID_IMAGE, f"{param}: served as {declared}, not an image", param=param)


@dataclass(frozen=True)
class Header:
    width: int
    height: int
    orientation: int  # EXIF's, 1 when upright or unknown
    scans: int  # a JPEG's start-of-scan segments; 0 for other formats


def read_header(data: bytes, fmt: str) -> Header:
    """Size, EXIF orientation and scan count from the file's structure, before a single
    pixel is decoded. Runs in a decode worker too: PIL walks every chunk or segment in
    Python and inflates every iCCP chunk as it opens a file, seconds of CPU for a 20 MB
    file of tiny segments."""
    if fmt == "png" and png_icc_profiles(data) > 1:
        raise Undecodable("a PNG may hold one ICC profile")  # each costs PIL an inflate
    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
            orientation = _orientation(image)
    except Image.DecompressionBombError:
        width, height, orientation = MAX_PIXELS + 1, 1, 1  # PIL's own guard, far above ours
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        # ValueError: PIL's cap on a zTXt/iCCP chunk's inflated size (1 MB), among others
        raise Undecodable("the image does not decode") from None
    return Header(width, height, orientation, jpeg_scans(data) if fmt == "jpeg" else 0)


def _judge(header: Header, param: str) -> None:
    """Refuse what would cost too much to decode: more than MAX_PIXELS (memory), more
    scans than an encoder writes (CPU)."""
    if header.width * header.height > MAX_PIXELS:
        shown = f"{header.width}x{header.height}" if header.height > 1 else "its size"
        raise ApiError(
            E.IMAGE_TOO_LARGE, f"{param}: {shown} exceeds {MAX_PIXELS:,} pixels", param=param
        )
    if header.scans > MAX_JPEG_SCANS:
        raise ApiError(
            E.INVALID_IMAGE,
            f"{param}: a JPEG of {header.scans:,} scans; at most {MAX_JPEG_SCANS} are accepted",
            param=param,
        )


class Undecodable(Exception):
    """Why a file is not an image we take (said to the caller, after the param)."""


class DecodeTimeout(Exception):
    """A decode ran past its deadline (and its worker was killed)."""


def decode(data: bytes, fmt: str, orientation: int) -> InputImage:
    """The image alone (scrubbed), fully decoded: a truncated or corrupt file fails here.
    Runs in a decode worker (decode_pool.py), which can be killed.

    Scrubbing drops EXIF, and with it an orientation tag: such an image (a phone photo
    held upright) is turned to how it was seen and re-encoded instead. A PNG whose pixel
    data inflates past what its size needs is refused (it would go upstream as a bomb)."""
    try:
        if fmt == "png":
            check_png_inflation(data)
        clean = scrub(data, fmt)
        with Image.open(io.BytesIO(clean)) as image:
            image.load()
            if orientation in _TURNS:
                return decode(_upright(image, fmt, orientation), fmt, 1)
            has_alpha = "A" in image.getbands() or "transparency" in image.info
            width, height = image.size
    except InflatesPastItsSize:
        raise Undecodable("its pixel data inflates past its size") from None
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError, SyntaxError, ValueError):
        # ValueError: Malformed (scrub.py) and PIL's cap on a text or ICC chunk's size
        raise Undecodable("the image does not decode") from None
    return InputImage(clean, fmt, width, height, has_alpha)


_ORIENTATION = 0x0112  # the EXIF tag


def _orientation(image: Image.Image) -> int:
    """From EXIF that sits before the pixels (JPEG, WebP, most PNGs); a PNG whose eXIf
    chunk follows its pixel data would need a full decode to find it, so it is taken as
    upright."""
    if "exif" not in image.info:
        return 1
    return int(image.getexif().get(_ORIENTATION, 1))


_SAVE_OPTIONS = {"png": {}, "jpeg": {"quality": 95}, "webp": {"quality": 95}}


# EXIF orientation → the turn that shows the pixels as the camera saw them
_TURNS = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def _upright(image: Image.Image, fmt: str, orientation: int) -> bytes:
    turned = image.transpose(_TURNS[orientation])
    out = io.BytesIO()
    turned.save(out, format=fmt, icc_profile=image.info.get("icc_profile"), **_SAVE_OPTIONS[fmt])
    return out.getvalue()


class DecodeBudget:
    """Pixels decoded at once by one gateway, in bytes (4 per pixel, the widest mode we
    take): four 40-megapixel uploads once took a gateway from 268 to 773 MB. A decode waits
    until its share is free; one image alone always fits (MAX_PIXELS * 4 <= the budget)."""

    def __init__(self, budget_bytes: int):
        if budget_bytes < MAX_PIXELS * 4:
            raise ValueError(f"the decode budget must hold one {MAX_PIXELS:,}-pixel image")
        self.free = budget_bytes
        self._changed = asyncio.Condition()

    @contextlib.asynccontextmanager
    async def share(self, nbytes: int) -> AsyncIterator[None]:
        async with self._changed:
            await self._changed.wait_for(lambda: self.free >= nbytes)
            self.free -= nbytes
        try:
            yield
        finally:
            async with self._changed:
                self.free += nbytes
                self._changed.notify_all()


async def inspect_image(
    data: bytes, param: str, budget: DecodeBudget, workers: DecodeWorkers
) -> InputImage:
    """Magic bytes here; header, pixel cap and scan count, then a decode within the
    budget, both by a worker process. The share is held until the worker is done (or
    killed), even if the caller is cancelled first."""
    fmt = sniff(data)
    if fmt is None:
        raise ApiError(E.INVALID_IMAGE, f"{param}: not a PNG, JPEG or WebP file", param=param)
    try:
        header = await workers.read_header(data, fmt)
        _judge(header, param)
        async with budget.share(header.width * header.height * 4):
            return await workers.decode(data, fmt, header.orientation)
    except Undecodable as reason:
        raise ApiError(E.INVALID_IMAGE, f"{param}: {reason}", param=param) from None
    except DecodeTimeout:
        raise ApiError(
            E.INVALID_IMAGE,
            f"{param}: the image takes more than {workers.timeout:g} s to decode",
            param=param,
        ) from None


def check_mask(mask: InputImage, first: InputImage, param: str = "mask_url") -> None:
    if mask.format != "png" or not mask.has_alpha:
        raise ApiError(
            E.INVALID_IMAGE,
            f"{param}: the mask must be a PNG with an alpha channel",
            param=param,
        )
    if (mask.width, mask.height) != (first.width, first.height):
        raise ApiError(
            E.INVALID_IMAGE,
            f"{param}: the mask is {mask.width}x{mask.height}, the first image "
            f"{first.width}x{first.height}; they must match",
            param=param,
        )
