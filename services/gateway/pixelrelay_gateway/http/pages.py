"""The gateway's web pages: the playground (``/``), the console (sign-up, sign-in, the
dashboard, the operator's console) and the API reference (``/docs``).

Plain HTML, CSS and ES modules, nothing to build: every page is a file under ``static/``
and every script or stylesheet one under ``static/assets/``, served as ``/assets/<name>``.
No page has an inline script and none loads anything from another origin, so the pages
work air-gapped and their content security policy allows scripts from the gateway alone.
The reference is Swagger UI 5 (it reads the OpenAPI 3.1 spec FastAPI serves; 4.x reads
only 3.0), its release files committed under ``static/vendor/swagger-ui`` (version and
update steps in its README.md there).

The console's header (the brand, the main navigation and the ``#who`` slot each page's
script fills) is defined once, here: a page marks its place with ``<!-- header -->`` and
gets it at start, with ``aria-current="page"`` on its own link. Served as HTML, so it shows
before any script runs and needs none inline.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import Response

from pixelrelay.errors import ApiError, E

PAGES = {
    "/": "index.html",
    "/docs": "docs.html",
    "/signup": "signup.html",
    "/login": "login.html",
    "/dashboard": "dashboard.html",
    "/admin": "admin.html",
}
ASSETS_PREFIX = "/assets/"

_STATIC = Path(__file__).parent / "static"
_SWAGGER = _STATIC / "vendor" / "swagger-ui"
_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".png": "image/png",
    ".svg": "image/svg+xml",
    ".json": "application/json",
}
_VENDORED = ["swagger-ui-bundle.js", "swagger-ui.css", "favicon-32x32.png"]

HEADER_MARK = b"<!-- header -->"
NAV = [("/", "Playground"), ("/dashboard", "Dashboard"), ("/docs", "API reference")]


def header(path: str) -> bytes:
    """The console's header as the page at ``path`` shows it."""
    current = ' aria-current="page"'
    links = "".join(
        f'<a href="{href}"{current if href == path else ""}>{name}</a>' for href, name in NAV
    )
    return (
        '<header class="top">\n'
        '  <a class="brand" href="/">PixelRelay</a>\n'
        f'  <nav aria-label="Main">{links}</nav>\n'
        '  <span id="who"></span>\n'
        "</header>"
    ).encode()


def with_header(html: bytes, path: str) -> bytes:
    """The page with its header where it marks it (a page without the mark is as is)."""
    return html.replace(HEADER_MARK, header(path), 1)


def _assets() -> dict[str, tuple[bytes, str]]:
    """Name → (body, media type): every file of ``static/assets`` and the vendored
    Swagger UI files, read once at start (a fixed set: no path from a request reaches
    the file system)."""
    files = [f for f in (_STATIC / "assets").iterdir() if f.suffix in _TYPES]
    files += [_SWAGGER / name for name in _VENDORED]
    return {f.name: (f.read_bytes(), _TYPES[f.suffix]) for f in files}


def _redirect_to(path: str) -> Callable[[], Awaitable[Response]]:
    async def redirect() -> Response:
        # A path, never a host: the Host header is the client's to set.
        return Response(status_code=307, headers={"location": path})

    return redirect


def pages_router() -> APIRouter:
    router = APIRouter(include_in_schema=False)
    assets = _assets()

    for path, file in PAGES.items():
        html = with_header((_STATIC / file).read_bytes(), path)

        async def page(html: bytes = html) -> Response:
            # no-cache: a page and the assets it names change together on an upgrade
            return Response(
                html, media_type="text/html; charset=utf-8", headers={"cache-control": "no-cache"}
            )

        router.add_api_route(path, page, methods=["GET"])
        if path != "/":
            router.add_api_route(path + "/", _redirect_to(path), methods=["GET"])

    @router.get(ASSETS_PREFIX + "{name}")
    async def asset(name: str) -> Response:
        if name not in assets:
            raise ApiError(E.NOT_FOUND)
        body, kind = assets[name]
        return Response(body, media_type=kind, headers={"cache-control": "no-cache"})

    return router
