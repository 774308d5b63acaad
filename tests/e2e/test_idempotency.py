"""Idempotency-Key on submits: a repeat gets the first task, charged once."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Mapping

import httpx
import pytest

from tests.e2e.conftest import Platform
from tests.e2e.helpers import ledger_ok, new_account, poll_until_done
from tests.integration.image_server import image_server

pytestmark = pytest.mark.e2e

BODY = {"model": "gpt-image-2", "prompt": "the same, twice"}


async def submit(
    platform: Platform, key: str, idempotency_key: str, body: Mapping[str, object] = BODY
) -> httpx.Response:
    return await platform.http.post(
        "/api/v1/images/generations",
        headers={**platform.auth(key), "Idempotency-Key": idempotency_key},
        json=body,
    )


async def test_a_repeat_answers_the_first_task_charged_once(platform: Platform) -> None:
    key = await new_account(platform, 100)
    idem = str(uuid.uuid4())
    first = await submit(platform, key, idem)
    assert first.status_code == 200, first.text
    again = await submit(platform, key, idem)
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
    task = await poll_until_done(platform.http, first.json()["id"], platform.auth(key))
    after = await submit(platform, key, idem)  # after it finished, too
    assert after.json()["id"] == task["id"]
    listed = await platform.http.get("/api/v1/tasks", headers=platform.auth(key))
    assert [t["id"] for t in listed.json()["data"]] == [task["id"]]
    account = (await platform.http.get("/api/v1/account", headers=platform.auth(key))).json()
    assert (account["balance"], account["held"]) == (100 - task["credits"]["charged"], 0)

    other = await submit(platform, key, idem, {**BODY, "prompt": "something else"})
    assert other.status_code == 422 and other.json()["error"]["code"] == 20015
    fresh = await submit(platform, key, str(uuid.uuid4()))
    assert fresh.status_code == 200 and fresh.json()["id"] != task["id"]


async def test_a_repeat_while_the_first_runs_is_409_and_a_refusal_frees_the_key(
    platform: Platform,
) -> None:
    key = await new_account(platform, 100)
    async with image_server() as images:
        slow = {**BODY, "image_urls": [images.url("/slow?s=2&then=/cat.png")]}
        idem = str(uuid.uuid4())
        first = asyncio.create_task(submit(platform, key, idem, slow))
        await asyncio.sleep(0.5)
        meanwhile = await submit(platform, key, idem, slow)
        assert meanwhile.status_code == 409 and meanwhile.json()["error"]["code"] == 20016
        assert (await first).status_code == 200

        broken = {**BODY, "image_urls": [images.url("/missing.png")]}
        refused_key = str(uuid.uuid4())
        assert (await submit(platform, key, refused_key, broken)).status_code == 422
        retried = await submit(platform, key, refused_key, broken)  # not 409: key was freed
        assert retried.status_code == 422 and retried.json()["error"]["code"] == 20008


async def crash_after_the_hold(p: Platform, key: str, idem: str) -> None:
    """The gateway dies after the hold, before the job is queued: the client sees a dropped
    connection, and retries with the same key once the first is past its in-flight time
    (IDEMPOTENCY_IN_FLIGHT_SECONDS: 2 on these platforms)."""
    p.arm("gateway.after_reserve")
    with pytest.raises(httpx.HTTPError):
        await submit(p, key, idem)
    assert await p.stack.revive_crashed("gateway") == 137
    await asyncio.sleep(2.5)


async def test_a_retry_after_the_gateway_died_holding_credits_makes_one_task(
    fragile_platform: Platform,
) -> None:
    """The retry finishes that submit with the same task id and the same hold."""
    p = fragile_platform
    key = await new_account(p, 100)
    idem = str(uuid.uuid4())
    await crash_after_the_hold(p, key, idem)
    retried = await submit(p, key, idem)
    assert retried.status_code == 200, retried.text
    task = await poll_until_done(p.http, retried.json()["id"], p.auth(key))
    assert task["status"] == "completed"
    usage = (await p.http.get("/api/v1/usage", headers=p.auth(key))).json()["data"]
    assert sorted(e["kind"] for e in usage if e["book"] == "held") == ["capture", "reserve"]
    account = (await p.http.get("/api/v1/account", headers=p.auth(key))).json()
    assert (account["balance"], account["held"]) == (100 - task["credits"]["charged"], 0)
    await ledger_ok(p)


async def test_a_retry_after_the_first_hold_expired_starts_afresh(
    expiring_platform: Platform,
) -> None:
    """Holds last 3 s here: the first attempt's hold is released by the sweeper before the
    retry, which then makes a new task (charged once; the first hold refunded)."""
    p = expiring_platform
    key = await new_account(p, 100)
    idem = str(uuid.uuid4())
    await crash_after_the_hold(p, key, idem)
    await asyncio.sleep(2.0)  # the sweeper releases the 3 s hold
    retried = await submit(p, key, idem)
    assert retried.status_code == 200, retried.text
    task = await poll_until_done(p.http, retried.json()["id"], p.auth(key))
    assert task["status"] == "completed"
    account = (await p.http.get("/api/v1/account", headers=p.auth(key))).json()
    assert (account["balance"], account["held"]) == (100 - task["credits"]["charged"], 0)
    await ledger_ok(p)
