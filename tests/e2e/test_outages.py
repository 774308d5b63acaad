"""A component down at submit time: 503 with a stable code, nothing queued or charged."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import Platform
from tests.e2e.helpers import poll_until_done

pytestmark = pytest.mark.e2e


async def submit(platform: Platform, prompt: str) -> tuple[int, dict[str, object]]:
    response = await platform.http.post(
        "/api/v1/images/generations",
        headers=platform.auth(),
        json={"model": "gpt-image-2", "prompt": prompt},
    )
    return response.status_code, response.json()


async def account(platform: Platform) -> dict[str, object]:
    return dict((await platform.http.get("/api/v1/account", headers=platform.auth())).json())


async def tasks(platform: Platform) -> list[object]:
    page = (await platform.http.get("/api/v1/tasks", headers=platform.auth())).json()
    return list(page["data"])


async def test_billing_down_is_503_and_nothing_is_queued(fragile_platform: Platform) -> None:
    p = fragile_platform
    before_tasks = await tasks(p)
    dead = p.stack.kill("billing")
    try:
        status, body = await submit(p, "billing is down")
    finally:
        await p.stack.revive(dead)
    assert status == 503
    assert body["error"]["code"] == 90002  # type: ignore[index]
    assert await tasks(p) == before_tasks
    status, body = await submit(p, "billing is back")
    assert status == 200
    done = await poll_until_done(p.http, str(body["id"]), p.auth())
    assert done["status"] == "completed"


async def test_bus_down_is_503_and_the_hold_is_released(fragile_platform: Platform) -> None:
    p = fragile_platform
    before = await account(p)
    before_tasks = await tasks(p)
    dead = p.stack.kill("nats")
    try:
        status, body = await submit(p, "the bus is down")
    finally:
        await p.stack.revive(dead)
    assert status == 503
    assert body["error"]["code"] == 90002  # type: ignore[index]
    assert await account(p) == before
    assert await tasks(p) == before_tasks
