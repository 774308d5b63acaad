"""The request rules, in one place for REST and gRPC alike: the rules every request meets,
and what each model takes, read from the model catalog (pixelrelay/catalog.py).

``resolve`` turns a client's CreateGenerationRequest into the fully resolved ImageSpec
that is priced, queued and sent upstream, or raises an ApiError naming the field.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Literal, get_args

from pixelrelay.catalog import (
    MAX_REFERENCES,
    Background,
    Catalog,
    ModelSpec,
    Moderation,
    Quality,
    takes,
)
from pixelrelay.errors import ApiError, E
from pixelrelay.v1 import common_pb2, public_api_pb2
from pixelrelay_gateway.core.sizes import (
    PIXELS,
    RATIOS,
    WIDE_RATIOS_FOR_4K,
    ratio_from_prompt,
    ratio_of,
    resolution_for_pixels,
)

MAX_PROMPT_CHARS = 4000
# C0 controls but tab and line breaks, and DEL: never part of a prompt people write.
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
# Letters and symbols that draw nothing (Hangul fillers, the braille blank).
_BLANK_LETTERS = frozenset("\u115f\u1160\u3164\uffa0\u2800")
MAX_IMAGES = 10  # what any model may take (the catalog's max_n)
MAX_REFERENCE_IMAGES = MAX_REFERENCES
MAX_URL_CHARS = 4096
# Sent upstream when a client gives reference images but no prompt (edits need one).
DEFAULT_EDIT_PROMPT = "Recreate the reference image faithfully."
QUALITIES: tuple[str, ...] = get_args(Quality)
BACKGROUNDS: tuple[str, ...] = get_args(Background)
MODERATIONS: tuple[str, ...] = get_args(Moderation)
# Fields a model may not take (its capabilities in the catalog say); sent to one that does
# not, they are an error naming the models that do.
GATED = (
    "quality",
    "background",
    "moderation",
    "mask_url",
    "mask",
    "output_format",
    "output_compression",
)
ImageSetting = Literal["quality", "background", "moderation", "output_format"]
# ASCII digits only: \d would take "१०२४x१०२४" too.
_EXPLICIT_SIZE = re.compile(r"^([0-9]{2,5})x([0-9]{2,5})$")


def _one_of(value: str, allowed: tuple[str, ...], param: str) -> str:
    if value not in allowed:
        raise ApiError(
            E.INVALID_PARAMETER, f"{param} must be one of: {', '.join(allowed)}", param=param
        )
    return value


def _explicit_size(size: str) -> tuple[int, int]:
    """WIDTHxHEIGHT with the upstream's rules for gpt-image-2."""
    match = _EXPLICIT_SIZE.match(size)
    if not match:
        raise ApiError(
            E.INVALID_PARAMETER,
            f"size must be auto, one of {', '.join(RATIOS)}, or WIDTHxHEIGHT",
            param="size",
        )
    w, h = int(match[1]), int(match[2])
    if w % 16 or h % 16:
        raise ApiError(E.INVALID_PARAMETER, "both edges must be multiples of 16", param="size")
    if max(w, h) > 3840:
        raise ApiError(E.INVALID_PARAMETER, "the longest edge must be at most 3840", param="size")
    if max(w, h) > 3 * min(w, h):
        raise ApiError(E.INVALID_PARAMETER, "the ratio must be at most 3:1", param="size")
    if not 655_360 <= w * h <= 8_294_400:
        raise ApiError(E.INVALID_PARAMETER, "total pixels must be 655,360-8,294,400", param="size")
    return w, h


def _check_inline(req: public_api_pb2.CreateGenerationRequest) -> None:
    if req.images and req.image_urls:
        raise ApiError(E.INVALID_PARAMETER, "give image_urls or images, not both", param="images")
    if len(req.images) > MAX_REFERENCE_IMAGES:
        raise ApiError(
            E.INVALID_PARAMETER,
            f"at most {MAX_REFERENCE_IMAGES} images",
            param="image",
        )
    if req.HasField("mask") and not req.images:
        raise ApiError(E.MISSING_PARAMETER, "mask needs an image to edit", param="image")


def _check_urls(req: public_api_pb2.CreateGenerationRequest) -> None:
    if len(req.image_urls) > MAX_REFERENCE_IMAGES:
        raise ApiError(
            E.INVALID_PARAMETER,
            f"image_urls takes at most {MAX_REFERENCE_IMAGES} URLs",
            param="image_urls",
        )
    named = [(f"image_urls[{i}]", url) for i, url in enumerate(req.image_urls)]
    if req.HasField("mask_url"):
        if not req.image_urls:
            raise ApiError(
                E.MISSING_PARAMETER,
                "mask_url needs image_urls (the image to edit)",
                param="image_urls",
            )
        named.append(("mask_url", req.mask_url))
    for param, url in named:
        if len(url) > MAX_URL_CHARS or not url.lower().startswith(("http://", "https://")):
            raise ApiError(
                E.INVALID_PARAMETER,
                f"{param} must be an http(s) URL of at most {MAX_URL_CHARS} characters",
                param=param,
            )


