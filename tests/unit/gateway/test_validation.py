from __future__ import annotations

import pytest

from pixelrelay import catalog
from pixelrelay.errors import ApiError, E
from pixelrelay.v1 import public_api_pb2
from pixelrelay_gateway.core.sizes import PIXELS, RATIOS, ratio_from_prompt
from pixelrelay_gateway.core.validation import resolve, sized_by_reference

MODELS = catalog.load()


def req(**fields: object) -> public_api_pb2.CreateGenerationRequest:
    fields.setdefault("prompt", "a cat")
    return public_api_pb2.CreateGenerationRequest(**fields)  # type: ignore[arg-type]


def error_of(**fields: object) -> ApiError:
    with pytest.raises(ApiError) as caught:
        resolve(req(**fields), MODELS)
    return caught.value


def test_basic_defaults() -> None:
    spec, prompt = resolve(req(model="gpt-image-2"), MODELS)
    assert (spec.size, spec.resolution, spec.width, spec.height, spec.n) == (
        "1:1",
        "1k",
        1024,
        1024,
        1,
    )
    assert (spec.quality, spec.output_format) == ("", "png")
    assert prompt == "a cat"


def test_stable_defaults() -> None:
    spec, _ = resolve(req(model="gpt-image-2-official"), MODELS)
    assert (spec.quality, spec.background, spec.moderation, spec.output_format) == (
        "auto",
        "auto",
        "auto",
        "png",
    )
    assert not spec.HasField("output_compression")


@pytest.mark.parametrize(("ratio", "resolution"), sorted(PIXELS))
def test_every_table_entry_resolves(ratio: str, resolution: str) -> None:
    spec, _ = resolve(req(model="gpt-image-2", size=ratio, resolution=resolution), MODELS)
    assert (spec.width, spec.height) == PIXELS[(ratio, resolution)]


def test_the_table_has_13_ratios_and_4k_only_for_wide_ones() -> None:
    assert len(RATIOS) == 13
    assert {r for (r, res) in PIXELS if res == "4k"} == {
        "16:9",
        "9:16",
        "2:1",
        "1:2",
        "21:9",
        "9:21",
    }


@pytest.mark.parametrize(
    ("prompt", "ratio"),
    [
        ("a banner for my shop", "21:9"),
        ("portrait of a dog", "2:3"),
        ("mountains, landscape", "3:2"),
        ("city at night in 16:9", "16:9"),
        ("a cat", None),
        ("ratio 7:3 is not ours", None),
    ],
)
def test_auto_size_reads_the_prompt(prompt: str, ratio: str | None) -> None:
    assert ratio_from_prompt(prompt) == ratio
    spec, _ = resolve(req(model="gpt-image-2", size="auto", prompt=prompt), MODELS)
    assert spec.size == (ratio or "1:1")


def test_explicit_size_on_stable_gets_its_tier() -> None:
    spec, _ = resolve(req(model="gpt-image-2-official", size="2048x2048", quality="low"), MODELS)
    assert (spec.width, spec.height, spec.resolution) == (2048, 2048, "2k")


