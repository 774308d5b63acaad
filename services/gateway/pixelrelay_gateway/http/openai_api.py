"""/v1: the OpenAI Images API, so the official `openai` SDK works unchanged.

A translation of PublicApi.GenerateImages (submit, wait for the task to settle, read the
images back), like the reAPI routes are of CreateGeneration: same hold, failover, storage
and attempts, charged exactly as the async API. The task's id comes back in the
`x-pixelrelay-task-id` header, so the task is also readable with GET /api/v1/tasks/{id}.
Errors use OpenAI's envelope (openai_errors.py). With `stream: true` the answer is OpenAI's
Server-Sent Events: `partial_images` previews, then one `completed` event per image.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Header, Request
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.datastructures import UploadFile

from pixelrelay import scopes
from pixelrelay.catalog import Catalog, takes
from pixelrelay.errors import CATALOG, ApiError, E, as_public
from pixelrelay.v1 import billing_pb2, common_pb2, public_api_pb2
from pixelrelay_gateway.core.api import PublicApi
from pixelrelay_gateway.core.authenticator import Authenticator
from pixelrelay_gateway.core.sizes import PIXELS
from pixelrelay_gateway.core.store import TaskStatus
from pixelrelay_gateway.core.validation import MAX_REFERENCE_IMAGES
from pixelrelay_gateway.http import translate
from pixelrelay_gateway.http.errors import validation_error
from pixelrelay_gateway.http.openai_errors import openai_error_json, openai_error_response
from pixelrelay_gateway.http.responses import JSONBody
from pixelrelay_gateway.http.schemas import MODEL_NAMES, ModelListOut

GENERATIONS = "/v1/images/generations"
EDITS = "/v1/images/edits"
MODELS = "/v1/models"
TASK_HEADER = "x-pixelrelay-task-id"
KEEPALIVE_SECONDS = 15.0  # STREAM_KEEPALIVE_SECONDS

Authorization = Annotated[str | None, Header(description="Bearer <api key>")]


class OpenAIErrorDetail(BaseModel):
    message: str
    type: str = Field(description="invalid_request_error, insufficient_quota, requests, …")
    param: str | None
    code: str | None
    pixelrelay_code: int = Field(description="our stable error code (docs/api.md)")


class OpenAIErrorOut(BaseModel):
    error: OpenAIErrorDetail


_ERROR_STATUSES = {
    400: "invalid request (OpenAI's BadRequestError)",
    401: "missing or invalid API key",
    403: "the API key lacks the scope",
    404: "an upload named as a reference does not exist",
    409: "a request with this Idempotency-Key is still being processed",
    429: "insufficient credits (insufficient_quota, not retried) or rate limited",
    500: "platform fault",
    502: "the upstream failed the task (refunded)",
    503: "a platform component is down",
    504: "the task is still processing after SYNC_WAIT_SECONDS (it goes on)",
}
ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": OpenAIErrorOut, "description": text}
    for status, text in _ERROR_STATUSES.items()
}

# What a model that takes no such field does anyway (the basic one): an OpenAI client
# sending these asks for nothing it cannot have, so they are accepted; any other value of
# these fields needs a model that takes them.
_DONE_ANYWAY = {
    "quality": "auto",
    "background": "auto",
    "moderation": "auto",
    "output_format": "png",
}


class OpenAIGenerationBody(BaseModel):
    """OpenAI's `image_generate_params` for GPT image models."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(json_schema_extra={"enum": MODEL_NAMES})
    prompt: str
    n: int | None = None
    size: str | None = Field(None, description="auto or WIDTHxHEIGHT")
    quality: str | None = None
    background: str | None = None
    moderation: str | None = None
    output_format: str | None = None
    output_compression: int | None = None
    user: str | None = Field(None, description="accepted; not stored")
    safety_identifier: str | None = Field(None, description="accepted; not stored")
    stream: bool | None = None
    partial_images: int | None = None
    response_format: str | None = Field(None, description="refused: DALL·E only")


class OpenAIEditFields(OpenAIGenerationBody):
    """OpenAI's `image_edit_params` (besides the files); multipart fields are text."""

    input_fidelity: str | None = Field(None, description="refused: not for gpt-image-2")


_INT_FIELDS = ("n", "output_compression", "partial_images")


