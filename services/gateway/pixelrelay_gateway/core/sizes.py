"""Ratio × resolution → pixels: the one table the quote and the upstream call both use."""

from __future__ import annotations

import math
import re
from typing import get_args

from pixelrelay.catalog import Ratio

RATIOS: tuple[str, ...] = get_args(Ratio)
RESOLUTIONS = ("1k", "2k", "4k")
WIDE_RATIOS_FOR_4K = ("16:9", "9:16", "2:1", "1:2", "21:9", "9:21")

_LANDSCAPE: dict[str, dict[str, tuple[int, int]]] = {
    "1:1": {"1k": (1024, 1024), "2k": (2048, 2048)},
    "3:2": {"1k": (1536, 1024), "2k": (2048, 1360)},
    "4:3": {"1k": (1024, 768), "2k": (2048, 1536)},
    "5:4": {"1k": (1280, 1024), "2k": (2560, 2048)},
    "16:9": {"1k": (1536, 864), "2k": (2048, 1152), "4k": (3840, 2160)},
    "2:1": {"1k": (2048, 1024), "2k": (2688, 1344), "4k": (3840, 1920)},
    "21:9": {"1k": (2016, 864), "2k": (2688, 1152), "4k": (3840, 1648)},
}


def _build() -> dict[tuple[str, str], tuple[int, int]]:
    table: dict[tuple[str, str], tuple[int, int]] = {}
    for ratio, sizes in _LANDSCAPE.items():
        a, b = ratio.split(":")
        for resolution, (w, h) in sizes.items():
            table[(ratio, resolution)] = (w, h)
            table[(f"{b}:{a}", resolution)] = (h, w)  # the portrait twin
    return table


PIXELS = _build()

_EXPLICIT_RATIO = re.compile(r"\b(\d{1,2}:\d{1,2})\b")
_KEYWORDS = (  # first match wins; checked after an explicit "W:H" in the prompt
    ("banner", "21:9"),
    ("panorama", "21:9"),
    ("widescreen", "16:9"),
    ("cinematic", "16:9"),
    ("landscape", "3:2"),
    ("wallpaper", "16:9"),
    ("story", "9:16"),
    ("vertical", "9:16"),
    ("portrait", "2:3"),
    ("poster", "2:3"),
    ("square", "1:1"),
)


def ratio_from_prompt(prompt: str) -> str | None:
    """The ratio a prompt asks for ("… in 16:9", "a banner …"), if any."""
    for match in _EXPLICIT_RATIO.finditer(prompt):
        if match[1] in RATIOS:
            return match[1]
    lowered = prompt.lower()
    for word, ratio in _KEYWORDS:
        if re.search(rf"\b{word}\b", lowered):
            return ratio
    return None


def ratio_of(width: int, height: int) -> str:
    """The table's ratio closest to an image's shape (compared on a log scale)."""
    shape = math.log(width / height)

    def distance(ratio: str) -> float:
        a, b = ratio.split(":")
        return abs(math.log(int(a) / int(b)) - shape)

    return min(RATIOS, key=distance)


def resolution_for_pixels(width: int, height: int) -> str:
    """The price tier of an explicit WIDTHxHEIGHT: the table's largest size per tier."""
    pixels = width * height
    if pixels <= 2048 * 1024:
        return "1k"
    if pixels <= 2048 * 2048:
        return "2k"
    return "4k"
