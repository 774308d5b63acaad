"""The REST API: HTTP → PublicApi (the same calls gRPC clients make) → JSON."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable
from typing import Annotated, Any

from fastapi import FastAPI, File, Header, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import Response
from fastapi.routing import APIRoute
from prometheus_client import Counter, Histogram
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.core.api import PublicApi
from gateway.core.auth_throttle import AuthThrottle
from gateway.http import translate
from gateway.http.admin import AdminAccess, admin_router
from gateway.http.pages import PAGES, pages_router
from gateway.http.responses import JSONBody
from gateway.http.schemas import (
    BalanceOut,
    CreatedKeyOut,
    ErrorOut,
    EstimateOut,
    GenerationBody,
    KeyCreateBody,
    KeyListOut,
    KeyOut,
    SubmitOut,
    TaskListOut,
    TaskOut,
    UploadOut,
    UsageOut,
)
from pixelrelay.errors import ApiError, E, as_public
from pixelrelay.ids import random_token
from pixelrelay.limits import MAX_UNIX_SECONDS
from pixelrelay.metrics import FAST_BUCKETS
from pixelrelay.v1 import public_api_pb2

log = logging.getLogger(__name__)

UPLOADS_PATH = "/api/v1/uploads"

HTTP_REQUESTS = Counter(
    "pixelrelay_http_requests_total", "REST requests", ["method", "route", "status"]
)
HTTP_LATENCY = Histogram(
    "pixelrelay_http_request_seconds",
    "REST handling time",
    ["method", "route"],
    buckets=FAST_BUCKETS,
)

Authorization = Annotated[str | None, Header(description="Bearer <api key>")]
_ERROR_TEXT = {
    400: "invalid request",
    401: "missing or invalid API key",
    402: "insufficient credits",
    403: "the API key lacks the scope, or asks for more than it has",
    404: "not found",
    413: "body or image too large",
    422: "a reference image is unusable",
    429: "rate limited, or too many failed authentications; retry after Retry-After",
    503: "a platform component is down; nothing was charged",
}


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The error responses an operation documents (all share the error envelope). An
    operation that authenticates (401) can also meet the failed-auth throttle (429)."""
    documented = {*statuses, 429} if 401 in statuses else set(statuses)
    return {s: {"model": ErrorOut, "description": _ERROR_TEXT[s]} for s in sorted(documented)}


def error_body(err: ApiError, request_id: str) -> dict[str, Any]:
    """The error envelope, for every answer that is an error (HTTP-level ones included)."""
    return {
        "error": {
            "code": err.kind.code,
            "type": err.kind.type,
            "message": err.message,
            "param": err.param,
            "request_id": request_id,
        }
    }


def error_response(err: ApiError, request_id: str) -> JSONBody:
    err = as_public(err)
    headers = {"Retry-After": f"{err.retry_after:g}"} if err.retry_after is not None else None
    return JSONBody(error_body(err, request_id), status_code=err.kind.http_status, headers=headers)


def unexpected_error(request_id: str) -> JSONBody:
    """A bug: logged with its traceback, answered as 90001 without one."""
    log.exception("unhandled error", extra={"request_id": request_id})
    return error_response(ApiError(E.INTERNAL), request_id)


def _request_id(request: Request) -> str:
    return str(getattr(request.state, "request_id", "")) or f"req_{random_token(16)}"


def _validation_error(exc: RequestValidationError) -> ApiError:
    first = exc.errors()[0] if exc.errors() else {}
    kind, loc = str(first.get("type", "")), [str(p) for p in first.get("loc", ())]
    param = loc[1] if len(loc) > 1 and loc[0] == "body" else (loc[-1] if loc else None)
    if kind in ("json_invalid", "model_attributes_type") or loc == ["body"]:
        return ApiError(E.INVALID_JSON, "the body must be a JSON object")
    if kind == "missing":
        return ApiError(E.MISSING_PARAMETER, f"{param} is required", param=param)
    if kind == "extra_forbidden":
        return ApiError(E.UNKNOWN_PARAMETER, f"unknown parameter {param}", param=param)
    return ApiError(
        E.INVALID_PARAMETER, f"{param}: {first.get('msg', 'invalid value')}", param=param
    )