def edit_fields(form: dict[str, str]) -> OpenAIEditFields:
    """The text fields of an edits form, typed as the JSON body's are."""
    values: dict[str, object] = dict(form)
    for name in _INT_FIELDS:
        if name in values:
            try:
                values[name] = int(str(values[name]))
            except ValueError:
                raise ApiError(
                    E.INVALID_PARAMETER, f"{name} must be an integer", param=name
                ) from None
    if "stream" in values:
        values["stream"] = str(values["stream"]).lower() == "true"
    try:
        return OpenAIEditFields.model_validate(values)
    except ValidationError as exc:  # a missing or unknown field: 400 naming it, not a 500
        raise validation_error(exc) from None


def generation_request(
    body: OpenAIGenerationBody, models: Catalog
) -> public_api_pb2.CreateGenerationRequest:
    """OpenAI's fields onto ours; whatever the model cannot do is refused, never dropped."""
    if isinstance(body, OpenAIEditFields) and body.input_fidelity is not None:
        raise ApiError(
            E.UNSUPPORTED_PARAMETER,
            "input_fidelity is not supported by gpt-image-2 models",
            param="input_fidelity",
        )
    if body.response_format is not None:
        raise ApiError(
            E.UNKNOWN_PARAMETER,
            "response_format is not supported for GPT image models: they return b64_json "
            "(and here also a url)",
            param="response_format",
        )
    if body.partial_images and not body.stream:
        raise ApiError(
            E.INVALID_PARAMETER, "partial_images needs stream: true", param="partial_images"
        )
    request = public_api_pb2.CreateGenerationRequest(model=body.model, prompt=body.prompt)
    model = models.resolve(body.model)
    caps = models.models[model].capabilities if model else None  # unknown: resolve() says
    for name in ("quality", "background", "moderation", "output_format"):
        value = getattr(body, name)
        done_anyway = caps is not None and not takes(caps, name) and value == _DONE_ANYWAY[name]
        if value is not None and not done_anyway:
            setattr(request, name, value)
    if body.output_compression is not None:
        request.output_compression = body.output_compression
    if body.n is not None:
        request.n = body.n
    # OpenAI's default size is auto, unlike /api/v1's 1:1.
    _set_size(request, body.size or "auto", models, caps is not None and caps.sizes == "ratios")
    return request


def _set_size(
    request: public_api_pb2.CreateGenerationRequest,
    size: str,
    models: Catalog,
    ratios_only: bool,
) -> None:
    """`auto` as is; WIDTHxHEIGHT as the table's ratio and resolution when it is one of
    its sizes (all a ratios-only model makes), else as is (validation.py judges it)."""
    if size == "auto":
        request.size = size
        return
    for (ratio, resolution), (width, height) in PIXELS.items():
        if size == f"{width}x{height}":
            request.size, request.resolution = ratio, resolution
            return
    if ratios_only:
        sizes = ", ".join(sorted({f"{w}x{h}" for w, h in PIXELS.values()}))
        others = [n for n, m in models.models.items() if m.capabilities.sizes == "any"]
        raise ApiError(
            E.UNSUPPORTED_PARAMETER,
            f"{request.model} makes the sizes {sizes}; other sizes need {' or '.join(others)}",
            param="size",
        )
    request.size = size


def image_settings(task: public_api_pb2.Task) -> dict[str, str]:
    """The fields OpenAI repeats in every answer and event about the image."""
    spec = task.spec
    return {
        "background": spec.background or "opaque",
        "output_format": spec.output_format or "png",
        "quality": spec.quality or "auto",
        "size": f"{spec.width}x{spec.height}",
    }


def usage_json(usage: common_pb2.Usage) -> dict[str, Any]:
    return {
        "input_tokens": usage.input_tokens,
        "output_tokens": usage.output_tokens,
        "total_tokens": usage.total_tokens,
        "input_tokens_details": {
            "text_tokens": usage.input_text_tokens,
            "image_tokens": usage.input_image_tokens,
        },
    }


def image_items(
    settled: public_api_pb2.Task, images: list[public_api_pb2.ImageData]
) -> list[dict[str, Any]]:
    """Each image as OpenAI gives it (`b64_json`), with our stored link (`url`)."""
    urls = {image.index: image.url for image in settled.images}
    return [
        {"b64_json": base64.b64encode(image.data).decode(), "url": urls.get(image.index)}
        for image in images
    ]


