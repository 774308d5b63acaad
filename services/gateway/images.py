"""What an input image is: checked by magic bytes, declared type and a full decode."""

from __future__ import annotations

import asyncio
import io
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

from pixelrelay.errors import ApiError, E

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
EXTENSIONS = {"png": "png", "jpeg": "jpg", "webp": "webp"}


@dataclass(frozen=True)
class InputImage:
    data: bytes
    format: str  # png | jpeg | webp
    width: int
    height: int
    has_alpha: bool

    @property
    def extension(self) -> str:
        return EXTENSIONS[self.format]

    @property
    def content_type(self) -> str:
        return f"image/{self.format}"


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


def _decode(data: bytes, param: str) -> InputImage:
    fmt = sniff(data)
    if fmt is None:
        raise ApiError(E.INVALID_IMAGE, f"{param}: not a PNG, JPEG or WebP file", param=param)
    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
            if width * height > MAX_PIXELS:
                raise ApiError(
                    E.IMAGE_TOO_LARGE,
                    f"{param}: {width}x{height} exceeds {MAX_PIXELS:,} pixels",
                    param=param,
                )
            image.load()  # a truncated or corrupt file fails here
            has_alpha = "A" in image.getbands() or "transparency" in image.info
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError, SyntaxError):
        raise ApiError(
            E.INVALID_IMAGE, f"{param}: the image does not decode", param=param
        ) from None
    return InputImage(data, fmt, width, height, has_alpha)


async def inspect_image(data: bytes, param: str) -> InputImage:
    """Decode off the event loop: a large image takes tens of milliseconds."""
    return await asyncio.to_thread(_decode, data, param)


def check_mask(mask: InputImage, first: InputImage) -> None:
    if mask.format != "png" or not mask.has_alpha:
        raise ApiError(
            E.INVALID_IMAGE,
            "mask_url: the mask must be a PNG with an alpha channel",
            param="mask_url",
        )
    if (mask.width, mask.height) != (first.width, first.height):
        raise ApiError(
            E.INVALID_IMAGE,
            f"mask_url: the mask is {mask.width}x{mask.height}, the first image "
            f"{first.width}x{first.height}; they must match",
            param="mask_url",
        )
