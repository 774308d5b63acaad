"""The one adapter to the OpenAI Images API (the official SDK, its own retries off), as
OpenAI serves it and as Azure OpenAI's image deployments do: only the SDK's client differs
(Azure's path /openai/deployments/{deployment}/images/..., its api-version query and its
api-key header); the calls, streams, validation and error classes are the same code."""

from __future__ import annotations

import asyncio
import binascii
import io
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

import openai
from PIL import Image, UnidentifiedImageError

from pixelrelay import image_formats
from pixelrelay.image_formats import MIME_TYPES
from pixelrelay.storage_client import ImageBytes
from pixelrelay.v1 import common_pb2
from pixelrelay_dispatcher.errors import (
    AmbiguousError,
    BadOutputError,
    ChannelAuthError,
    ChannelNotFoundError,
    PermanentError,
    RetryableError,
    UpstreamError,
)

if TYPE_CHECKING:
    from pixelrelay_dispatcher.channels import ChannelConfig


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
    usage: common_pb2.Usage = field(default_factory=common_pb2.Usage)


@dataclass(frozen=True)
class Partials:
    """Previews wanted while the image is made: how many to ask the upstream for, and
    where each one's bytes go (the worker relays them; they are not validated or kept)."""

    count: int
    send: Callable[[bytes], Awaitable[None]]


class ImagesChannel:
    """One upstream endpoint: base URL, key, model name; for Azure (``provider="azure"``)
    the base URL is the resource's endpoint, with the deployment and api-version."""

    def __init__(
        self,
        name: str,
        base_url: str,
        api_key: str,
        model: str,
        timeout: float,
        connect_timeout: float = 2.0,
        *,
        provider: str = "openai",
        deployment: str | None = None,
        api_version: str | None = None,
    ):
        self.name = name
        self.model = model
        self.provider = provider
        # max_retries=0: the router fails over itself; SDK retries could pay upstream twice.
        # A short connect timeout: a dead host must fail over fast; generation may be slow.
        limits = openai.Timeout(timeout, connect=connect_timeout)
        self._client: openai.AsyncOpenAI
        if provider == "azure":
            if not deployment or not api_version:
                raise ValueError("an azure channel needs its deployment and api_version")
            self._client = openai.AsyncAzureOpenAI(
                azure_endpoint=base_url,
                azure_deployment=deployment,
                api_version=api_version,
                api_key=api_key,
                max_retries=0,
                timeout=limits,
            )
        elif provider == "openai":
            self._client = openai.AsyncOpenAI(
                api_key=api_key, base_url=base_url, max_retries=0, timeout=limits
            )
        else:
            raise ValueError(f"unknown provider {provider!r}")

    @classmethod
    def from_config(cls, name: str, config: ChannelConfig, api_key: str) -> ImagesChannel:
        return cls(
            name,
            config.base_url,
            api_key,
            config.model,
            config.timeout,
            config.connect_timeout,
            provider=config.provider,
            deployment=config.deployment,
            api_version=config.api_version,
        )

    async def generate(
        self,
        prompt: str,
        spec: common_pb2.ImageSpec,
        references: list[InputImage] | None = None,
        mask: InputImage | None = None,
        partials: Partials | None = None,
    ) -> Generation:
        """A generation, or an edit (multipart image[] and mask) when there are references.
        With ``partials``, the call streams (SSE) and each preview is sent on as it comes."""
        args = self._arguments(prompt, spec)
        if references:
            args.pop("moderation", None)  # not a parameter of the edits endpoint
            args["image"] = [(ref.name, ref.data, ref.mime) for ref in references]
            if mask is not None:
                args["mask"] = (mask.name, mask.data, mask.mime)
        call = self._client.images.edit if references else self._client.images.generate
        try:
            if partials is None or partials.count <= 0:
                response = await call(**args)
                return await _validate(
                    [item.b64_json or "" for item in response.data or []],
                    getattr(response, "quality", None),
                    _usage(getattr(response, "usage", None)),
                    spec,
                )
            return await self._streamed(call, args, spec, partials)
        except openai.APIError as exc:
            raise classify(exc) from exc

    async def _streamed(
        self,
        call: Callable[..., Awaitable[Any]],
        args: dict[str, Any],
        spec: common_pb2.ImageSpec,
        partials: Partials,
    ) -> Generation:
        """OpenAI's image stream: ``*.partial_image`` events, then one ``*.completed`` per
        image. A stream that ends early is missing images, which _validate refuses."""
        stream = await call(**args, stream=True, partial_images=partials.count)
        finals: list[str] = []
        quality: str | None = None
        usage = common_pb2.Usage()
        async for event in stream:
            kind = getattr(event, "type", "")
            if kind.endswith(".partial_image"):
                b64 = event.b64_json or ""
                preview = await _off_loop(len(b64), _decode_preview, b64)
                if preview is not None:
                    await partials.send(preview)
            elif kind.endswith(".completed"):
                finals.append(event.b64_json or "")
                quality = getattr(event, "quality", None) or quality
                # Each completed event reports the whole request's usage.
                usage = _usage(getattr(event, "usage", None))
        return await _validate(finals, quality, usage, spec)

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