def images_response(
    settled: public_api_pb2.Task, images: list[public_api_pb2.ImageData]
) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "created": settled.created_at,
        "data": image_items(settled, images),
        **image_settings(settled),
    }
    if settled.HasField("usage"):  # absent when the upstream reported none
        answer["usage"] = usage_json(settled.usage)
    return answer


def settled_or_error(settled: public_api_pb2.Task) -> None:
    """A task that did not complete, as the error a synchronous caller gets."""
    if settled.status == TaskStatus.COMPLETED:
        return
    if settled.status == TaskStatus.FAILED:
        kind = CATALOG.get(settled.error.code, E.UPSTREAM_FAILED)
        raise ApiError(kind, settled.error.message or kind.description)
    raise ApiError(
        E.TASK_STILL_PROCESSING,
        f"task {settled.id} is still processing; poll GET /api/v1/tasks/{settled.id}",
    )


def openai_router(
    api: PublicApi, authenticator: Authenticator, keepalive_seconds: float = KEEPALIVE_SECONDS
) -> APIRouter:
    router = APIRouter(tags=["openai"], responses=ERRORS)

    @router.post(
        GENERATIONS,
        summary="Generate images and wait for them (OpenAI Images API)",
        responses={200: {"description": "OpenAI's ImagesResponse, plus url per image"}},
    )
    async def generate(
        body: OpenAIGenerationBody, request: Request, authorization: Authorization = None
    ) -> Response:
        generation = generation_request(body, api.models)
        principal = await authenticator.authenticate(authorization, scopes.GENERATE)
        return await _answer(api, request, principal, generation, body, keepalive_seconds)

    @router.post(
        EDITS,
        summary="Edit images and wait for the result (OpenAI Images API, multipart)",
        responses={200: {"description": "OpenAI's ImagesResponse, plus url per image"}},
        openapi_extra={
            "requestBody": {
                "content": {"multipart/form-data": {"schema": {"type": "object"}}},
                "description": "image (or image[] up to 16), optional mask, and the fields "
                "of /v1/images/generations (n, size, quality, …)",
            }
        },
    )
    async def edit(request: Request, authorization: Authorization = None) -> Response:
        form = await request.form(max_files=MAX_REFERENCE_IMAGES + 2, max_fields=32)
        files: dict[str, list[UploadFile]] = {"image": [], "mask": []}
        fields: dict[str, str] = {}
        for name, value in form.multi_items():
            if isinstance(value, str):
                fields[name] = value
            else:
                files.setdefault(name.removesuffix("[]"), []).append(value)
        unknown = set(files) - {"image", "mask"}
        if unknown:
            param = sorted(unknown)[0]
            raise ApiError(E.UNKNOWN_PARAMETER, f"unknown file field {param}", param=param)
        if not files["image"]:
            raise ApiError(E.MISSING_PARAMETER, "image is required", param="image")
        if len(files["image"]) > MAX_REFERENCE_IMAGES:
            raise ApiError(
                E.INVALID_PARAMETER, f"at most {MAX_REFERENCE_IMAGES} images", param="image"
            )
        body = edit_fields(fields)
        generation = generation_request(body, api.models)
        for upload in files["image"]:
            generation.images.append(await _inline(upload))
        if files["mask"]:
            generation.mask.CopyFrom(await _inline(files["mask"][0]))
        principal = await authenticator.authenticate(authorization, scopes.GENERATE)
        return await _answer(api, request, principal, generation, body, keepalive_seconds)

    @router.get(
        MODELS,
        response_model=ModelListOut,
        summary="The models this platform serves (OpenAI's list shape; with what each "
        "takes and costs, as GET /api/v1/models)",
    )
    async def models(authorization: Authorization = None) -> Response:
        principal = await authenticator.authenticate(authorization, scopes.GENERATE)
        served = await api.list_models(public_api_pb2.ListModelsRequest(), principal=principal)
        return JSONBody(translate.model_list_json(served))

    return router


async def _inline(upload: UploadFile) -> public_api_pb2.InlineImage:
    return public_api_pb2.InlineImage(
        data=await upload.read(), content_type=upload.content_type or ""
    )


