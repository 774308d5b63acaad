"""A tiny HTTP server of test images, redirects and misbehaviour, counting its hits."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

from pixelrelay_sim.render import render_image
from tests.utils.servers import serving


@dataclass
class ImageServer:
    host: str
    port: int
    hits: list[str] = field(default_factory=list)
    # /slow requests being answered now and the most at once, per group (query g=…)
    in_flight: Counter[str] = field(default_factory=Counter)
    most_in_flight: Counter[str] = field(default_factory=Counter)
    files: dict[str, tuple[bytes, str]] = field(default_factory=dict)

    def url(self, path: str) -> str:
        return f"http://{self.host}:{self.port}{path}"


def _app(server: ImageServer) -> Starlette:
    async def serve(request: Request) -> Response:
        path = request.url.path
        server.hits.append(path)
        if path in server.files:
            data, content_type = server.files[path]
            return Response(data, media_type=content_type)
        if path == "/redirect":
            return RedirectResponse(request.query_params["to"], status_code=302)
        if path == "/loop":
            return RedirectResponse("/loop", status_code=302)
        if path == "/slow":
            group = request.query_params.get("g", "")
            server.in_flight[group] += 1
            server.most_in_flight[group] = max(
                server.most_in_flight[group], server.in_flight[group]
            )
            try:
                await asyncio.sleep(float(request.query_params.get("s", "5")))
            finally:
                server.in_flight[group] -= 1
            then = request.query_params.get("then", "")
            if then in server.files:  # slow, and then a real image
                data, content_type = server.files[then]
                return Response(data, media_type=content_type)
            return Response(b"")
        if path == "/chunked-big":

            async def body() -> AsyncIterator[bytes]:
                for _ in range(64):
                    yield b"\0" * 65536

            return StreamingResponse(body(), media_type="image/png")
        return Response(b"not here", status_code=404)

    return Starlette(routes=[Route("/{path:path}", serve)])


@contextlib.asynccontextmanager
async def image_server(host: str = "127.0.0.1") -> AsyncIterator[ImageServer]:
    server = ImageServer(host, 0)
    server.files["/cat.png"] = (render_image("cat", 1024, 768, "png"), "image/png")
    server.files["/cat.jpg"] = (render_image("cat", 1536, 864, "jpeg"), "image/jpeg")
    server.files["/page.html"] = (b"<html>hello</html>", "text/html")
    server.files["/fake.png"] = (b"this is not a png at all", "image/png")
    async with serving(_app(server), host) as server.port:
        yield server
