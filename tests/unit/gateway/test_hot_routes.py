"""Submit, poll and /v1 generate answer the same through the hot path as through FastAPI:
same status, same body, same errors (the hot path only skips FastAPI's routing)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from typing import Any, cast

import httpx
import pytest
from starlette.types import ASGIApp

from pixelrelay import catalog
from pixelrelay.errors import ApiError, E
from pixelrelay.v1 import billing_pb2, common_pb2, public_api_pb2
from pixelrelay_gateway.core.api import PublicApi
from pixelrelay_gateway.core.auth_throttle import AuthThrottle
from pixelrelay_gateway.core.authenticator import Authenticator as RealAuthenticator
from pixelrelay_gateway.http.app import create_app
from pixelrelay_gateway.http.hot_routes import HotRoutes
from pixelrelay_gateway.http.middleware import RequestContext


class Authenticator:
    """Who is calling, as a test double: the edge is what is under test."""

    async def admit(self, authorization: str | None) -> None:
        pass  # authenticate judges the key

    async def authenticate(self, authorization: str | None, scope: str) -> billing_pb2.Principal:
        if authorization != "Bearer good":
            raise ApiError(E.INVALID_API_KEY)
        return billing_pb2.Principal(account_id="acct_1", scopes=[scope])


class Api:
    """The core's answers, as a test double."""

    def __init__(self) -> None:
        self.models = catalog.load()
        self.submitted: list[public_api_pb2.CreateGenerationRequest] = []

    async def create_generation(
        self,
        request: public_api_pb2.CreateGenerationRequest,
        *,
        principal: billing_pb2.Principal,
    ) -> public_api_pb2.Task:
        self.submitted.append(request)
        spec = common_pb2.ImageSpec(model=request.model, width=1024, height=1024, n=1)
        return public_api_pb2.Task(id="task_1", model=request.model, status="processing", spec=spec)

    async def generate_images(
        self, request: public_api_pb2.GenerateImagesRequest, *, principal: billing_pb2.Principal
    ) -> AsyncGenerator[public_api_pb2.GenerationEvent]:
        task = await self.create_generation(request.request, principal=principal)
        yield public_api_pb2.GenerationEvent(accepted=task)
        yield public_api_pb2.GenerationEvent(
            image=public_api_pb2.ImageData(index=0, data=b"png", format="png")
        )
        task.status = "completed"
        task.created_at = 1
        yield public_api_pb2.GenerationEvent(settled=task)

    async def get_task(
        self, request: public_api_pb2.GetTaskRequest, *, principal: billing_pb2.Principal
    ) -> public_api_pb2.Task:
        if request.id != "task_1":
            raise ApiError(E.TASK_NOT_FOUND)
        return public_api_pb2.Task(id="task_1", model="gpt-image-2", status="processing")


def wrapped(hot: bool) -> tuple[ASGIApp, Api]:
    api, authenticator = Api(), Authenticator()
    app: ASGIApp = create_app(cast(PublicApi, api), cast(RealAuthenticator, authenticator))
    if hot:
        app = HotRoutes(cast(Any, app))
    return RequestContext(app, 1 << 20, {}, AuthThrottle(0), authenticator.admit), api


REQUESTS = [
    ("POST", "/api/v1/images/generations", {"model": "gpt-image-2", "prompt": "a fox"}, "good"),
    ("POST", "/api/v1/images/generations", {"model": "gpt-image-2", "prompt": "x"}, "bad"),
    ("POST", "/api/v1/images/generations", {"model": "gpt-image-2", "nope": 1}, "good"),
    ("POST", "/api/v1/images/generations", [1, 2], "good"),
    ("POST", "/v1/images/generations", {"model": "gpt-image-2", "prompt": "a fox"}, "good"),
    ("POST", "/v1/images/generations", {"model": "gpt-image-2", "prompt": "x"}, "bad"),
    ("POST", "/v1/images/generations", {"model": "gpt-image-2", "nope": 1}, "good"),
    ("POST", "/v1/images/generations", {"model": "gpt-image-2"}, "good"),
    ("POST", "/v1/images/generations", "not an object", "good"),
    ("GET", "/api/v1/tasks/task_1", None, "good"),
    ("GET", "/api/v1/tasks/task_2", None, "good"),
]


@pytest.mark.parametrize(("method", "path", "body", "key"), REQUESTS)
async def test_the_hot_path_answers_as_fastapi_does(
    method: str, path: str, body: object, key: str
) -> None:
    answers = []
    for hot in (False, True):
        app, api = wrapped(hot)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
            response = await client.request(
                method,
                path,
                json=body,
                headers={"Authorization": f"Bearer {key}", "Idempotency-Key": "k1"},
            )
        payload = response.json()
        if isinstance(payload.get("error"), dict) and "request_id" in payload["error"]:
            assert payload["error"].pop("request_id").startswith("req_")
        seen = [(r.prompt, r.idempotency_key) for r in api.submitted]
        headers = {k: v for k, v in response.headers.items() if k != "x-request-id"}
        answers.append((response.status_code, payload, headers, seen))
    assert answers[0] == answers[1]


async def test_the_hot_path_is_taken() -> None:
    """Without FastAPI's router, a route FastAPI would refuse still reaches the endpoint:
    proof the hot path, not FastAPI, answered."""
    app, _ = wrapped(hot=True)
    hot_routes = cast(Any, app).app
    assert isinstance(hot_routes, HotRoutes)
    cast(Any, hot_routes).app = None  # FastAPI is gone; submit and poll must not need it
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://gw"
    ) as client:
        polled = await client.get("/api/v1/tasks/task_1", headers={"Authorization": "Bearer good"})
        generated = await client.post(
            "/v1/images/generations",
            json={"model": "gpt-image-2", "prompt": "a fox"},
            headers={"Authorization": "Bearer good"},
        )
    assert polled.status_code == 200 and polled.json()["id"] == "task_1"
    assert generated.status_code == 200 and generated.json()["data"][0]["b64_json"]


@pytest.mark.timeout(30)  # it once never ended: a busy loop on an empty receive
async def test_a_streamed_generate_through_the_hot_path_ends() -> None:
    """/v1 with stream: the event stream runs to its end and the connection is let go
    (the streamed answer listens for a disconnect on the request's own receive)."""
    app, _ = wrapped(hot=True)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://gw"
    ) as client:
        answer = await asyncio.wait_for(
            client.post(
                "/v1/images/generations",
                json={"model": "gpt-image-2", "prompt": "a fox", "stream": True},
                headers={"Authorization": "Bearer good"},
            ),
            timeout=10,
        )
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/event-stream")
    assert "event: image_generation.completed" in answer.text