async def _answer(
    api: PublicApi,
    request: Request,
    principal: billing_pb2.Principal,
    generation: public_api_pb2.CreateGenerationRequest,
    body: OpenAIGenerationBody,
    keepalive_seconds: float,
) -> Response:
    """Run GenerateImages and answer as OpenAI does: the images, or the error.

    An error before the task was accepted charged nothing, and the SDK may retry it. Once
    a task exists, an error answer names it (`x-pixelrelay-task-id`) and, unless the task
    failed (refunded: a new try is what the client wants), says `x-should-retry: false`:
    a retry would make a second task, the first may still complete and be charged."""
    idempotency_key = request.headers.get("idempotency-key")
    if idempotency_key is not None:
        generation.idempotency_key = idempotency_key
    events = api.generate_images(
        public_api_pb2.GenerateImagesRequest(
            request=generation, partial_images=body.partial_images or 0
        ),
        principal=principal,
    )
    if body.stream:
        prefix = "image_edit" if generation.images else "image_generation"
        return await _stream(events, prefix, keepalive_seconds)
    images: list[public_api_pb2.ImageData] = []
    task = public_api_pb2.Task()
    try:
        async for event in events:
            kind = event.WhichOneof("event")
            if kind == "accepted":
                task = event.accepted
            elif kind == "image":
                images.append(event.image)
            elif kind == "settled":
                task = event.settled
        settled_or_error(task)
    except ApiError as err:
        if not task.id:
            raise
        answer = openai_error_response(err)
        answer.headers[TASK_HEADER] = task.id
        if task.status != TaskStatus.FAILED:
            answer.headers["x-should-retry"] = "false"
        return answer
    return JSONBody(images_response(task, images), headers={TASK_HEADER: task.id})


async def _stream(
    events: AsyncGenerator[public_api_pb2.GenerationEvent], prefix: str, keepalive_seconds: float
) -> Response:
    """OpenAI's image stream. Everything up to the task's acceptance (auth, validation,
    credits) is an ordinary error answer; after it, a failure is an `error` event, which
    the SDK raises as an APIError."""
    first = await anext(events)  # accepted, or the error raised
    task = first.accepted

    async def body() -> AsyncIterator[bytes]:
        settled = task
        images: list[public_api_pb2.ImageData] = []
        try:
            async for event in with_keepalives(events, keepalive_seconds):
                if event is None:  # a comment line: proxies keep an idle stream open
                    yield b": keepalive\n\n"
                    continue
                kind = event.WhichOneof("event")
                if kind == "partial":
                    yield _sse(
                        f"{prefix}.partial_image",
                        {
                            "b64_json": base64.b64encode(event.partial.data).decode(),
                            "partial_image_index": event.partial.partial_image_index,
                            "created_at": int(time.time()),
                            **image_settings(task),
                        },
                    )
                elif kind == "image":
                    images.append(event.image)
                elif kind == "settled":
                    settled = event.settled
            settled_or_error(settled)
        except ApiError as err:
            yield _sse("error", openai_error_json(as_public(err)))
            return
        finally:
            await events.aclose()  # the client left: stop waiting; the task goes on
        for item in image_items(settled, images):
            completed = {**item, "created_at": settled.created_at, **image_settings(settled)}
            if settled.HasField("usage"):
                completed["usage"] = usage_json(settled.usage)
            yield _sse(f"{prefix}.completed", completed)

    return StreamingResponse(
        body(),
        media_type="text/event-stream",
        headers={TASK_HEADER: task.id, "cache-control": "no-cache"},
    )


async def with_keepalives(
    events: AsyncIterator[public_api_pb2.GenerationEvent], every: float
) -> AsyncIterator[public_api_pb2.GenerationEvent | None]:
    """The events, and None each time ``every`` seconds pass without one (the wait for
    the next event goes on: it is not cancelled)."""
    upcoming = asyncio.ensure_future(anext(events))
    try:
        while True:
            done, _pending = await asyncio.wait({upcoming}, timeout=every)
            if not done:
                yield None
                continue
            try:
                event = upcoming.result()
            except StopAsyncIteration:
                return
            yield event
            upcoming = asyncio.ensure_future(anext(events))
    finally:
        upcoming.cancel()


def _sse(event: str, data: dict[str, Any]) -> bytes:
    payload = json.dumps({"type": event, **data})
    return f"event: {event}\ndata: {payload}\n\n".encode()
