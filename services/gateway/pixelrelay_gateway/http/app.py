"""The REST application: the route families, one error renderer for all of them, the
OpenAPI spec, and what wraps it all (hot routes, middleware)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp

from pixelrelay.errors import ApiError
from pixelrelay.ids import random_token
from pixelrelay_gateway.core.admin import AdminAccess
from pixelrelay_gateway.core.api import PublicApi
from pixelrelay_gateway.core.auth_throttle import AuthThrottle
from pixelrelay_gateway.core.authenticator import Authenticator
from pixelrelay_gateway.core.sessions import Sessions
from pixelrelay_gateway.http import openai_api, reapi
from pixelrelay_gateway.http.admin import admin_router
from pixelrelay_gateway.http.errors import render_error
from pixelrelay_gateway.http.hot_routes import HotRoutes
from pixelrelay_gateway.http.middleware import RequestContext
from pixelrelay_gateway.http.openai_api import openai_router
from pixelrelay_gateway.http.pages import pages_router
from pixelrelay_gateway.http.reapi import reapi_router
from pixelrelay_gateway.http.sessions import sessions_router


def create_app(
    api: PublicApi,
    authenticator: Authenticator,
    billing_admin: AdminAccess | None = None,
    stream_keepalive_seconds: float = openai_api.KEEPALIVE_SECONDS,
    sessions: Sessions | None = None,
    secure_cookie: bool = True,
) -> FastAPI:
    app = FastAPI(
        title="PixelRelay API",
        version="1",
        description="Async image generation (GPT Image 2), compatible with reAPI's API. "
        "Submit a task, then poll it.",
        docs_url=None,
        redoc_url=None,
        # Starlette's slash redirect builds its Location from the Host header
        # (`GET /docs/` with `Host: evil.example` went to http://evil.example/docs); the
        # pages redirect their slashed paths themselves, relatively (pages.py).
        redirect_slashes=False,
    )

    async def on_error(request: Request, exc: Exception) -> Response:
        request_id = str(getattr(request.state, "request_id", "")) or f"req_{random_token(16)}"
        return render_error(
            exc, request_id, request.headers.get("content-type", ""), request.url.path
        )

    # ApiError by name: a handler for Exception alone runs in Starlette's outermost
    # middleware, which re-raises after answering.
    for raised in (ApiError, RequestValidationError, StarletteHTTPException, Exception):
        app.add_exception_handler(raised, on_error)

    app.state.admin = billing_admin
    reapi_routes = reapi_router(api, authenticator)
    app.include_router(reapi_routes)
    openai_routes = openai_router(api, authenticator, stream_keepalive_seconds)
    app.include_router(openai_routes)
    # For HotRoutes: included routers stay opaque.
    app.state.hot_routes = reapi_routes.routes + openai_routes.routes
    app.include_router(admin_router())
    if sessions is not None:
        app.include_router(sessions_router(sessions, secure_cookie))
    app.include_router(pages_router())

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:  # the liveness probe: the process answers
        return {"status": "ok"}

    app.openapi = lambda: _spec(app)  # type: ignore[method-assign]
    return app


def _spec(app: FastAPI) -> dict[str, Any]:
    """FastAPI's spec, less its 422 validation answers: a request that fails validation
    answers 400 with our envelope."""
    if app.openapi_schema is None:
        spec = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        for methods in spec["paths"].values():
            for op in methods.values():
                if op["responses"].get("422", {}).get("description") == "Validation Error":
                    del op["responses"]["422"]
                _bearer_security(op)
        spec["components"]["securitySchemes"] = {
            BEARER: {
                "type": "http",
                "scheme": "bearer",
                "description": "An API key (`pr_live_…`); on /admin/v1, the operator's token. "
                "The console's pages use the session cookie instead (/api/v1/auth).",
            }
        }
        for name in ("HTTPValidationError", "ValidationError"):
            spec["components"]["schemas"].pop(name, None)
        app.openapi_schema = spec
    return app.openapi_schema


BEARER = "bearer"


def _bearer_security(op: dict[str, Any]) -> None:
    """The Authorization header as the bearer scheme it is: OpenAPI ignores a header
    parameter of that name, so tools (the /docs page's Authorize, generators) saw none."""
    params = op.get("parameters", [])
    kept = [p for p in params if not (p["in"] == "header" and p["name"].lower() == "authorization")]
    if len(kept) == len(params):
        return
    if kept:
        op["parameters"] = kept
    else:
        del op["parameters"]
    op["security"] = [{BEARER: []}]


def asgi_app(
    api: PublicApi,
    authenticator: Authenticator,
    admin: AdminAccess | None,
    *,
    max_body_bytes: int,
    max_upload_bytes: int,
    max_edit_bytes: int,
    throttle: AuthThrottle,
    stream_keepalive_seconds: float = openai_api.KEEPALIVE_SECONDS,
    sessions: Sessions | None = None,
    secure_cookie: bool = True,
) -> ASGIApp:
    app = HotRoutes(
        create_app(api, authenticator, admin, stream_keepalive_seconds, sessions, secure_cookie)
    )
    file_limits = {reapi.UPLOADS: max_upload_bytes, openai_api.EDITS: max_edit_bytes}
    return RequestContext(app, max_body_bytes, file_limits, throttle, authenticator.admit)