def resolve(
    req: public_api_pb2.CreateGenerationRequest, models: Catalog
) -> tuple[common_pb2.ImageSpec, str]:
    """Validate and fill defaults. Returns the spec and the prompt (kept out of the spec).
    The spec names the model itself, never an alias of it.

    Runs once per submit, before any reference is fetched: every rule is judged here.
    ``size: auto`` takes the prompt's ratio; once the references are loaded,
    ``sized_by_reference`` gives it the first one's instead.
    """
    if not req.model:
        raise ApiError(E.MISSING_PARAMETER, "model is required", param="model")
    model = models.resolve(req.model)
    if model is None:
        _one_of(req.model, models.names(), "model")
        raise AssertionError("unreachable")  # _one_of refused it
    spec_of = models.models[model]
    caps = spec_of.capabilities

    present = {field.name for field, _value in req.ListFields()}
    for field in GATED:
        if field in present and not takes(caps, field):
            raise ApiError(
                E.UNSUPPORTED_PARAMETER,
                f"{field} is not accepted by {model}; use {' or '.join(models.taking(field))}",
                param=field,
            )

    prompt = req.prompt if req.HasField("prompt") else ""
    if len(prompt) > MAX_PROMPT_CHARS:
        raise ApiError(
            E.INVALID_PARAMETER,
            f"prompt must be at most {MAX_PROMPT_CHARS} characters",
            param="prompt",
        )
    _check_visible(prompt)
    _check_urls(req)
    _check_inline(req)
    _check_reference_count(req, model, spec_of)
    if not prompt.strip():
        if not (req.image_urls or req.images):
            raise ApiError(
                E.MISSING_PARAMETER,
                "prompt is required (1-4000 characters) unless image_urls is given",
                param="prompt",
            )
        prompt = DEFAULT_EDIT_PROMPT

    n = req.n if req.HasField("n") else 1
    if caps.max_n == 1 and n != 1:
        most = max(m.capabilities.max_n for m in models.models.values())
        makers = [name for name, m in models.models.items() if m.capabilities.max_n == most]
        raise ApiError(
            E.UNSUPPORTED_PARAMETER,
            f"{model} makes one image per task; n up to {most} needs {' or '.join(makers)}",
            param="n",
        )
    if not 1 <= n <= caps.max_n:
        raise ApiError(E.INVALID_PARAMETER, f"n must be 1-{caps.max_n}", param="n")

    size = req.size if req.HasField("size") else "1:1"
    resolution = req.resolution if req.HasField("resolution") else ""
    if resolution:
        _one_of(resolution, caps.resolutions, "resolution")
    ratios = caps.ratios or RATIOS
    if size == "auto":
        size = _made_ratio(ratio_from_prompt(prompt) or "1:1", ratios)
    if size in RATIOS:
        if size not in ratios:
            raise ApiError(
                E.INVALID_PARAMETER,
                f"{model} makes the ratios {', '.join(ratios)}",
                param="size",
            )
        resolution = resolution or caps.resolutions[0]
        width, height = _pixels(size, resolution)
    elif caps.sizes == "ratios" and _EXPLICIT_SIZE.match(size):
        takers = [name for name, m in models.models.items() if m.capabilities.sizes == "any"]
        raise ApiError(
            E.UNSUPPORTED_PARAMETER,
            f"WIDTHxHEIGHT sizes are accepted by {' or '.join(takers)}; {model} takes a ratio",
            param="size",
        )
    else:
        width, height = _explicit_size(size)
        tier = resolution_for_pixels(width, height)
        if resolution and resolution != tier:
            raise ApiError(
                E.INVALID_PARAMETER,
                f"size {size} is a {tier} size; leave resolution out or set {tier}",
                param="resolution",
            )
        resolution = _one_of(tier, caps.resolutions, "resolution")

    spec = common_pb2.ImageSpec(
        model=model,
        size=size,
        resolution=resolution,
        width=width,
        height=height,
        n=n,
        image_urls=req.image_urls,
        mask_url=req.mask_url,
    )
    _image_settings(req, spec, model, spec_of)
    return spec, prompt


