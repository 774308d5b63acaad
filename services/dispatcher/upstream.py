"""The one adapter to the OpenAI Images API (the official SDK, its own retries off)."""

from __future__ import annotations

import base64
import binascii
import io
import re
from dataclasses import dataclass
from typing import Any

import openai
from PIL import Image, UnidentifiedImageError

from dispatcher.errors import (
    AmbiguousError,
    BadOutputError,
    ChannelAuthError,
    PermanentError,
    RetryableError,
    UpstreamError,
)
from pixelrelay import image_formats
from pixelrelay.image_formats import MIME_TYPES
from pixelrelay.storage_client import ImageBytes
from pixelrelay.v1 import common_pb2


@dataclass(frozen=True)
class InputImage:
    """A reference image or mask, as stored for the task."""

    name: str  # file name with its extension, e.g. "ref0.png"
    data: bytes

    @property
    def mime(self) -> str:
        return MIME_TYPES[image_formats.of_file_name(self.name)]


@dataclass(frozen=True)
class Generation:
    images: list[ImageBytes]
    quality: str  # the tier the upstream reports it used


class OpenAIImagesChannel:
    """One upstream endpoint: base URL, key, model name."""

    def __init__(
        self,
        name: str,
        base_url: str,
        api_key: str,
        model: str,
        timeout: float,
        connect_timeout: float = 2.0,
    ):
        self.name = name
        self.model = model
        # max_retries=0: the router fails over itself; SDK retries could pay upstream twice.
        # A short connect timeout: a dead host must fail over fast; generation may be slow.
        self._client = openai.AsyncOpenAI(
            api_key=api_key,
            base_url=base_url,
            max_retries=0,
            timeout=openai.Timeout(timeout, connect=connect_timeout),
        )

    async def generate(
        self,
        prompt: str,
        spec: common_pb2.ImageSpec,
        references: list[InputImage] | None = None,
        mask: InputImage | None = None,
    ) -> Generation:
        """A generation, or an edit (multipart image[] and mask) when there are references."""
        args = self._arguments(prompt, spec)
        try:
            if references:
                args.pop("moderation", None)  # not a parameter of the edits endpoint
                files = [(ref.name, ref.data, ref.mime) for ref in references]
                if mask is not None:
                    args["mask"] = (mask.name, mask.data, mask.mime)
                response = await self._client.images.edit(image=files, **args)
            else:
                response = await self._client.images.generate(**args)
        except openai.APIError as exc:
            raise classify(exc) from exc
        return _validate(response, spec)

    def _arguments(self, prompt: str, spec: common_pb2.ImageSpec) -> dict[str, Any]:
        args: dict[str, Any] = {
            "model": self.model,
            "prompt": prompt,
            "n": spec.n,
            "size": f"{spec.width}x{spec.height}",
            "output_format": spec.output_format or "png",
        }
        for name in ("quality", "background", "moderation"):
            if value := getattr(spec, name):
                args[name] = value
        if spec.HasField("output_compression"):
            args["output_compression"] = spec.output_compression
        return args

    async def close(self) -> None:
        await self._client.close()


_CODE = re.compile(r"[a-z][a-z0-9_]{0,63}")


def classify(exc: openai.APIError) -> UpstreamError:
    if isinstance(exc, openai.APITimeoutError):
        return AmbiguousError("upstream timed out after the request was sent")
    if isinstance(exc, openai.APIConnectionError):
        cause = type(exc.__cause__).__name__ if exc.__cause__ else ""
        if "Connect" in cause:  # ConnectError / ConnectTimeout: nothing was sent
            return RetryableError("upstream connection refused")
        return AmbiguousError("upstream connection dropped")
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        message = _upstream_message(exc)
        if status in (401, 403):
            return ChannelAuthError(f"upstream refused our credentials ({status})")
        if status == 429:
            retry_after = _retry_after(exc)
            if exc.code == "insufficient_quota":
                return ChannelAuthError("upstream quota exhausted")
            return RetryableError("upstream rate limited", retry_after=retry_after)
        if status >= 500 or status == 408 or status == 409:
            return RetryableError(f"upstream error {status}")
        return PermanentError(message)
    return AmbiguousError(type(exc).__name__)


def _upstream_message(exc: openai.APIStatusError) -> str:
    """What the task's owner sees of an upstream refusal: its status and its machine code
    (e.g. moderation_blocked), never its free text, which may echo the request or name the
    upstream's internals and would travel on the events stream."""
    body = exc.body if isinstance(exc.body, dict) else {}
    code = exc.code or (body.get("code") if isinstance(body.get("code"), str) else None)
    if isinstance(code, str) and _CODE.fullmatch(code):
        return f"the upstream refused the request ({exc.status_code}): {code}"
    return f"the upstream refused the request ({exc.status_code})"


def _retry_after(exc: openai.APIStatusError) -> float | None:
    headers = exc.response.headers
    try:
        if "retry-after-ms" in headers:
            return float(headers["retry-after-ms"]) / 1000
        if "retry-after" in headers:
            return float(headers["retry-after"])
    except ValueError:
        return None
    return None


def _validate(response: Any, spec: common_pb2.ImageSpec) -> Generation:
    """Every image must decode fully and match the asked size and format."""
    data = response.data or []
    if len(data) != spec.n:
        raise BadOutputError(f"asked for {spec.n} images, got {len(data)}")
    images = []
    for item in data:
        try:
            raw = base64.b64decode(item.b64_json or "", validate=True)
            with Image.open(io.BytesIO(raw)) as image:
                fmt, size = image_formats.of_pil_name(image.format), image.size
                # PNG: every chunk's CRC through IEND, without decoding pixels (the full
                # decode was 40% of the dispatcher's time). Others: a full decode.
                if fmt == "png":
                    image.verify()
                else:
                    image.load()
        except (binascii.Error, ValueError, UnidentifiedImageError, OSError, SyntaxError) as exc:
            raise BadOutputError("upstream image does not decode") from exc
        if size != (spec.width, spec.height):
            raise BadOutputError(
                f"upstream image is {size[0]}x{size[1]}, asked {spec.width}x{spec.height}"
            )
        if fmt != (spec.output_format or "png"):
            raise BadOutputError(
                f"upstream image is {fmt or 'unknown'}, asked {spec.output_format}"
            )
        images.append(ImageBytes(raw, fmt, size[0], size[1]))
    quality = getattr(response, "quality", None) or spec.quality
    return Generation(images=images, quality=str(quality or ""))
