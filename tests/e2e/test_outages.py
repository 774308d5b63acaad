"""A component down at submit time: 503 with a stable code, nothing queued or charged."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from pixelrelay_gateway.core.authcache import TTL_SECONDS
from tests.e2e.conftest import Platform
from tests.e2e.helpers import ledger_ok, poll_until_done, upstream_requests

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
    await ledger_ok(p)


async def test_polls_go_on_while_billing_is_down(fragile_platform: Platform) -> None:
    """Every call authenticated against billing, so a billing outage made polls 503 too."""
    p = fragile_platform
    status, body = await submit(p, "polled through a billing outage")
    assert status == 200
    task = await poll_until_done(p.http, str(body["id"]), p.auth())
    dead = p.stack.kill("billing")
    try:
        await asyncio.sleep(2 * TTL_SECONDS)  # what the gateway remembers of the key is stale
        polled = await p.http.get(f"/api/v1/tasks/{task['id']}", headers=p.auth())
        listed = await p.http.get("/api/v1/tasks", headers=p.auth())
        balance = await p.http.get("/api/v1/account", headers=p.auth())
        stranger = await p.http.get(
            f"/api/v1/tasks/{task['id']}", headers=p.auth("pr_live_" + "z" * 32)
        )
    finally:
        await p.stack.revive(dead)
    assert polled.status_code == 200 and polled.json()["status"] == task["status"]
    assert listed.status_code == 200 and task["id"] in {t["id"] for t in listed.json()["data"]}
    # Only reads of one's own tasks, and only for keys billing verified before the outage.
    assert balance.status_code == 503
    assert stranger.status_code == 503
    await ledger_ok(p)


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
    # After NATS is back (a buffered publish would flush now), still nothing moved.
    await asyncio.sleep(2.0)
    assert await account(p) == before
    assert await tasks(p) == before_tasks
    await ledger_ok(p)


async def test_a_submit_refused_while_the_bus_is_down_never_runs(
    fragile_platform: Platform,
) -> None:
    """The refused job's publish sat in the client's buffer and was flushed when NATS came
    back: the upstream was paid for a task the client was told had failed."""
    p = fragile_platform
    refused = f"refused while the bus is down {uuid.uuid4().hex}"
    before = await account(p)
    dead = p.stack.kill("nats")
    try:
        status, _ = await submit(p, refused)
    finally:
        await p.stack.revive(dead)
    assert status == 503
    # A task submitted after the bus is back completes: every job queued before it
    # (the refused one too, had it been queued) has been taken by then.
    status, body = await submit(p, "after the bus is back")
    assert status == 200
    done = await poll_until_done(p.http, str(body["id"]), p.auth())
    assert done["status"] == "completed"
    await asyncio.sleep(1.0)  # a job taken just before is given time to reach the upstream
    assert await upstream_requests(p, refused) == 0
    after = await account(p)
    assert after["balance"] == before["balance"] - done["credits"]["charged"]  # type: ignore[operator,index]
    assert after["held"] == 0
    await ledger_ok(p)


async def test_an_object_store_that_comes_back_empty_is_healed_without_a_restart(
    fragile_platform: Platform,
) -> None:
    """Once, storage made its bucket only at start: an S3 endpoint that came back empty
    failed every job with storage_failed until storage was restarted."""
    p = fragile_platform
    s3 = p.config.object_store()
    for obj in s3.list_objects("pixelrelay", recursive=True):
        s3.remove_object("pixelrelay", obj.object_name)
    s3.remove_bucket("pixelrelay")
    status, body = await submit(p, "after the bucket vanished")
    assert status == 200
    done = await poll_until_done(p.http, str(body["id"]), p.auth())
    assert done["status"] == "completed", done
    assert s3.bucket_exists("pixelrelay")
    await ledger_ok(p)
