"""The OpenAI Images API's request rules for GPT image models, as the simulator enforces them."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

GENERATION_FIELDS = {
    "model",
    "prompt",
    "n",
    "quality",
    "size",
    "background",
    "output_format",
    "output_compression",
    "moderation",
    "stream",
    "partial_images",
    "user",
}
EDIT_FIELDS = GENERATION_FIELDS - {"moderation"} | {"input_fidelity"}
REJECTED_FOR_GPT_IMAGE = {"response_format", "style"}
_SIZE = re.compile(r"^(\d{2,5})x(\d{2,5})$")


class OpenAIError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
    ):
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = (
            status,
            message,
            type,
            param,
            code,
        )

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }


def invalid(param: str, message: str) -> OpenAIError:
    return OpenAIError(400, message, param=param, code="invalid_value")


@dataclass(frozen=True)
class ImageRequest:
    model: str
    prompt: str
    n: int
    width: int
    height: int
    quality: str
    background: str
    output_format: str
    output_compression: int | None
    stream: bool = False
    partial_images: int = 0


def check_size(size: str) -> tuple[int, int]:
    if size == "auto":
        return 1024, 1024
    match = _SIZE.match(size)
    if not match:
        raise invalid("size", f"Invalid size '{size}'. Use 'auto' or WIDTHxHEIGHT.")
    w, h = int(match[1]), int(match[2])
    if (
        max(w, h) > 3840
        or w % 16
        or h % 16
        or max(w, h) > 3 * min(w, h)
        or not 655_360 <= w * h <= 8_294_400
    ):
        raise invalid(
            "size",
            f"Invalid size '{size}': edges must be multiples of 16, the "
            "longest at most 3840, ratio at most 3:1, and 655360-8294400 pixels.",
        )
    return w, h


def _one_of(fields: dict[str, Any], name: str, allowed: tuple[str, ...], default: str) -> str:
    value = fields.get(name, default)
    if value not in allowed:
        raise invalid(name, f"Invalid value for '{name}': expected one of {', '.join(allowed)}.")
    return str(value)


def parse_request(fields: dict[str, Any], allowed_fields: set[str]) -> ImageRequest:
    for name in fields:
        if name in REJECTED_FOR_GPT_IMAGE or name not in allowed_fields:
            raise OpenAIError(
                400, f"Unknown parameter: '{name}'.", param=name, code="unknown_parameter"
            )
    model = fields.get("model")
    if not isinstance(model, str) or not model:
        raise OpenAIError(
            400,
            "Missing required parameter: 'model'.",
            param="model",
            code="missing_required_parameter",
        )
    prompt = fields.get("prompt")
    if not isinstance(prompt, str) or not prompt:
        raise OpenAIError(
            400,
            "Missing required parameter: 'prompt'.",
            param="prompt",
            code="missing_required_parameter",
        )
    if len(prompt) > 32_000:
        raise invalid("prompt", "'prompt' is too long: at most 32000 characters.")
    try:
        n = int(fields.get("n", 1))
    except (TypeError, ValueError):
        raise invalid("n", "'n' must be an integer.") from None
    if not 1 <= n <= 10:
        raise invalid("n", "'n' must be between 1 and 10.")
    width, height = check_size(str(fields.get("size", "auto")))
    quality = _one_of(fields, "quality", ("auto", "low", "medium", "high"), "auto")
    background = _one_of(fields, "background", ("auto", "opaque", "transparent"), "auto")
    output_format = _one_of(fields, "output_format", ("png", "jpeg", "webp"), "png")
    _one_of(fields, "moderation", ("auto", "low"), "auto")
    if background == "transparent" and output_format == "jpeg":
        raise invalid("background", "Transparent background requires png or webp output.")
    compression = fields.get("output_compression")
    if compression is not None:
        try:
            compression = int(compression)
        except (TypeError, ValueError):
            raise invalid(
                "output_compression", "'output_compression' must be an integer."
            ) from None
        if not 0 <= compression <= 100:
            raise invalid("output_compression", "'output_compression' must be 0-100.")
        if output_format == "png":
            raise invalid(
                "output_compression", "'output_compression' applies to jpeg and webp only."
            )
    stream = str(fields.get("stream", "false")).lower() == "true"
    try:
        partial_images = int(fields.get("partial_images", 0) or 0)
    except (TypeError, ValueError):
        raise invalid("partial_images", "'partial_images' must be an integer.") from None
    if not 0 <= partial_images <= 3:
        raise invalid("partial_images", "'partial_images' must be between 0 and 3.")
    if partial_images and not stream:
        raise invalid("partial_images", "'partial_images' requires 'stream': true.")
    return ImageRequest(
        model,
        prompt,
        n,
        width,
        height,
        quality,
        background,
        output_format,
        compression,
        stream,
        partial_images,
    )
