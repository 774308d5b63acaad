"""Errors on /v1 in OpenAI's envelope and statuses, so the `openai` SDK raises its own
exception classes: {"error": {"message", "type", "param", "code"}}.

    invalid request (2xxxx)      400 invalid_request_error  BadRequestError
    bad or missing key           401 invalid_request_error  AuthenticationError
    missing scope                403 invalid_request_error  PermissionDeniedError
    not found (4xxxx)            404 invalid_request_error  NotFoundError
    insufficient credits (3xxxx) 429 insufficient_quota     RateLimitError, as OpenAI
                                 answers an exhausted quota, with `x-should-retry: false`
                                 so the SDK does not retry it
    rate limited (5xxxx)         429 requests               RateLimitError (retried)
    moderation (70002)           400 image_generation_user_error, code moderation_blocked
    task still processing        504 server_error           (retried by the SDK)
    platform or upstream fault   500/502/503 server_error   InternalServerError (retried)
`code` is OpenAI's code where it has one, else our error type (e.g. `image_too_large`);
our numeric code is in `pixelrelay_code`; `x-request-id` names the request, as everywhere.
"""

from __future__ import annotations

from typing import Any

from pixelrelay.errors import ApiError, E, ErrorKind, as_public
from pixelrelay_gateway.http.responses import JSONBody

_CODES = {  # OpenAI's own codes where they have one
    E.INVALID_PARAMETER: "invalid_value",
    E.UNKNOWN_PARAMETER: "unknown_parameter",
    E.MISSING_PARAMETER: "missing_required_parameter",
    E.INVALID_API_KEY: "invalid_api_key",
    E.MISSING_API_KEY: "invalid_api_key",
    E.INSUFFICIENT_CREDITS: "insufficient_quota",
    E.KEY_CREDIT_LIMIT: "insufficient_quota",
    E.RATE_LIMITED: "rate_limit_exceeded",
    E.AUTH_THROTTLED: "rate_limit_exceeded",
    E.UPSTREAM_REJECTED: "moderation_blocked",
}


def openai_status(kind: ErrorKind) -> tuple[int, str]:
    """(HTTP status, OpenAI error type) for one of our errors."""
    group = kind.code // 10_000
    if kind in (E.INSUFFICIENT_CREDITS, E.KEY_CREDIT_LIMIT):
        return 429, "insufficient_quota"
    if kind is E.UPSTREAM_REJECTED:
        return 400, "image_generation_user_error"
    if group == 1:
        return kind.http_status, "invalid_request_error"
    if group == 2:
        return 400, "invalid_request_error"
    if group == 3:  # idempotency conflicts
        return kind.http_status if kind.http_status == 409 else 400, "invalid_request_error"
    if group == 4:
        return kind.http_status, "invalid_request_error"
    if group == 5:
        return 429, "requests"
    return (kind.http_status if kind.http_status >= 500 else 500), "server_error"


def openai_error_json(err: ApiError) -> dict[str, Any]:
    _status, error_type = openai_status(err.kind)
    return {
        "error": {
            "message": err.message,
            "type": error_type,
            "param": err.param,
            "code": _CODES.get(err.kind, err.kind.type),
            "pixelrelay_code": err.kind.code,
        }
    }


def openai_error_response(err: ApiError) -> JSONBody:
    """The answer; the middleware adds x-request-id, as to every answer."""
    err = as_public(err)
    status, _type = openai_status(err.kind)
    headers: dict[str, str] = {}
    if err.retry_after is not None:
        headers["retry-after"] = f"{err.retry_after:g}"
    if err.kind in (E.INSUFFICIENT_CREDITS, E.KEY_CREDIT_LIMIT):
        headers["x-should-retry"] = "false"
    return JSONBody(openai_error_json(err), status_code=status, headers=headers)
