"""The adapter's image checks give the same verdicts on the event loop and in a thread."""

from __future__ import annotations

import base64
import binascii
import io
import os
import random
import threading
from collections.abc import Callable
from functools import partial
from typing import Any

import pytest
from PIL import Image

from pixelrelay.v1 import common_pb2
from pixelrelay_dispatcher import upstream
from pixelrelay_dispatcher.errors import BadOutputError
from pixelrelay_dispatcher.upstream import INLINE_MAX_CHARS, Generation, _validate


def encoded(fmt: str, side: int) -> str:
    # Random pixels do not compress: side 256 makes every format well past the threshold.
    image = Image.frombytes("RGB", (side, side), os.urandom(side * side * 3))
    out = io.BytesIO()
    image.save(out, fmt.upper())
    return base64.b64encode(out.getvalue()).decode()


def damaged(b64: str, how: str) -> str:
    raw = bytearray(base64.b64decode(b64))
    if how == "truncated":
        raw = raw[: len(raw) * 2 // 3]
    else:  # a flipped byte in the middle: a PNG chunk CRC, a JPEG/WebP stream
        raw[len(raw) // 2] ^= 0xFF
    return base64.b64encode(bytes(raw)).decode()


def spec(fmt: str, side: int, n: int = 1) -> common_pb2.ImageSpec:
    return common_pb2.ImageSpec(n=n, width=side, height=side, output_format=fmt)


def cases() -> list[tuple[str, list[str], common_pb2.ImageSpec]]:
    out = []
    for side in (8, 256):  # inline and in a thread
        for fmt in ("png", "jpeg", "webp"):
            good = encoded(fmt, side)
            out += [
                (f"{fmt}{side} good", [good], spec(fmt, side)),
                (f"{fmt}{side} two", [good, good], spec(fmt, side, 2)),
                (f"{fmt}{side} count", [good], spec(fmt, side, 2)),
                (f"{fmt}{side} size", [good], spec(fmt, side + 1)),
                (f"{fmt}{side} truncated", [damaged(good, "truncated")], spec(fmt, side)),
            ]
        other = "jpeg"
        out.append((f"png-as-{other}{side}", [encoded("png", side)], spec(other, side)))
        flipped = damaged(encoded("png", side), "flipped")
        out.append((f"png{side} bad crc", [flipped], spec("png", side)))
        out.append((f"b64-{side}", ["!" * (side * side)], spec("png", side)))
    return out


def verdict(call: Callable[[], Generation]) -> tuple[str, Any]:
    try:
        got = call()
    except BadOutputError as exc:
        return "refused", str(exc)
    return "accepted", [(i.data, i.format, i.width, i.height) for i in got.images]


CASES = cases()


@pytest.mark.parametrize(("name", "data", "asked"), CASES, ids=[c[0] for c in CASES])
async def test_the_same_verdict_inline_and_in_a_thread(
    name: str, data: list[str], asked: common_pb2.ImageSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    usage = common_pb2.Usage(total_tokens=3)
    inline = verdict(lambda: upstream._check(data, "high", usage, asked))
    ran_in: list[threading.Thread] = []
    real = upstream._check

    def recording(*args: Any) -> Generation:
        ran_in.append(threading.current_thread())
        return real(*args)

    monkeypatch.setattr(upstream, "_check", recording)
    try:
        got = await _validate(data, "high", usage, asked)
        assert got.quality == "high" and got.usage == usage
        outcome: tuple[str, Any] = (
            "accepted",
            [(i.data, i.format, i.width, i.height) for i in got.images],
        )
    except BadOutputError as exc:
        outcome = ("refused", str(exc))
    assert outcome == inline, name
    large = sum(map(len, data)) > INLINE_MAX_CHARS
    assert (ran_in[0] is not threading.current_thread()) == large, name


def test_the_cases_cover_both_sides_of_the_threshold_and_both_verdicts() -> None:
    sizes, verdicts = [], {}
    for name, data, asked in CASES:
        sizes.append(sum(map(len, data)))
        verdicts[name] = verdict(partial(upstream._check, data, None, common_pb2.Usage(), asked))
    assert min(sizes) < INLINE_MAX_CHARS < max(sizes)
    for fmt in ("png", "jpeg", "webp"):
        for side in (8, 256):
            assert verdicts[f"{fmt}{side} good"][0] == "accepted"
            assert verdicts[f"{fmt}{side} two"][0] == "accepted"
            assert verdicts[f"{fmt}{side} size"][0] == "refused"
            assert verdicts[f"{fmt}{side} truncated"][0] == "refused"
    assert verdicts["png256 bad crc"] == ("refused", "upstream image does not decode")


def _outcome(decode: Callable[[str], bytes], text: str) -> bytes | str:
    try:
        return decode(text)
    except (binascii.Error, ValueError):
        return "refused"


def test_base64_decoded_in_slices_is_what_b64decode_gives(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(upstream, "_B64_SLICE", 8)  # many slices from short strings
    rng = random.Random(7)
    texts = ["", "YQ==", "YWJj", "YWJjZA==", "YWJjZGVmZ2hpams=", "é" * 12, "YQ==" * 5]
    texts += ["YWJj" * k + "=" * p for k in range(6) for p in range(20)]
    for _ in range(5000):
        chars = list(base64.b64encode(rng.randbytes(rng.randrange(0, 40))).decode())
        for _ in range(rng.choice((0, 0, 1, 2))):  # damage: padding, junk, cuts, gaps
            at = rng.randrange(len(chars) + 1)
            how = rng.choice(("=", "==", "=" * 9, "!", " ", "\n", "-", "é", "cut", "drop"))
            if how == "cut":
                del chars[at:]
            elif how == "drop":
                del chars[at : at + 1]
            else:
                chars[at:at] = list(how)
        texts.append("".join(chars))
    for text in texts:
        expected = _outcome(lambda t: base64.b64decode(t, validate=True), text)
        assert _outcome(upstream._b64decode, text) == expected, text
