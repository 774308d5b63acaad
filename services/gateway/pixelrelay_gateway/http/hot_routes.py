"""Submit, poll and OpenAI's synchronous generate, dispatched straight to their endpoint
functions (the bench's hot paths); every other request goes through FastAPI."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TypeVar

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from fastapi.routing import APIRoute
from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.types import Receive, Scope, Send

from pixelrelay_gateway.http import openai_api, reapi
from pixelrelay_gateway.http.errors import render_error, validation_error
from pixelrelay_gateway.http.schemas import GenerationBody

M = TypeVar("M", bound=BaseModel)

# A task's path up to its id: /api/v1/tasks/
TASK_PREFIX = reapi.TASK.removesuffix("{task_id}")


class HotRoutes:
    """Submit, poll and ``/v1`` generate dispatched straight to their FastAPI endpoints.

    On these routes FastAPI's router, dependency solving and exception middlewares cost
    more CPU than the work itself (docs/benchmarks.md). The endpoints, the body models,
    the error envelopes and the spec are the same ones FastAPI uses; a request that is not
    plain JSON goes through FastAPI as before.
    """

    def __init__(self, app: FastAPI):
        self.app = app
        routes = {
            (r.path, method): r
            for r in app.state.hot_routes
            if isinstance(r, APIRoute)
            for method in r.methods or ()
        }
        self.submit = routes[(reapi.GENERATIONS, "POST")]
        self.generate = routes[(openai_api.GENERATIONS, "POST")]
        self.poll = routes[(reapi.TASK, "GET")]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path, method = scope.get("path", ""), scope.get("method")
        if method == "POST" and path == reapi.GENERATIONS and _is_json(scope):
            scope["route"] = self.submit
            await self._answer(scope, receive, send, self._submit(scope, receive))
        elif method == "POST" and path == openai_api.GENERATIONS and _is_json(scope):
            scope["route"] = self.generate
            await self._answer(scope, receive, send, self._generate(scope, receive))
        elif method == "GET" and _one_segment(path, TASK_PREFIX):
            scope["route"] = self.poll
            call = self.poll.endpoint(path[len(TASK_PREFIX) :], _header(scope, b"authorization"))
            await self._answer(scope, receive, send, call)
        else:
            await self.app(scope, receive, send)

    async def _submit(self, scope: Scope, receive: Receive) -> Response:
        body = await _json_body(receive, GenerationBody)
        response: Response = await self.submit.endpoint(
            body, _header(scope, b"authorization"), _header(scope, b"idempotency-key")
        )
        return response

    async def _generate(self, scope: Scope, receive: Receive) -> Response:
        body = await _json_body(receive, openai_api.OpenAIGenerationBody)
        # The endpoint reads headers off the request; its body has been read here.
        request = Request(scope, receive)
        response: Response = await self.generate.endpoint(
            body, request, _header(scope, b"authorization")
        )
        return response

    async def _answer(
        self, scope: Scope, receive: Receive, send: Send, call: Awaitable[Response]
    ) -> None:
        try:
            response = await call
        except Exception as exc:
            response = render_error(exc, scope["state"]["request_id"], path=scope["path"])
        # The real receive, its body already read: a streamed answer (/v1 with stream)
        # listens on it for the client going away.
        await response(scope, receive, send)


async def _json_body(receive: Receive, model: type[M]) -> M:
    """The whole body, validated as FastAPI would (its error locations included)."""
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            break
    try:
        return model.model_validate_json(b"".join(chunks))
    except ValidationError as exc:
        errors = [{**e, "loc": ("body", *e["loc"])} for e in exc.errors()]
        raise validation_error(RequestValidationError(errors)) from None


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