def sized_by_reference(
    req: public_api_pb2.CreateGenerationRequest,
    spec: common_pb2.ImageSpec,
    models: Catalog,
    reference_size: tuple[int, int] | None,
) -> common_pb2.ImageSpec:
    """``spec`` (resolved from ``req``) with ``size: auto`` taking the ratio of the first
    reference image, once fetched (``reference_size``); any other spec as it is. Only the
    size can change: the price, and every other rule, were settled by ``resolve``."""
    if reference_size is None or not (req.HasField("size") and req.size == "auto"):
        return spec
    caps = models.models[spec.model].capabilities
    sized = common_pb2.ImageSpec()
    sized.CopyFrom(spec)
    sized.size = _made_ratio(ratio_of(*reference_size), caps.ratios or RATIOS)
    sized.width, sized.height = _pixels(sized.size, spec.resolution)
    return sized


def _made_ratio(ratio: str, ratios: tuple[str, ...]) -> str:
    """The ratio ``size: auto`` wants, if the model makes it; else the nearest it makes:
    its first."""
    return ratio if ratio in ratios else ratios[0]


def _pixels(ratio: str, resolution: str) -> tuple[int, int]:
    if (ratio, resolution) not in PIXELS:
        raise ApiError(
            E.INVALID_PARAMETER,
            f"4k needs one of the ratios {', '.join(WIDE_RATIOS_FOR_4K)}",
            param="resolution",
        )
    return PIXELS[(ratio, resolution)]


def _image_settings(
    req: public_api_pb2.CreateGenerationRequest,
    spec: common_pb2.ImageSpec,
    model: str,
    spec_of: ModelSpec,
) -> None:
    """Quality, background, moderation, format and compression: each as the model takes
    it, or its default; none where the model takes no such field."""
    caps = spec_of.capabilities

    def chosen(field: ImageSetting, allowed: tuple[str, ...], default: str) -> str:
        if not allowed:
            return ""
        value = getattr(req, field) if req.HasField(field) else _default(allowed, default)
        return _one_of(value, allowed, field)

    spec.quality = chosen("quality", caps.qualities, "auto")
    spec.background = chosen("background", caps.backgrounds, "auto")
    spec.moderation = chosen("moderation", caps.moderations, "auto")
    spec.output_format = chosen("output_format", caps.formats, "png") or caps.formats[0]
    if spec.background == "transparent" and spec.output_format == "jpeg":
        raise ApiError(
            E.INVALID_PARAMETER,
            "a transparent background needs output_format png or webp",
            param="background",
        )
    if req.HasField("output_compression"):
        if spec.output_format == "png":
            raise ApiError(
                E.INVALID_PARAMETER,
                "output_compression applies to jpeg and webp only",
                param="output_compression",
            )
        if not 0 <= req.output_compression <= 100:
            raise ApiError(
                E.INVALID_PARAMETER,
                "output_compression must be 0-100",
                param="output_compression",
            )
        spec.output_compression = req.output_compression
    if caps.qualities and spec_of.price(spec.resolution, spec.quality) is None:
        sold = [q for q in caps.qualities if q != "auto" and spec_of.price(spec.resolution, q)]
        auto = " (or auto)" if "auto" in caps.qualities else ""
        raise ApiError(
            E.INVALID_PARAMETER,
            f"{spec.resolution} on {model} is offered at quality {' or '.join(sold)}{auto} only",
            param="quality",
        )


def _default(allowed: tuple[str, ...], preferred: str) -> str:
    return preferred if preferred in allowed else allowed[0]


def _check_reference_count(
    req: public_api_pb2.CreateGenerationRequest, model: str, spec_of: ModelSpec
) -> None:
    most = spec_of.capabilities.max_references
    given = len(req.image_urls) or len(req.images)
    if given > most:
        param = "image_urls" if req.image_urls else "image"
        raise ApiError(
            E.INVALID_PARAMETER,
            f"{model} takes at most {most} reference images"
            if most
            else f"{model} takes no reference images",
            param=param,
        )


def price_item(spec: common_pb2.ImageSpec) -> common_pb2.PriceItem:
    return common_pb2.PriceItem(
        model=spec.model, resolution=spec.resolution, quality=spec.quality, n=spec.n
    )


def _check_visible(prompt: str) -> None:
    """A prompt of NUL bytes or zero-width characters was once accepted and charged. Blank
    (whitespace) prompts keep their meaning (none given); anything else must show
    something."""
    if _CONTROL.search(prompt):
        raise ApiError(
            E.INVALID_PARAMETER, "prompt must not contain control characters", param="prompt"
        )
    if prompt.strip() and not any(_visible(c) for c in prompt):
        raise ApiError(E.INVALID_PARAMETER, "prompt has no visible characters", param="prompt")


def _visible(char: str) -> bool:
    # Not a control/format/unassigned (C*), separator (Z*) or lone combining mark (M*).
    return unicodedata.category(char)[0] not in "CZM" and char not in _BLANK_LETTERS