P = ParamSpec("P")
T = TypeVar("T")

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
        if status == 404:  # the request's shape is ours and fixed: the channel is wrong
            return ChannelNotFoundError(f"upstream has no such deployment or model ({status})")
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


def _usage(reported: Any) -> common_pb2.Usage:
    """The SDK's usage object (absent from some providers) as ours."""
    if reported is None:
        return common_pb2.Usage()
    details = getattr(reported, "input_tokens_details", None)
    return common_pb2.Usage(
        input_tokens=getattr(reported, "input_tokens", 0) or 0,
        output_tokens=getattr(reported, "output_tokens", 0) or 0,
        total_tokens=getattr(reported, "total_tokens", 0) or 0,
        input_text_tokens=getattr(details, "text_tokens", 0) or 0,
        input_image_tokens=getattr(details, "image_tokens", 0) or 0,
    )


# Base64 characters past which decoding and checking go to a worker thread: a hop costs
# about 50 us, while checking one 1024x1024 image on the loop stalls every other job,
# relay and heartbeat of this dispatcher for 9 (JPEG) to 50 (WebP) ms (measured).
INLINE_MAX_CHARS = 64 * 1024


async def _off_loop(size: int, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """``fn(*args)``, in a worker thread when ``size`` is past INLINE_MAX_CHARS."""
    if size <= INLINE_MAX_CHARS:
        return fn(*args, **kwargs)
    return await asyncio.to_thread(fn, *args, **kwargs)


# binascii holds the GIL for all of one call (4 MB of base64: 11 ms), so one call in a
# thread would stall the loop just the same: decoded in slices, the loop gets the GIL
# between them (a 3 MB PNG: the loop's longest wait 21 ms inline, 10 ms so; measured).
# Characters per slice, a multiple of 4.
_B64_SLICE = 256 * 1024


def _b64decode(b64: str) -> bytes:
    """``base64.b64decode(b64, validate=True)``: the same bytes, refusing the same input."""
    encoded = b64.encode("ascii")  # UnicodeEncodeError is a ValueError, as there
    # Whole slices, then a tail of one to two slices. Slices of base64 letters alone
    # decode exactly as in one call; padding ('=') before the tail's first letter is
    # malformed anyway, and decoded in one call so as to be judged exactly the same.
    head = (len(encoded) - _B64_SLICE) // _B64_SLICE * _B64_SLICE
    if head <= 0 or encoded.find(b"=", 0, head + 1) != -1:
        return binascii.a2b_base64(encoded, strict_mode=True)
    data = memoryview(encoded)
    parts = [
        binascii.a2b_base64(data[i : i + _B64_SLICE], strict_mode=True)
        for i in range(0, head, _B64_SLICE)
    ]
    parts.append(binascii.a2b_base64(data[head:], strict_mode=True))
    return b"".join(parts)


def _decode_preview(b64: str) -> bytes | None:
    try:
        return _b64decode(b64)
    except (binascii.Error, ValueError):
        return None  # a bad preview is skipped; only the final image counts


async def _validate(
    data: list[str], quality: str | None, usage: common_pb2.Usage, spec: common_pb2.ImageSpec
) -> Generation:
    """Every image must decode fully and match the asked size and format (see _check)."""
    return await _off_loop(sum(map(len, data)), _check, data, quality, usage, spec)


def _check(
    data: list[str], quality: str | None, usage: common_pb2.Usage, spec: common_pb2.ImageSpec
) -> Generation:
    """Every image must decode fully and match the asked size and format."""
    if len(data) != spec.n:
        raise BadOutputError(f"asked for {spec.n} images, got {len(data)}")
    images = []
    for b64 in data:
        try:
            raw = _b64decode(b64)
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
    return Generation(images=images, quality=str(quality or spec.quality or ""), usage=usage)
