"""The simulator's HTTP app: POST /v1/images/generations and /v1/images/edits (OpenAI),
/openai/deployments/{deployment}/images/generations and .../edits (Azure), plus /_sim
controls."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import json
import time
from collections import Counter, deque
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from PIL import Image, UnidentifiedImageError
from starlette.datastructures import UploadFile

from pixelrelay_sim.azure import deployed_model
from pixelrelay_sim.faults import FaultBook, FaultRule
from pixelrelay_sim.render import render_image
from pixelrelay_sim.settings import SimSettings
from pixelrelay_sim.validation import (
    EDIT_FIELDS,
    GENERATION_FIELDS,
    ImageRequest,
    OpenAIError,
    invalid,
    parse_request,
)

# What "auto" resolves to, reported back like OpenAI does.
AUTO_QUALITY = "medium"
MAX_EDIT_IMAGES = 16
MAX_EDIT_IMAGE_BYTES = 50 * 1024 * 1024
MAX_COUNTED_PROMPTS = 1_000_000


def create_app(settings: SimSettings) -> FastAPI:
    app = FastAPI(
        title="PixelRelay upstream simulator (OpenAI Images API)", docs_url=None, redoc_url=None
    )
    faults = FaultBook()
    seen: deque[dict[str, Any]] = deque(maxlen=2000)
    # Images answered per prompt digest: what a provider would bill. A soak divides it by
    # the tasks completed (bench/soak.py). Bounded like `seen`, much larger.
    generated: Counter[str] = Counter()

    def count(digest: str) -> None:
        if digest in generated or len(generated) < MAX_COUNTED_PROMPTS:
            generated[digest] += 1

    async def answer(request: Request, endpoint: str, deployment: str | None = None) -> Response:
        """One image request; ``deployment`` for Azure's paths, None for OpenAI's."""
        provider = "openai" if deployment is None else "azure"
        try:
            if deployment is None:
                _authorize(request, settings.api_key)
            else:
                model = deployed_model(request, settings, deployment)
            fields, images, mask = await _read_body(request, endpoint)
            if deployment is not None:
                fields["model"] = model  # Azure serves the deployment's, whatever is sent
            parsed = parse_request(
                fields, GENERATION_FIELDS if endpoint == "generations" else EDIT_FIELDS
            )
            if endpoint == "edits":
                _check_edit_inputs(images, mask)
        except OpenAIError as err:
            return _error(err)
        summary = _summary(endpoint, parsed, fields, images, mask)
        summary |= {
            "provider": provider,
            "deployment": deployment,
            "api_version": request.query_params.get("api-version"),
            # Which header carried the key (never the key): Azure's or OpenAI's.
            "key_header": "+".join(h for h in ("authorization", "api-key") if h in request.headers),
        }
        seen.append(summary)
        rule = faults.take(parsed.prompt, provider, deployment)
        delay = settings.latency_ms / 1000 + (
            rule.seconds if rule and rule.kind == "latency" else 0
        )
        if parsed.stream:  # the partials come during the delay, as a provider's would
            if rule is not None and rule.kind != "latency":
                faulted = await _apply_fault(rule)
                if faulted is not None:
                    return faulted
            summary["answered_at"] = time.time() + delay
            count(summary["prompt_sha256"])
            return StreamingResponse(
                _stream(parsed, endpoint, delay, rule),
                media_type="text/event-stream",
                headers={"x-request-id": f"req_sim_{time.time_ns()}"},
            )
        if delay:
            await asyncio.sleep(delay)
        if rule is not None:
            faulted = await _apply_fault(rule)
            if faulted is not None:
                summary["answered_at"] = time.time()
                return faulted
        body = await asyncio.to_thread(_generate, parsed, rule)
        summary["answered_at"] = time.time()
        count(summary["prompt_sha256"])
        return JSONResponse(body, headers={"x-request-id": f"req_sim_{time.time_ns()}"})

    @app.post("/v1/images/generations")
    async def generations(request: Request) -> Response:
        return await answer(request, "generations")

    @app.post("/v1/images/edits")
    async def edits(request: Request) -> Response:
        return await answer(request, "edits")

    @app.post("/openai/deployments/{deployment}/images/generations")
    async def azure_generations(deployment: str, request: Request) -> Response:
        return await answer(request, "generations", deployment)

    @app.post("/openai/deployments/{deployment}/images/edits")
    async def azure_edits(deployment: str, request: Request) -> Response:
        return await answer(request, "edits", deployment)

    @app.put("/_sim/faults")
    async def set_faults(rules: list[FaultRule]) -> dict[str, int]:
        faults.set(rules)
        return {"rules": len(rules)}

    @app.delete("/_sim/faults")
    async def clear_faults() -> dict[str, int]:
        faults.set([])
        return {"rules": 0}

    @app.get("/_sim/requests")
    async def requests_seen() -> list[dict[str, Any]]:
        return list(seen)

    @app.delete("/_sim/requests")
    async def forget_requests() -> dict[str, int]:
        seen.clear()
        return {"requests": 0}

    @app.get("/_sim/generated")
    async def generated_counts() -> dict[str, int]:
        """Answers with images, per prompt digest (the prompt itself is not kept)."""
        return dict(generated)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app


def _authorize(request: Request, expected: str) -> None:
    header = request.headers.get("authorization", "")
    key = header.removeprefix("Bearer ").strip() if header.startswith("Bearer ") else ""
    if not key or (expected and key != expected):
        raise OpenAIError(401, "Incorrect API key provided.", code="invalid_api_key")


async def _read_body(
    request: Request,
    endpoint: str,
) -> tuple[dict[str, Any], list[bytes], bytes | None]:
    if endpoint == "generations":
        try:
            fields = await request.json()
        except ValueError:
            raise OpenAIError(400, "We could not parse the JSON body of your request.") from None
        if not isinstance(fields, dict):
            raise OpenAIError(400, "The body must be a JSON object.")
        return fields, [], None
    form = await request.form(max_files=MAX_EDIT_IMAGES + 2, max_part_size=MAX_EDIT_IMAGE_BYTES)
    fields, images, mask = {}, [], None
    for name, value in form.multi_items():
        if isinstance(value, UploadFile):
            data = await value.read()
            if name in ("image", "image[]"):
                images.append(data)
            elif name == "mask":
                mask = data
            else:
                raise OpenAIError(
                    400, f"Unknown parameter: '{name}'.", param=name, code="unknown_parameter"
                )
        else:
            fields[name] = value
    return fields, images, mask


def _decode(data: bytes, param: str) -> Image.Image:
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except (UnidentifiedImageError, OSError):
        raise invalid(param, f"'{param}' is not a valid png, jpeg or webp image.") from None
    if image.format not in ("PNG", "JPEG", "WEBP"):
        raise invalid(param, f"'{param}' must be png, jpeg or webp.")
    return image


def _check_edit_inputs(images: list[bytes], mask: bytes | None) -> None:
    if not images:
        raise OpenAIError(
            400,
            "Missing required parameter: 'image'.",
            param="image",
            code="missing_required_parameter",
        )
    if len(images) > MAX_EDIT_IMAGES:
        raise invalid("image", f"At most {MAX_EDIT_IMAGES} images.")
    decoded = [_decode(data, "image") for data in images]
    if mask is not None:
        mask_image = _decode(mask, "mask")
        if mask_image.format != "PNG" or "A" not in mask_image.getbands():
            raise invalid("mask", "The mask must be a PNG with an alpha channel.")
        if mask_image.size != decoded[0].size:
            raise invalid("mask", "The mask must have the same dimensions as the first image.")


def _summary(
    endpoint: str,
    req: ImageRequest,
    fields: dict[str, Any],
    images: list[bytes],
    mask: bytes | None,
) -> dict[str, Any]:
    # The prompt itself is not kept, only its hash (tests compare against it).
    return {
        "endpoint": endpoint,
        "model": req.model,
        "n": req.n,
        "size": f"{req.width}x{req.height}",
        "quality": req.quality,
        "background": req.background,
        "output_format": req.output_format,
        "output_compression": req.output_compression,
        "moderation": fields.get("moderation"),
        "images": len(images),
        "mask": mask is not None,
        "prompt_sha256": hashlib.sha256(req.prompt.encode()).hexdigest(),
        "fields": sorted(fields),
        # Wall-clock times, so a benchmark can measure failover between two simulators.
        "received_at": time.time(),
        "answered_at": None,
    }


async def _apply_fault(rule: FaultRule) -> Response | None:
    if rule.kind == "status":
        headers = {"x-request-id": f"req_sim_{time.time_ns()}"}
        if rule.retry_after is not None:
            headers["retry-after"] = f"{rule.retry_after:g}"
            headers["retry-after-ms"] = str(int(rule.retry_after * 1000))
        return _error(
            OpenAIError(rule.status, rule.message, type=rule.type, code=rule.code), headers
        )
    if rule.kind == "hang":
        await asyncio.sleep(rule.seconds or 3600)
        return _error(OpenAIError(504, "upstream hung", type="server_error"))
    if rule.kind == "drop":
        return StreamingResponse(_drop_connection(), media_type="application/json")
    return None  # latency, bad_base64, wrong_size, truncated shape the answer instead


async def _drop_connection() -> AsyncIterator[bytes]:
    # Headers are out; failing now makes the server cut the connection mid-response.
    raise ConnectionAbortedError("simulated dropped connection")
    yield b""  # pragma: no cover (makes this an async generator)


def _generate(req: ImageRequest, rule: FaultRule | None) -> dict[str, Any]:
    kind = rule.kind if rule else None
    width, height = (
        (req.width // 2, req.height // 2) if kind == "wrong_size" else (req.width, req.height)
    )
    transparent = req.background == "transparent"
    image = render_image(
        req.prompt,
        width,
        height,
        req.output_format,
        transparent=transparent,
        compression=req.output_compression,
    )
    if kind == "truncated":
        image = image[: len(image) // 2]
    b64 = "%%%not base64%%%" if kind == "bad_base64" else base64.b64encode(image).decode()
    quality = AUTO_QUALITY if req.quality == "auto" else req.quality
    output_tokens = {"low": 272, "medium": 1056, "high": 4160}[quality] * req.n
    input_tokens = len(req.prompt) // 4 + 1
    return {
        "created": int(time.time()),
        "data": [{"b64_json": b64} for _ in range(req.n)],
        "background": "transparent" if transparent else "opaque",
        "output_format": req.output_format,
        "size": f"{req.width}x{req.height}",
        "quality": quality,
        "usage": {
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "total_tokens": input_tokens + output_tokens,
            "input_tokens_details": {"text_tokens": input_tokens, "image_tokens": 0},
        },
    }


async def _stream(
    req: ImageRequest, endpoint: str, delay: float, rule: FaultRule | None
) -> AsyncIterator[bytes]:
    """Server-Sent Events as OpenAI streams an image: ``partial_images`` rougher previews
    spread over the generation time, then one ``completed`` event per image (with usage)."""
    prefix = "image_generation" if endpoint == "generations" else "image_edit"
    body = await asyncio.to_thread(_generate, req, rule)
    common = {k: body[k] for k in ("background", "output_format", "quality", "size")}
    steps = req.partial_images + 1
    for index in range(req.partial_images):
        await asyncio.sleep(delay / steps)
        preview = await asyncio.to_thread(
            render_image,
            f"{req.prompt} (partial {index})",
            req.width,
            req.height,
            req.output_format,
            transparent=req.background == "transparent",
        )
        yield _event(
            f"{prefix}.partial_image",
            {
                **common,
                "b64_json": base64.b64encode(preview).decode(),
                "partial_image_index": index,
                "created_at": int(time.time()),
            },
        )
    await asyncio.sleep(delay / steps)
    for image in body["data"]:
        yield _event(
            f"{prefix}.completed",
            {
                **common,
                "b64_json": image["b64_json"],
                "created_at": body["created"],
                "usage": body["usage"],
            },
        )


def _event(kind: str, data: dict[str, Any]) -> bytes:
    return f"event: {kind}\ndata: {json.dumps({'type': kind, **data})}\n\n".encode()


def _error(err: OpenAIError, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(err.body(), status_code=err.status, headers=headers)
