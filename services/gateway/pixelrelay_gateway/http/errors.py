"""Every REST error answer: one renderer for the FastAPI routes and the hot routes alike,
the status texts the spec documents, and the envelope from translate.py."""

from __future__ import annotations

import logging
from typing import Any

from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from pixelrelay.errors import ApiError, E, as_public
from pixelrelay.words import in_words
from pixelrelay_gateway.http import translate
from pixelrelay_gateway.http.openai_errors import openai_error_response
from pixelrelay_gateway.http.responses import JSONBody
from pixelrelay_gateway.http.schemas import ErrorOut

log = logging.getLogger(__name__)

_ERROR_TEXT = {
    400: "invalid request",
    401: "missing or invalid API key",
    402: "insufficient credits",
    403: "the API key lacks the scope, or asks for more than it has",
    404: "not found",
    409: "a request with this Idempotency-Key is still being processed",
    413: "body or image too large",
    422: "a reference image is unusable, or an Idempotency-Key was used with another body",
    429: "rate limited, or too many failed authentications; retry after Retry-After",
    503: "a platform component is down; nothing was charged",
}
# HTTP-level refusals by the framework (no route, wrong method, a body it cannot parse)
_FRAMEWORK_KINDS = {400: E.INVALID_JSON, 404: E.NOT_FOUND, 405: E.METHOD_NOT_ALLOWED}


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The error responses an operation documents (all share the error envelope). An
    operation that authenticates (401) can also meet the failed-auth throttle (429)."""
    documented = {*statuses, 429} if 401 in statuses else set(statuses)
    return {s: {"model": ErrorOut, "description": _ERROR_TEXT[s]} for s in sorted(documented)}


OPENAI_PREFIX = "/v1/"


def error_response(err: ApiError, request_id: str, path: str = "") -> JSONBody:
    """Our envelope, or OpenAI's on /v1 (openai_errors.py)."""
    if path.startswith(OPENAI_PREFIX):
        return openai_error_response(err)
    err = as_public(err)
    headers = {"Retry-After": f"{err.retry_after:g}"} if err.retry_after is not None else None
    return JSONBody(
        translate.error_json(err, request_id), status_code=err.kind.http_status, headers=headers
    )


def render_error(
    exc: Exception, request_id: str, content_type: str = "", path: str = ""
) -> Response:
    """The answer to anything a request raised; a bug is logged with its traceback and
    answered as 90001 without one."""
    if isinstance(exc, StarletteHTTPException) and isinstance(exc.__cause__, ApiError):
        exc = exc.__cause__  # e.g. the body limit, raised while the framework read the body
    if isinstance(exc, ApiError):
        return error_response(exc, request_id, path)
    if isinstance(exc, RequestValidationError):
        return error_response(validation_error(exc), request_id, path)
    if isinstance(exc, StarletteHTTPException):
        kind = _FRAMEWORK_KINDS.get(exc.status_code, E.INTERNAL)
        if kind is E.INVALID_JSON and content_type.startswith("multipart/"):
            kind = E.INVALID_MULTIPART  # the form parser refused the body
        return error_response(ApiError(kind), request_id, path)
    log.error("unhandled error", extra={"request_id": request_id}, exc_info=exc)
    return error_response(ApiError(E.INTERNAL), request_id, path)


def validation_error(exc: RequestValidationError | ValidationError) -> ApiError:
    """Pydantic's first complaint about the body (or a form's fields), as our stable
    codes."""
    first = exc.errors()[0] if exc.errors() else {}
    kind, loc = str(first.get("type", "")), [str(p) for p in first.get("loc", ())]
    param = loc[1] if len(loc) > 1 and loc[0] == "body" else (loc[-1] if loc else None)
    if kind in ("json_invalid", "model_attributes_type") or loc == ["body"]:
        return ApiError(E.INVALID_JSON, "the body must be a JSON object")
    if kind == "missing":
        return ApiError(E.MISSING_PARAMETER, f"{param} is required", param=param)
    if kind == "extra_forbidden":
        return ApiError(E.UNKNOWN_PARAMETER, f"unknown parameter {param}", param=param)
    return ApiError(E.INVALID_PARAMETER, f"{param} {in_words(first)}", param=param)
