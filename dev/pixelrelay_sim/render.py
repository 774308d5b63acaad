"""Deterministic images: the same prompt, size and format always give the same bytes."""

from __future__ import annotations

import hashlib
import io

from PIL import Image, ImageDraw

PIL_FORMATS = {"png": "PNG", "jpeg": "JPEG", "webp": "WEBP"}


def prompt_color(prompt: str) -> tuple[int, int, int]:
    """The background colour a prompt renders with (tests check downloads against it)."""
    digest = hashlib.sha256(prompt.encode()).digest()
    return digest[0], digest[1], digest[2]


def render_image(
    prompt: str,
    width: int,
    height: int,
    fmt: str,
    *,
    transparent: bool = False,
    compression: int | None = None,
) -> bytes:
    r, g, b = prompt_color(prompt)
    mode = "RGBA" if transparent else "RGB"
    fill = (r, g, b, 0) if transparent else (r, g, b)
    image = Image.new(mode, (width, height), fill)
    draw = ImageDraw.Draw(image)
    # A centred panel in the complementary colour so the image is not a flat field.
    inset_x, inset_y = width // 4, height // 4
    panel = (255 - r, 255 - g, 255 - b, 255) if transparent else (255 - r, 255 - g, 255 - b)
    draw.rectangle((inset_x, inset_y, width - inset_x, height - inset_y), fill=panel)
    out = io.BytesIO()
    if fmt == "png":
        image.save(out, "PNG", compress_level=1)
    else:
        quality = 90 if compression is None else max(1, 100 - compression)
        image.save(out, PIL_FORMATS[fmt], quality=quality)
    return out.getvalue()
