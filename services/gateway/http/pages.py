"""The gateway's web pages: the playground (``/``) and the API reference (``/docs``).

Every script and style comes from this gateway, none inline, so the pages work offline and
their content security policy allows scripts from the gateway alone. The reference is
Swagger UI 5 (it reads the OpenAPI 3.1 spec FastAPI serves; 4.x reads only 3.0), its
release files committed under ``static/vendor/swagger-ui`` (version and update steps in
its README.md there).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import Response

from pixelrelay.errors import ApiError, E

PAGES = {"/": "index.html", "/docs": "docs.html"}
ASSETS_PREFIX = "/assets/"

_STATIC = Path(__file__).parent / "static"
_SWAGGER = _STATIC / "vendor" / "swagger-ui"
_JS, _CSS = "text/javascript; charset=utf-8", "text/css; charset=utf-8"
_ASSETS = {  # name → (file, media type)
    "playground.js": (_STATIC / "playground.js", _JS),
    "docs-init.js": (_STATIC / "docs-init.js", _JS),
    "swagger-ui-bundle.js": (_SWAGGER / "swagger-ui-bundle.js", _JS),
    "swagger-ui.css": (_SWAGGER / "swagger-ui.css", _CSS),
    "favicon-32x32.png": (_SWAGGER / "favicon-32x32.png", "image/png"),
}


def _redirect_to(path: str) -> Callable[[], Awaitable[Response]]:
    async def redirect() -> Response:
        # A path, never a host: the Host header is the client's to set.
        return Response(status_code=307, headers={"location": path})

    return redirect


def pages_router() -> APIRouter:
    router = APIRouter(include_in_schema=False)
    assets = {name: (file.read_bytes(), kind) for name, (file, kind) in _ASSETS.items()}

    for path, file in PAGES.items():
        html = (_STATIC / file).read_bytes()

        async def page(html: bytes = html) -> Response:
            return Response(html, media_type="text/html; charset=utf-8")

        router.add_api_route(path, page, methods=["GET"])
        if path != "/":
            router.add_api_route(path + "/", _redirect_to(path), methods=["GET"])

    @router.get(ASSETS_PREFIX + "{name}")
    async def asset(name: str) -> Response:
        if name not in assets:
            raise ApiError(E.NOT_FOUND)
        body, kind = assets[name]
        return Response(body, media_type=kind, headers={"cache-control": "public, max-age=3600"})

    return router