# Every answer: no MIME sniffing, no framing, no referrer. JSON answers may load nothing;
# the HTML pages (the playground and /docs) only what they use, all from this gateway.
_COMMON_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
]
API_HEADERS = [
    *_COMMON_HEADERS,
    (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'"),
]
PAGE_HEADERS = [
    *_COMMON_HEADERS,
    (
        b"content-security-policy",
        # images come from the object store (http in `make run`), whose address only the
        # storage service knows; scripts only from this gateway
        b"default-src 'self'; style-src 'self' 'unsafe-inline'; img-src * data:; "
        b"connect-src 'self'; frame-ancestors 'none'",
    ),
]


class RequestContext:
    """Per request: an id (``x-request-id``), a body limit (413 before a larger body is
    read into memory), failed-authentication throttling, and the HTTP metrics."""

    def __init__(self, app: ASGIApp, limit: int, upload_limit: int, throttle: AuthThrottle):
        self.app = app
        self.limit = limit
        self.upload_limit = upload_limit
        self.throttle = throttle

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = f"req_{random_token(16)}"
        scope.setdefault("state", {})["request_id"] = request_id

        started = time.perf_counter()
        status = 500

        async def with_request_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = message.setdefault("headers", [])
                headers.append((b"x-request-id", request_id.encode()))
                headers += PAGE_HEADERS if scope["path"] in PAGES else API_HEADERS
            await send(message)

        limit = self.upload_limit if scope["path"] == UPLOADS_PATH else self.limit
        too_large = ApiError(E.BODY_TOO_LARGE, f"the body must be at most {limit} bytes")
        headers = dict(scope["headers"])
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            await error_response(too_large, request_id)(scope, receive, with_request_id)
            return
        credentialed = b"authorization" in headers
        if credentialed and self.throttle.blocked:
            try:
                self.throttle.check(self._client(scope, headers))
            except ApiError as refused:
                await error_response(refused, request_id)(scope, receive, with_request_id)
                return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > limit:
                raise too_large
            return message

        try:
            await self.app(scope, limited, with_request_id)
        finally:
            if status == 401 and credentialed:
                self.throttle.failed(self._client(scope, headers))
            route = scope.get("route")
            path = getattr(route, "path", "unmatched")
            HTTP_REQUESTS.labels(scope["method"], path, str(status)).inc()
            HTTP_LATENCY.labels(scope["method"], path).observe(time.perf_counter() - started)

    def _client(self, scope: Scope, headers: dict[bytes, bytes]) -> str:
        peer = scope["client"][0] if scope.get("client") else ""
        forwarded = headers.get(b"x-forwarded-for")
        return self.throttle.client(peer, forwarded.decode("latin-1") if forwarded else None)


GENERATIONS_PATH = "/api/v1/images/generations"
TASK_PREFIX = "/api/v1/tasks/"


class HotRoutes:
    """Submit and poll dispatched straight to their FastAPI endpoint functions.

    On these two routes FastAPI's router, dependency solving and exception middlewares
    cost more CPU than the work itself (docs/benchmarks.md). The endpoints, the body model,
    the error envelope and the spec are the same ones FastAPI uses; a request that is not
    plain JSON goes through FastAPI as before.
    """

    def __init__(self, app: FastAPI):
        self.app = app
        routes = {
            (r.path, method): r
            for r in app.routes
            if isinstance(r, APIRoute)
            for method in r.methods or ()
        }
        self.submit = routes[(GENERATIONS_PATH, "POST")]
        self.poll = routes[(TASK_PREFIX + "{task_id}", "GET")]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path, method = scope.get("path", ""), scope.get("method")
        if method == "POST" and path == GENERATIONS_PATH and _is_json(scope):
            scope["route"] = self.submit
            await self._answer(scope, send, self._submit(scope, receive))
        elif method == "GET" and _one_segment(path, TASK_PREFIX):
            scope["route"] = self.poll
            call = self.poll.endpoint(path[len(TASK_PREFIX) :], _header(scope, b"authorization"))
            await self._answer(scope, send, call)
        else:
            await self.app(scope, receive, send)

    async def _submit(self, scope: Scope, receive: Receive) -> Response:
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        try:
            body = GenerationBody.model_validate_json(b"".join(chunks))
        except ValidationError as exc:
            errors = [{**e, "loc": ("body", *e["loc"])} for e in exc.errors()]
            raise _validation_error(RequestValidationError(errors)) from None
        response: Response = await self.submit.endpoint(body, _header(scope, b"authorization"))
        return response

    async def _answer(self, scope: Scope, send: Send, call: Awaitable[Response]) -> None:
        request_id = scope["state"]["request_id"]
        try:
            response = await call
        except ApiError as err:
            response = error_response(err, request_id)
        except Exception:
            response = unexpected_error(request_id)
        await response(scope, _no_body, send)


async def _no_body() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


def _one_segment(path: str, prefix: str) -> bool:
    """``path`` is ``prefix`` plus one non-empty segment (FastAPI's ``{param}`` match)."""
    rest = path[len(prefix) :]
    return path.startswith(prefix) and bool(rest) and "/" not in rest


def _is_json(scope: Scope) -> bool:
    content_type = _header(scope, b"content-type") or ""
    return content_type.split(";", 1)[0].strip().lower() == "application/json"


def create_app(api: PublicApi, billing_admin: AdminAccess | None = None) -> FastAPI:
    app = FastAPI(
        title="PixelRelay API",
        version="1",
        description="Async image generation (GPT Image 2), compatible with reAPI's API. "
        "Submit a task, then poll it.",
        docs_url=None,
        redoc_url=None,
    )

    @app.exception_handler(ApiError)
    async def on_api_error(request: Request, exc: ApiError) -> Response:
        return error_response(exc, _request_id(request))

    @app.exception_handler(RequestValidationError)
    async def on_invalid(request: Request, exc: RequestValidationError) -> Response:
        return error_response(_validation_error(exc), _request_id(request))

    @app.exception_handler(StarletteHTTPException)
    async def on_http(request: Request, exc: StarletteHTTPException) -> Response:
        if isinstance(exc.__cause__, ApiError):  # e.g. the body limit, raised while reading
            return error_response(exc.__cause__, _request_id(request))
        kind = {400: E.INVALID_JSON, 404: E.NOT_FOUND, 405: E.METHOD_NOT_ALLOWED}.get(
            exc.status_code, E.INTERNAL
        )
        if kind is E.INVALID_JSON and request.headers.get("content-type", "").startswith(
            "multipart/"
        ):
            kind = E.INVALID_MULTIPART  # the form parser refused the body
        return error_response(ApiError(kind), _request_id(request))

    @app.exception_handler(Exception)
    async def on_bug(request: Request, exc: Exception) -> Response:
        return unexpected_error(_request_id(request))

    @app.post(
        "/api/v1/images/generations",
        response_model=SubmitOut,
        responses=errors(400, 401, 403, 402, 404, 413, 422, 429, 503),
        tags=["images"],
        summary="Submit an image generation task",
    )
    async def create_generation(
        body: GenerationBody, authorization: Authorization = None
    ) -> Response:
        task = await api.create_generation(authorization, translate.generation_request(body))
        return JSONBody(translate.submit_json(task))

    @app.post(
        "/api/v1/images/estimate",
        response_model=EstimateOut,
        responses=errors(400, 401, 403, 413, 429, 503),
        tags=["images"],
        summary="Price a request without submitting it",
    )
    async def estimate_generation(
        body: GenerationBody, authorization: Authorization = None
    ) -> Response:
        estimate = await api.estimate_generation(authorization, translate.generation_request(body))
        return JSONBody(translate.estimate_json(estimate))

    @app.get(
        "/api/v1/tasks/{task_id}",
        response_model=TaskOut,
        responses=errors(400, 401, 403, 404, 429, 503),
        tags=["tasks"],
        summary="Get a task (poll until completed or failed)",
    )
    async def get_task(task_id: str, authorization: Authorization = None) -> Response:
        task = await api.get_task(authorization, public_api_pb2.GetTaskRequest(id=task_id))
        return JSONBody(translate.task_json(task))

    @app.get(
        "/api/v1/tasks",
        response_model=TaskListOut,
        responses=errors(400, 401, 403, 429, 503),
        tags=["tasks"],
        summary="List the caller's tasks, newest first",
    )
    async def list_tasks(
        authorization: Authorization = None,
        limit: Annotated[int, Query(ge=1, le=100)] = 20,
        cursor: str = "",
        status: str = "",
    ) -> Response:
        page = await api.list_tasks(
            authorization,
            public_api_pb2.ListTasksRequest(limit=limit, cursor=cursor, status=status),
        )
        return JSONBody(
            {
                "data": [translate.task_json(t) for t in page.tasks],
                "next_cursor": page.next_cursor or None,
            }
        )

    @app.post(
        UPLOADS_PATH,
        response_model=UploadOut,
        responses=errors(400, 401, 403, 413, 422, 429, 503),
        tags=["uploads"],
        summary="Upload an image for image_urls or mask_url (multipart field 'file')",
        description="PNG, JPEG or WebP. Stored as the image alone: metadata (EXIF, XMP, "
        "text chunks, comments) and bytes after the image's end are removed, colour "
        "profiles kept; a photo with an EXIF orientation is turned upright. References "
        "fetched from `image_urls` are treated the same before they go upstream.",
    )
    async def create_upload(
        file: Annotated[UploadFile, File()], authorization: Authorization = None
    ) -> Response:
        request = public_api_pb2.CreateUploadRequest(
            data=await file.read(), content_type=file.content_type or ""
        )
        return JSONBody(translate.upload_json(await api.create_upload(authorization, request)))

    @app.get(
        "/api/v1/usage",
        response_model=UsageOut,
        responses=errors(400, 401, 403, 429, 503),
        tags=["account"],
        summary="The caller's ledger entries, newest first",
    )
    async def list_usage(
        authorization: Authorization = None,
        since: Annotated[
            int, Query(ge=0, le=MAX_UNIX_SECONDS, description="unix seconds, inclusive")
        ] = 0,
        until: Annotated[
            int, Query(ge=0, le=MAX_UNIX_SECONDS, description="unix seconds, exclusive")
        ] = 0,
        cursor: str = "",
        limit: Annotated[int, Query(ge=1, le=200)] = 50,
    ) -> Response:
        page = await api.list_usage(
            authorization,
            public_api_pb2.ListUsageRequest(since=since, until=until, cursor=cursor, limit=limit),
        )
        return JSONBody(translate.entries_json(page))

    @app.post(
        "/api/v1/keys",
        response_model=CreatedKeyOut,
        responses=errors(400, 401, 403, 429, 503),
        tags=["keys"],
        summary="Create an API key (its secret is shown once)",
    )
    async def create_key(body: KeyCreateBody, authorization: Authorization = None) -> Response:
        request = public_api_pb2.CreateKeyRequest(
            name=body.name, expires_at=body.expires_at or 0, scopes=body.scopes or []
        )
        if body.credit_limit is not None:
            request.credit_limit = body.credit_limit
        if body.rate_limit is not None:
            request.rate_limit = body.rate_limit
        return JSONBody(translate.created_key_json(await api.create_key(authorization, request)))

    @app.get(
        "/api/v1/keys",
        response_model=KeyListOut,
        responses=errors(401, 403, 429, 503),
        tags=["keys"],
        summary="The caller's API keys (prefix and last four only)",
    )
    async def list_keys(authorization: Authorization = None) -> Response:
        keys = await api.list_keys(authorization, public_api_pb2.ListKeysRequest())
        return JSONBody({"data": [translate.key_json(k) for k in keys.keys]})

    @app.delete(
        "/api/v1/keys/{key_id}",
        response_model=KeyOut,
        responses=errors(400, 401, 403, 404, 429, 503),
        tags=["keys"],
        summary="Revoke an API key (it stops working at once)",
    )
    async def revoke_key(
        key_id: str,
        authorization: Authorization = None,
        cascade: Annotated[
            bool, Query(description="also revoke every key created from it, at any depth")
        ] = False,
    ) -> Response:
        key = await api.revoke_key(
            authorization, public_api_pb2.RevokeKeyRequest(key_id=key_id, cascade=cascade)
        )
        return JSONBody(translate.key_json(key))

    @app.get(
        "/api/v1/account",
        response_model=BalanceOut,
        responses=errors(401, 403, 429, 503),
        tags=["account"],
        summary="The caller's balance and held credits",
    )
    async def get_account(authorization: Authorization = None) -> Response:
        balance = await api.get_balance(authorization, public_api_pb2.GetBalanceRequest())
        return JSONBody(
            {"account_id": balance.account_id, "balance": balance.balance, "held": balance.held}
        )

    def openapi() -> dict[str, Any]:
        # Request validation errors answer 400 with our envelope, never FastAPI's 422.
        if app.openapi_schema is None:
            spec = get_openapi(
                title=app.title, version=app.version, description=app.description, routes=app.routes
            )
            for methods in spec["paths"].values():
                for op in methods.values():
                    if op["responses"].get("422", {}).get("description") == "Validation Error":
                        del op["responses"]["422"]
            for name in ("HTTPValidationError", "ValidationError"):
                spec["components"]["schemas"].pop(name, None)
            app.openapi_schema = spec
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

    app.state.admin = billing_admin
    app.include_router(admin_router())
    app.include_router(pages_router())

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app


def asgi_app(
    api: PublicApi,
    admin: AdminAccess | None,
    *,
    max_body_bytes: int,
    max_upload_bytes: int,
    throttle: AuthThrottle,
) -> ASGIApp:
    app = HotRoutes(create_app(api, admin))
    return RequestContext(app, max_body_bytes, max_upload_bytes, throttle)
