"""/v1's translation: OpenAI's fields onto ours (refusing what the model cannot do), and
our errors onto OpenAI's statuses and types (what the SDK turns into its exceptions)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pydantic import ValidationError

from pixelrelay import catalog
from pixelrelay.errors import CATALOG, ApiError, E
from pixelrelay.v1 import public_api_pb2
from pixelrelay_gateway.http.openai_api import (
    OpenAIGenerationBody,
    edit_fields,
    generation_request,
    with_keepalives,
)
from pixelrelay_gateway.http.openai_errors import openai_error_json, openai_status

MODELS = catalog.load()


def translated(**fields: object) -> dict[str, object]:
    body = OpenAIGenerationBody.model_validate({"prompt": "p", **fields})
    request = generation_request(body, MODELS)
    return {f.name: v for f, v in request.ListFields()}


def test_table_sizes_become_a_ratio_and_resolution_others_stay_for_the_stable_model() -> None:
    assert translated(model="gpt-image-2", size="1536x1024") == {
        "model": "gpt-image-2",
        "prompt": "p",
        "size": "3:2",
        "resolution": "1k",
    }
    assert translated(model="gpt-image-2", size="auto")["size"] == "auto"
    assert translated(model="gpt-image-2-official", size="1200x800")["size"] == "1200x800"
    with pytest.raises(ApiError) as caught:
        translated(model="gpt-image-2", size="1200x800")
    assert (caught.value.kind, caught.value.param) == (E.UNSUPPORTED_PARAMETER, "size")


def test_what_the_basic_model_does_anyway_is_accepted_anything_else_is_passed_on() -> None:
    basic = translated(model="gpt-image-2", quality="auto", output_format="png", background="auto")
    assert set(basic) == {"model", "prompt", "size"} and basic["size"] == "auto"
    stable = translated(model="gpt-image-2-official", quality="high", output_format="jpeg", n=2)
    assert (stable["quality"], stable["output_format"], stable["n"]) == ("high", "jpeg", 2)
    assert translated(model="gpt-image-2", quality="high")["quality"] == "high"  # resolve refuses


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"response_format": "url"}, "response_format"),
        ({"style": "vivid"}, "style"),
        ({"partial_images": 2}, "partial_images"),  # previews come only with stream: true
    ],
)
def test_what_gpt_image_models_do_not_take_is_refused_by_name(
    fields: dict[str, object], param: str
) -> None:
    with pytest.raises((ApiError, ValidationError)) as caught:
        translated(model="gpt-image-2", **fields)
    refused = caught.value
    if isinstance(refused, ValidationError):  # unknown: the handler names it (test_openai_sdk)
        assert refused.errors()[0]["loc"] == (param,)
    else:
        assert isinstance(refused, ApiError) and refused.param == param


@pytest.mark.parametrize(
    ("kind", "status", "error_type"),
    [
        (E.INVALID_PARAMETER, 400, "invalid_request_error"),
        (E.IMAGE_TOO_LARGE, 400, "invalid_request_error"),
        (E.INVALID_IMAGE, 400, "invalid_request_error"),
        (E.INVALID_API_KEY, 401, "invalid_request_error"),
        (E.INSUFFICIENT_SCOPE, 403, "invalid_request_error"),
        (E.INSUFFICIENT_CREDITS, 429, "insufficient_quota"),
        (E.RATE_LIMITED, 429, "requests"),
        (E.TASK_NOT_FOUND, 404, "invalid_request_error"),
        (E.UPSTREAM_REJECTED, 400, "image_generation_user_error"),
        (E.UPSTREAM_FAILED, 502, "server_error"),
        (E.UNAVAILABLE, 503, "server_error"),
        (E.TASK_STILL_PROCESSING, 504, "server_error"),
    ],
)
def test_our_errors_map_onto_openai_statuses(kind: object, status: int, error_type: str) -> None:
    assert openai_status(kind) == (status, error_type)  # type: ignore[arg-type]


def test_every_error_has_an_openai_answer_with_our_code_beside() -> None:
    for kind in CATALOG.values():
        status, _type = openai_status(kind)
        assert 400 <= status < 600, kind
        body = openai_error_json(ApiError(kind, param="x"))["error"]
        assert body["pixelrelay_code"] == kind.code and body["param"] == "x"
    assert openai_error_json(ApiError(E.UNKNOWN_PARAMETER))["error"]["code"] == "unknown_parameter"


async def test_keepalives_fill_the_silences_without_losing_the_wait() -> None:
    async def slow() -> AsyncIterator[public_api_pb2.GenerationEvent]:
        yield public_api_pb2.GenerationEvent(accepted=public_api_pb2.Task(id="a"))
        await asyncio.sleep(0.35)  # the generation: three keepalives' worth
        yield public_api_pb2.GenerationEvent(settled=public_api_pb2.Task(id="a"))

    seen = [
        e.WhichOneof("event") if e is not None else None async for e in with_keepalives(slow(), 0.1)
    ]
    assert seen[0] == "accepted" and seen[-1] == "settled"
    assert 2 <= seen.count(None) <= 4 and len(seen) == seen.count(None) + 2


@pytest.mark.parametrize(
    ("form", "kind", "param"),
    [
        ({"model": "gpt-image-2", "prompt": "x", "evil": "1"}, E.UNKNOWN_PARAMETER, "evil"),
        ({"prompt": "x"}, E.MISSING_PARAMETER, "model"),
        ({"model": "gpt-image-2", "prompt": "x", "n": "two"}, E.INVALID_PARAMETER, "n"),
        ({"model": "gpt-image-2", "prompt": ["x"]}, E.INVALID_PARAMETER, "prompt"),
    ],
)
def test_an_edit_form_field_wrong_is_a_400_naming_it(
    form: dict[str, Any], kind: object, param: str
) -> None:
    """`-F evil=1` was once a 500, which the OpenAI SDK then retried."""
    with pytest.raises(ApiError) as refused:
        edit_fields(form)
    assert (refused.value.kind, refused.value.param) == (kind, param)