@pytest.mark.parametrize(
    ("fields", "kind", "param"),
    [
        ({"model": ""}, E.MISSING_PARAMETER, "model"),
        ({"model": "dall-e-3"}, E.INVALID_PARAMETER, "model"),
        ({"model": "gpt-image-2", "prompt": ""}, E.MISSING_PARAMETER, "prompt"),
        ({"model": "gpt-image-2", "prompt": "   "}, E.MISSING_PARAMETER, "prompt"),
        ({"model": "gpt-image-2", "prompt": "x" * 4001}, E.INVALID_PARAMETER, "prompt"),
        ({"model": "gpt-image-2", "n": 2}, E.UNSUPPORTED_PARAMETER, "n"),
        ({"model": "gpt-image-2-official", "n": 5}, E.INVALID_PARAMETER, "n"),
        ({"model": "gpt-image-2-official", "n": 0}, E.INVALID_PARAMETER, "n"),
        ({"model": "gpt-image-2", "quality": "low"}, E.UNSUPPORTED_PARAMETER, "quality"),
        ({"model": "gpt-image-2", "background": "opaque"}, E.UNSUPPORTED_PARAMETER, "background"),
        (
            {"model": "gpt-image-2", "output_format": "png"},
            E.UNSUPPORTED_PARAMETER,
            "output_format",
        ),
        ({"model": "gpt-image-2", "size": "1024x1024"}, E.UNSUPPORTED_PARAMETER, "size"),
        ({"model": "gpt-image-2", "size": "7:3"}, E.INVALID_PARAMETER, "size"),
        ({"model": "gpt-image-2", "resolution": "8k"}, E.INVALID_PARAMETER, "resolution"),
        (
            {"model": "gpt-image-2", "size": "1:1", "resolution": "4k"},
            E.INVALID_PARAMETER,
            "resolution",
        ),
        ({"model": "gpt-image-2-official", "size": "1000x1000"}, E.INVALID_PARAMETER, "size"),
        ({"model": "gpt-image-2-official", "size": "4096x1024"}, E.INVALID_PARAMETER, "size"),
        ({"model": "gpt-image-2-official", "size": "3840x1024"}, E.INVALID_PARAMETER, "size"),
        ({"model": "gpt-image-2-official", "size": "512x512"}, E.INVALID_PARAMETER, "size"),
        (
            {"model": "gpt-image-2-official", "size": "1024x1024", "resolution": "2k"},
            E.INVALID_PARAMETER,
            "resolution",
        ),
        (
            {"model": "gpt-image-2-official", "background": "transparent", "output_format": "jpeg"},
            E.INVALID_PARAMETER,
            "background",
        ),
        (
            {"model": "gpt-image-2-official", "output_compression": 50},
            E.INVALID_PARAMETER,
            "output_compression",
        ),
        (
            {"model": "gpt-image-2-official", "output_format": "webp", "output_compression": 101},
            E.INVALID_PARAMETER,
            "output_compression",
        ),
        ({"model": "gpt-image-2-official", "quality": "best"}, E.INVALID_PARAMETER, "quality"),
        (
            {
                "model": "gpt-image-2-official",
                "size": "16:9",
                "resolution": "4k",
                "quality": "medium",
            },
            E.INVALID_PARAMETER,
            "quality",
        ),
        (
            {"model": "gpt-image-2-official", "image_urls": ["ftp://example.com/a.png"]},
            E.INVALID_PARAMETER,
            "image_urls[0]",
        ),
        (
            {"model": "gpt-image-2-official", "image_urls": ["https://e.com/a.png"] * 17},
            E.INVALID_PARAMETER,
            "image_urls",
        ),
        (
            {"model": "gpt-image-2-official", "mask_url": "https://e.com/m.png"},
            E.MISSING_PARAMETER,
            "image_urls",
        ),
        (
            {
                "model": "gpt-image-2",
                "mask_url": "https://e.com/m.png",
                "image_urls": ["https://e.com/a.png"],
            },
            E.UNSUPPORTED_PARAMETER,
            "mask_url",
        ),
    ],
)
def test_invalid_requests_name_the_field(
    fields: dict[str, object], kind: object, param: str
) -> None:
    err = error_of(**fields)
    assert err.kind is kind
    assert err.param == param


def test_basic_channel_errors_name_the_stable_variant() -> None:
    assert "gpt-image-2-official" in error_of(model="gpt-image-2", quality="high").message


def test_references_make_the_prompt_optional() -> None:
    spec, prompt = resolve(
        req(model="gpt-image-2", prompt="", image_urls=["https://e.com/a.png"]), MODELS
    )
    assert prompt and list(spec.image_urls) == ["https://e.com/a.png"]


@pytest.mark.parametrize(
    ("size", "ratio"),
    [
        ((1024, 1024), "1:1"),
        ((1920, 1080), "16:9"),
        ((1080, 1920), "9:16"),
        ((3000, 1000), "21:9"),
        ((1000, 800), "5:4"),
        ((1200, 900), "4:3"),
    ],
)
def test_auto_size_takes_the_first_reference_ratio(size: tuple[int, int], ratio: str) -> None:
    request = req(
        model="gpt-image-2", size="auto", prompt="a banner", image_urls=["https://e.com/a.png"]
    )
    spec, _ = resolve(request, MODELS)
    spec = sized_by_reference(request, spec, MODELS, size)
    assert spec.size == ratio and (spec.width, spec.height) == PIXELS[(ratio, spec.resolution)]


@pytest.mark.parametrize("size", ["१०२४x१०२४", "１０２４x１０２４", "1024x١٠٢٤"])
def test_explicit_sizes_take_ascii_digits_only(size: str) -> None:
    err = error_of(model="gpt-image-2-official", size=size)
    assert (err.kind, err.param) == (E.INVALID_PARAMETER, "size")


@pytest.mark.security
@pytest.mark.parametrize(
    "prompt",
    [
        "\x00" * 50,
        "\u200b\u200c\u200d\ufeff",
        "\u2800\u3164",
        "\u0301\u0301",
        "a cat\x00",
        "x\x1b[2J",
    ],
)
def test_a_prompt_that_shows_nothing_or_carries_controls_is_refused(prompt: str) -> None:
    """NUL-only and zero-width prompts were once accepted and charged."""
    refused = error_of(model="gpt-image-2", prompt=prompt)
    assert (refused.kind, refused.param) == (E.INVALID_PARAMETER, "prompt")


@pytest.mark.parametrize("prompt", ["a cat\n\twith a hat\r\n", "猫", "🐱", "é", "a\u200bb"])
def test_prompts_people_write_pass(prompt: str) -> None:
    assert resolve(req(model="gpt-image-2", prompt=prompt), MODELS)[1] == prompt
