"""Billing through the public and admin APIs, under concurrency and crashes."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
import uuid
from collections.abc import Iterator
from typing import Any

import grpc
import httpx
import pytest
from sqlalchemy import text

from pixelrelay.db import Database
from pixelrelay.v1 import public_api_pb2, public_api_pb2_grpc
from pixelrelay_gateway.core.authcache import TTL_SECONDS
from tests.e2e.conftest import SUBMIT_HOLD_SECONDS, Platform
from tests.e2e.helpers import (
    admin,
    faults,
    ledger_ok,
    new_account,
    poll_until_done,
    upstream_requests,
)

pytestmark = pytest.mark.e2e

BASIC = {"model": "gpt-image-2", "prompt": "billing"}


async def account(platform: Platform, key: str | None = None) -> dict[str, Any]:
    return dict((await platform.http.get("/api/v1/account", headers=platform.auth(key))).json())


async def concurrent_submits(platform: Platform, k: int, n: int) -> None:
    key = await new_account(platform, 7 * k)
    statuses = await asyncio.gather(
        *(
            platform.http.post(
                "/api/v1/images/generations",
                headers=platform.auth(key),
                json={**BASIC, "prompt": f"race {i}"},
            )
            for i in range(n)
        )
    )
    codes = sorted(r.status_code for r in statuses)
    assert codes == [200] * k + [402] * (n - k)
    refusals = [r.json()["error"] for r in statuses if r.status_code == 402]
    assert all(e["code"] == 30001 for e in refusals)
    # billing's hold says the price and what is left (0 once the k tasks hold the rest)
    assert all(e["message"] == "this request costs 7 credits; the balance is 0" for e in refusals)
    listing = (
        await platform.http.get("/api/v1/tasks?limit=100", headers=platform.auth(key))
    ).json()
    assert len(listing["data"]) == k
    for task in listing["data"]:
        await poll_until_done(platform.http, task["id"], platform.auth(key))
    assert (await account(platform, key))["balance"] == 0
    await ledger_ok(platform)


async def test_concurrent_submits_never_overspend(platform: Platform) -> None:
    await concurrent_submits(platform, k=5, n=40)


async def test_concurrent_submits_never_overspend_on_postgres(postgres_platform: Platform) -> None:
    await concurrent_submits(postgres_platform, k=5, n=40)


async def assert_refused_after_the_cache_ttl(platform: Platform, key: str) -> None:
    """A revoked key may work only as long as the gateway's cache remembers it: every
    request sent once TTL_SECONDS have passed since the revocation is refused. Judged by
    when each request was sent, so a slow machine cannot fail it."""
    revoked_at = time.monotonic()
    while True:
        sent_at = time.monotonic()
        response = await platform.http.get("/api/v1/account", headers=platform.auth(key))
        late = sent_at - revoked_at >= TTL_SECONDS
        if response.status_code == 401 and late:
            return
        assert response.status_code in (200, 401), response.text
        assert not late, f"a request sent {sent_at - revoked_at:.2f} s after revocation passed"
        await asyncio.sleep(0.05)


async def test_client_key_management(platform: Platform) -> None:
    created = await platform.http.post(
        "/api/v1/keys", headers=platform.auth(), json={"name": "ci", "credit_limit": 7}
    )
    assert created.status_code == 200, created.text
    secret, key = created.json()["api_key"], created.json()["key"]
    assert secret.startswith("pr_live_") and key["last4"] == secret[-4:]
    listed = (await platform.http.get("/api/v1/keys", headers=platform.auth())).json()["data"]
    assert key["id"] in {k["id"] for k in listed}
    assert all("api_key" not in k and secret not in str(k) for k in listed)

    first = await platform.http.post(
        "/api/v1/images/generations", headers=platform.auth(secret), json=BASIC
    )
    assert first.status_code == 200
    over = await platform.http.post(
        "/api/v1/images/generations", headers=platform.auth(secret), json=BASIC
    )
    assert over.status_code == 402 and over.json()["error"]["code"] == 30004

    revoked = await platform.http.delete(f"/api/v1/keys/{key['id']}", headers=platform.auth())
    assert revoked.status_code == 200 and revoked.json()["revoked_at"]
    await assert_refused_after_the_cache_ttl(platform, secret)

    missing = await platform.http.delete("/api/v1/keys/key_nope", headers=platform.auth())
    assert missing.status_code == 404 and missing.json()["error"]["code"] == 40007


async def test_usage_lists_the_ledger_entries_of_each_task(platform: Platform) -> None:
    key = await new_account(platform, 100)
    submitted = await platform.http.post(
        "/api/v1/images/generations", headers=platform.auth(key), json=BASIC
    )
    task = await poll_until_done(platform.http, submitted.json()["id"], platform.auth(key))
    usage = (await platform.http.get("/api/v1/usage", headers=platform.auth(key))).json()
    mine = [e for e in usage["data"] if e["task_id"] == task["id"]]
    assert sorted((e["kind"], e["book"], e["amount"]) for e in mine) == [
        ("capture", "held", -7),  # charged in full: nothing back, no "capture available 0"
        ("reserve", "available", -7),
        ("reserve", "held", 7),
    ]
    assert usage["data"][-1]["kind"] == "signup_grant"
    page = (await platform.http.get("/api/v1/usage?limit=1", headers=platform.auth(key))).json()
    assert len(page["data"]) == 1 and page["next_cursor"]


async def test_a_cheaper_tier_is_charged_under_its_price_and_the_rest_refunded(
    platform: Platform,
) -> None:
    """quality=auto is held at high (2 x 186) and charged at the tier the upstream reports
    (the simulator: medium, 2 x 47): the task names that price, and the usage shows the
    capture and a refund of the rest, not a capture that credits the balance."""
    key = await new_account(platform, 1000)
    submitted = await platform.http.post(
        "/api/v1/images/generations",
        headers=platform.auth(key),
        json={"model": "gpt-image-2-official", "prompt": "tiers", "quality": "auto", "n": 2},
    )
    task = await poll_until_done(platform.http, submitted.json()["id"], platform.auth(key))
    assert task["credits"] == {
        "reserved": 372,
        "charged": 94,
        "settled": True,
        "price_id": "stable-medium",
    }
    usage = (await platform.http.get("/api/v1/usage", headers=platform.auth(key))).json()
    mine = [e for e in usage["data"] if e["task_id"] == task["id"]]
    assert sorted((e["kind"], e["book"], e["amount"], e["memo"]) for e in mine) == [
        ("capture", "held", -94, "stable-medium"),
        ("refund", "available", 278, "stable-medium"),
        ("refund", "held", -278, "stable-medium"),
        ("reserve", "available", -372, None),
        ("reserve", "held", 372, None),
    ]
    assert (await account(platform, key))["balance"] == 1000 - 94
    await ledger_ok(platform)

    # The same task as a person reads it: one line, over REST and over gRPC alike.
    lines = await platform.http.get("/api/v1/usage/tasks", headers=platform.auth(key))
    assert lines.status_code == 200, lines.text
    (line,) = lines.json()["data"]
    assert line == {
        "task_id": task["id"],
        "created_at": task["created_at"],
        "model": "gpt-image-2-official",
        "size": task["params"]["size"],
        "resolution": "1k",
        "n": 2,
        "quality": "auto",
        "reserved": 372,
        "charged": 94,
        "refunded": 278,
        "status": "completed",
        "price_id": "stable-medium",
    }
    async with grpc.aio.insecure_channel(f"127.0.0.1:{platform.config.grpc_port}") as channel:
        reply = await public_api_pb2_grpc.PublicApiStub(channel).ListTaskUsage(
            public_api_pb2.ListTaskUsageRequest(),
            metadata=(("authorization", f"Bearer {key}"),),
        )
    assert [(u.task_id, u.charged, u.refunded) for u in reply.tasks] == [(task["id"], 94, 278)]


async def test_usage_per_task_pages_and_needs_billing_read(platform: Platform) -> None:
    key = await new_account(platform, 100)
    ids = []
    for i in range(3):
        submitted = await platform.http.post(
            "/api/v1/images/generations",
            headers=platform.auth(key),
            json={**BASIC, "prompt": f"usage line {i}"},
        )
        ids.append(submitted.json()["id"])
    seen: list[str] = []
    cursor: str | None = ""
    while cursor is not None:
        page = await platform.http.get(
            "/api/v1/usage/tasks", params={"limit": 2, "cursor": cursor}, headers=platform.auth(key)
        )
        assert page.status_code == 200, page.text
        seen += [line["task_id"] for line in page.json()["data"]]
        cursor = page.json()["next_cursor"]
    assert seen == ids[::-1]

    assert (await platform.http.get("/api/v1/usage/tasks")).status_code == 401
    reader = await platform.http.post(
        "/api/v1/keys", headers=platform.auth(key), json={"scopes": ["read"]}
    )
    refused = await platform.http.get(
        "/api/v1/usage/tasks", headers=platform.auth(reader.json()["api_key"])
    )
    assert refused.status_code == 403, refused.text
    later = int(time.time()) + 3600
    empty = (
        await platform.http.get(f"/api/v1/usage?since={later}", headers=platform.auth(key))
    ).json()
    assert empty["data"] == []


async def test_rate_limited_keys_get_429_with_retry_after(platform: Platform) -> None:
    created = (
        await platform.http.post("/api/v1/keys", headers=platform.auth(), json={"rate_limit": 3})
    ).json()
    statuses = [
        (await platform.http.get("/api/v1/account", headers=platform.auth(created["api_key"])))
        for _ in range(4)
    ]
    assert [r.status_code for r in statuses] == [200, 200, 200, 429]
    assert statuses[-1].json()["error"]["code"] == 50001
    assert int(statuses[-1].headers["retry-after"]) >= 1


async def test_admin_api(platform: Platform) -> None:
    http = platform.http
    created = await http.post(
        "/admin/v1/accounts", headers=admin(platform), json={"name": "acme", "grant": 0}
    )
    assert created.status_code == 200, created.text
    account_id = created.json()["id"]
    topped = await http.post(
        f"/admin/v1/accounts/{account_id}/top-ups",
        headers=admin(platform),
        json={"amount": 500, "reason": "invoice 7"},
    )
    assert topped.json()["balance"] == 500
    adjusted = await http.post(
        f"/admin/v1/accounts/{account_id}/adjustments",
        headers=admin(platform),
        json={"amount": -20, "reason": "fix"},
    )
    assert adjusted.json()["balance"] == 480
    key = await http.post(
        f"/admin/v1/accounts/{account_id}/keys", headers=admin(platform), json={"name": "server"}
    )
    secret = key.json()["api_key"]
    assert (await account(platform, secret))["balance"] == 480
    ledger = (
        await http.get(f"/admin/v1/accounts/{account_id}/ledger", headers=admin(platform))
    ).json()["data"]
    assert [(e["kind"], e["memo"]) for e in ledger] == [
        ("adjustment", "fix"),
        ("top_up", "invoice 7"),
    ]
    revoked = await http.delete(
        f"/admin/v1/keys/{key.json()['key']['id']}", headers=admin(platform)
    )
    assert revoked.status_code == 200
    await assert_refused_after_the_cache_ttl(platform, secret)
    await ledger_ok(platform)


@pytest.mark.parametrize(
    ("path", "body", "status", "code"),
    [
        ("/admin/v1/accounts/acct_nope/top-ups", {"amount": 5, "reason": "x"}, 404, 40002),
        ("/admin/v1/accounts/{acct}/top-ups", {"amount": 0, "reason": "x"}, 400, 30003),
        ("/admin/v1/accounts/{acct}/top-ups", {"amount": -5, "reason": "x"}, 400, 30003),
        ("/admin/v1/accounts/{acct}/top-ups", {"amount": 10**10, "reason": "x"}, 400, 20003),
        ("/admin/v1/accounts/{acct}/top-ups", {"amount": 5}, 400, 20002),
        ("/admin/v1/accounts/{acct}/adjustments", {"amount": -(10**6), "reason": "x"}, 400, 30003),
    ],
)
async def test_admin_refuses_bad_movements_and_writes_nothing(
    platform: Platform, path: str, body: dict[str, Any], status: int, code: int
) -> None:
    acct = (
        await platform.http.post(
            "/admin/v1/accounts", headers=admin(platform), json={"name": "x", "grant": 10}
        )
    ).json()["id"]
    response = await platform.http.post(path.format(acct=acct), headers=admin(platform), json=body)
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code
    again = await platform.http.get(f"/admin/v1/accounts/{acct}", headers=admin(platform))
    assert again.json()["balance"] == 10


@pytest.mark.security
@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "Bearer wrong-token",
        "Basic abc",
        "{admin}",  # the right token without its scheme
        "Bearer {gateway}",  # a service's credential is not an admin's
        "Bearer {dispatcher}",
        "Bearer {api_key}",
    ],
)
async def test_admin_needs_the_admin_token(platform: Platform, authorization: str | None) -> None:
    credentials = {**platform.config.credentials, "api_key": platform.api_key}
    headers = {"Authorization": authorization.format(**credentials)} if authorization else {}
    before = await account(platform)
    for method, path, body in [
        ("GET", "/admin/v1/ledger/check", None),
        # the gateway may read accounts; billing tells its credential from an admin's
        ("GET", f"/admin/v1/accounts/{platform.account_id}", None),
        (
            "POST",
            f"/admin/v1/accounts/{platform.account_id}/top-ups",
            {"amount": 1000, "reason": "free"},
        ),
        ("GET", f"/admin/v1/accounts/{platform.account_id}/export", None),
        ("POST", f"/admin/v1/accounts/{platform.account_id}/delete", {"reason": "no"}),
    ]:
        response = await platform.http.request(method, path, headers=headers, json=body)
        assert response.status_code == 401, (path, response.text)
        assert response.json()["error"]["code"] == 10003
    assert await account(platform) == before


async def wait_for_balance(platform: Platform, key: str, expected: dict[str, int]) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        now = await account(platform, key)
        if {k: now[k] for k in expected} == expected:
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"balance stayed {now}, expected {expected}")


async def released_within_the_submit_deadline(p: Platform, key: str) -> None:
    """The hold is seen first (so the test cannot pass with no hold at all), then the
    sweeper releases it after the submit's short deadline, not the task's hour."""
    assert (await account(p, key))["held"] == 7
    started = time.monotonic()
    await wait_for_balance(p, key, {"balance": 100, "held": 0})
    assert time.monotonic() - started < SUBMIT_HOLD_SECONDS + 2
    usage = (await p.http.get("/api/v1/usage", headers=p.auth(key))).json()["data"]
    assert sorted(e["kind"] for e in usage if e["book"] == "held") == ["release", "reserve"]


async def test_billing_dies_between_reserve_and_publish(fragile_platform: Platform) -> None:
    p = fragile_platform
    key = await new_account(p, 100)
    p.arm("billing.after_reserve")
    response = await p.http.post("/api/v1/images/generations", headers=p.auth(key), json=BASIC)
    assert response.status_code == 503  # the hold committed, the answer never came
    assert await p.stack.revive_crashed("billing") == 137
    await released_within_the_submit_deadline(p, key)
    assert (await p.http.get("/api/v1/tasks", headers=p.auth(key))).json()["data"] == []
    await ledger_ok(p)


@pytest.mark.parametrize("point", ["gateway.after_reserve", "gateway.before_publish"])
async def test_gateway_dies_between_reserve_and_publish(
    fragile_platform: Platform, point: str
) -> None:
    """Once, such a hold froze the credits for the task's hour (HOLD_TTL_SECONDS)."""
    p = fragile_platform
    key = await new_account(p, 100)
    p.arm(point)
    with pytest.raises(httpx.HTTPError):
        await p.http.post("/api/v1/images/generations", headers=p.auth(key), json=BASIC)
    assert await p.stack.revive_crashed("gateway") == 137
    await released_within_the_submit_deadline(p, key)
    listed = (await p.http.get("/api/v1/tasks", headers=p.auth(key))).json()["data"]
    if point == "gateway.before_publish":  # recorded, never queued: failed, refunded
        assert [(t["status"], t["error"]["type"]) for t in listed] == [("failed", "task_expired")]
    else:
        assert listed == []
    await ledger_ok(p)


async def test_a_queued_task_outlives_the_submit_deadline(fragile_platform: Platform) -> None:
    """Once its job is queued, a task's hold has the task's deadline: a generation slower
    than the submit's short one completes and is charged."""
    p = fragile_platform
    key = await new_account(p, 100)
    prompt = f"slower than the submit deadline {uuid.uuid4().hex}"
    await faults(p, {"kind": "latency", "seconds": SUBMIT_HOLD_SECONDS + 2, "match": prompt})
    try:
        submitted = await p.http.post(
            "/api/v1/images/generations", headers=p.auth(key), json={**BASIC, "prompt": prompt}
        )
        task = await poll_until_done(p.http, submitted.json()["id"], p.auth(key))
    finally:
        await faults(p)
    assert (task["status"], task["credits"]["charged"]) == ("completed", 7)
    await wait_for_balance(p, key, {"balance": 93, "held": 0})
    await ledger_ok(p)


async def test_a_job_waiting_in_the_queue_past_the_submit_deadline_keeps_its_hold(
    fragile_platform: Platform,
) -> None:
    """No dispatcher takes the job for longer than the submit deadline: billing's sweeper
    finds it still in the work queue and gives its hold the task's deadline, so the job
    runs and is charged once a dispatcher is back, instead of the sweeper failing it."""
    p = fragile_platform
    key = await new_account(p, 100)
    dispatchers = [c.process for c in p.stack.children if c.name.startswith("dispatcher")]
    for process in dispatchers:
        os.kill(process.pid, signal.SIGSTOP)
    try:
        submitted = await p.http.post("/api/v1/images/generations", headers=p.auth(key), json=BASIC)
        assert submitted.status_code == 200, submitted.text
        await asyncio.sleep(SUBMIT_HOLD_SECONDS + 2)  # the sweeper runs every 0.5 s here
        assert (await account(p, key))["held"] == 7
    finally:
        for process in dispatchers:
            os.kill(process.pid, signal.SIGCONT)
    task = await poll_until_done(p.http, submitted.json()["id"], p.auth(key))
    assert (task["status"], task["credits"]["charged"]) == ("completed", 7)
    await wait_for_balance(p, key, {"balance": 93, "held": 0})
    await ledger_ok(p)


async def test_a_hold_that_expires_while_its_job_runs_is_settled_once(
    expiring_platform: Platform,
) -> None:
    await hold_expires_while_its_job_runs(expiring_platform)


async def hold_expires_while_its_job_runs(p: Platform) -> None:
    """The upstream takes longer than the task's deadline (HOLD_TTL_SECONDS, 3 s here, from
    the submit): the sweeper announces the hold expired, billing releases it and the task
    fails; the images that arrive after are not charged, and deleted."""
    key = await new_account(p, 100)
    prompt = f"slower than its hold {uuid.uuid4().hex}"
    latency = 8.0  # well past the latest deadline (~4.5 s after the submit) and its sweep
    await faults(p, {"kind": "latency", "seconds": latency, "match": prompt})
    try:
        submitted_at = time.monotonic()
        submitted = await p.http.post(
            "/api/v1/images/generations", headers=p.auth(key), json={**BASIC, "prompt": prompt}
        )
        assert submitted.status_code == 200
        assert (await account(p, key))["held"] == 7
        task = await poll_until_done(p.http, submitted.json()["id"], p.auth(key))
        assert (task["status"], task["error"]["type"]) == ("failed", "task_expired")
        # The upstream answers, the images are stored and announced.
        await asyncio.sleep(max(0.0, submitted_at + latency + 2.0 - time.monotonic()))
    finally:
        await faults(p)
    assert await upstream_requests(p, prompt) == 1
    again = (await p.http.get(f"/api/v1/tasks/{task['id']}", headers=p.auth(key))).json()
    assert (again["status"], again["credits"]["charged"]) == ("failed", 0)
    await wait_for_balance(p, key, {"balance": 100, "held": 0})
    usage = (await p.http.get("/api/v1/usage", headers=p.auth(key))).json()["data"]
    assert sorted(e["kind"] for e in usage if e["book"] == "held") == ["release", "reserve"]
    await ledger_ok(p)


async def test_a_job_whose_hold_expired_in_the_queue_is_not_generated(
    expiring_platform: Platform,
) -> None:
    """With every dispatcher down, a queued task outlives its deadline (3 s here): the
    sweeper announces it expired and billing refunds it. When a dispatcher comes back it
    finds the task's settled event and drops the job, not generated: nobody could be
    charged for it."""
    p = expiring_platform
    key = await new_account(p, 100)
    prompt = f"outlives its hold {uuid.uuid4().hex}"
    dead = p.stack.kill("dispatcher")
    try:
        submitted = await p.http.post(
            "/api/v1/images/generations",
            headers=p.auth(key),
            json={**BASIC, "prompt": prompt},
        )
        assert submitted.status_code == 200
        task = await poll_until_done(p.http, submitted.json()["id"], p.auth(key))
        assert task["status"] == "failed" and task["error"]["type"] == "task_expired"
    finally:
        await p.stack.revive(dead)
    # The job is still queued; a task submitted now completes after it was taken.
    after = await p.http.post("/api/v1/images/generations", headers=p.auth(key), json=BASIC)
    assert (await poll_until_done(p.http, after.json()["id"], p.auth(key)))["status"] == (
        "completed"
    )
    assert await upstream_requests(p, prompt) == 0
    await wait_for_balance(p, key, {"balance": 93, "held": 0})
    await ledger_ok(p)


@pytest.mark.parametrize(
    "point", ["billing.before_capture", "billing.after_capture", "billing.after_settled"]
)
async def test_billing_dies_between_upstream_success_and_capture(
    fragile_platform: Platform, point: str
) -> None:
    p = fragile_platform
    key = await new_account(p, 100)
    p.arm(point)
    submitted = await p.http.post("/api/v1/images/generations", headers=p.auth(key), json=BASIC)
    assert submitted.status_code == 200
    assert await p.stack.revive_crashed("billing") == 137
    task = await poll_until_done(p.http, submitted.json()["id"], p.auth(key))
    assert task["status"] == "completed"
    assert task["credits"]["charged"] == 7
    await wait_for_balance(p, key, {"balance": 93, "held": 0})  # charged exactly once
    usage = (await p.http.get("/api/v1/usage", headers=p.auth(key))).json()["data"]
    captures = {e["kind"] for e in usage if e["task_id"] == task["id"]}
    assert captures == {"reserve", "capture"}
    assert sum(e["amount"] for e in usage if e["kind"] == "capture" and e["book"] == "held") == -7
    await ledger_ok(p)


@contextlib.contextmanager
def billing_writes_blocked(p: Platform) -> Iterator[None]:
    """Billing's database takes no writes until the block ends (another transaction holds
    the write lock: SQLite's, or PostgreSQL's on the ledger tables); reads go on."""
    url = p.config.database_url or f"sqlite:///{p.config.data_dir / 'billing.db'}"
    db = Database(url)
    try:
        with db.engine.connect() as holder:
            holder.begin()  # on SQLite, BEGIN IMMEDIATE: the write lock
            if url.startswith("postgresql"):
                holder.execute(text("LOCK TABLE account, hold IN EXCLUSIVE MODE"))
            try:
                yield
            finally:
                holder.rollback()
    finally:
        db.close()


async def gateway_dies_after_recording_the_settlement(p: Platform) -> None:
    """Billing's settled event is redelivered to the revived gateway: recorded once, the
    task completed and charged once."""
    key = await new_account(p, 100)
    p.arm("gateway.after_settled")
    submitted = await p.http.post("/api/v1/images/generations", headers=p.auth(key), json=BASIC)
    assert submitted.status_code == 200
    assert await p.stack.revive_crashed("gateway") == 137
    task = await poll_until_done(p.http, submitted.json()["id"], p.auth(key))
    assert (task["status"], task["credits"]["charged"]) == ("completed", 7)
    await wait_for_balance(p, key, {"balance": 93, "held": 0})
    usage = (await p.http.get("/api/v1/usage", headers=p.auth(key))).json()["data"]
    assert sorted(e["kind"] for e in usage if e["book"] == "held") == ["capture", "reserve"]
    await ledger_ok(p)


async def test_database_outage_at_reserve_is_503_and_nothing_is_charged(
    fragile_platform: Platform,
) -> None:
    await outage_at_reserve(fragile_platform)


@pytest.mark.postgres
async def test_database_outage_at_reserve_on_postgres(postgres_platform: Platform) -> None:
    await outage_at_reserve(postgres_platform)


async def outage_at_reserve(p: Platform) -> None:
    """The key is known and reads still work, so the 503 is the reserve's (this test once
    got its 503 from authentication and never reached the reserve)."""
    key = await new_account(p, 100)
    with billing_writes_blocked(p):
        listed = await p.http.get("/api/v1/tasks", headers=p.auth(key))
        assert listed.status_code == 200 and listed.json()["data"] == []  # authenticated
        response = await p.http.post("/api/v1/images/generations", headers=p.auth(key), json=BASIC)
    assert response.status_code == 503 and response.json()["error"]["code"] == 90002
    await asyncio.sleep(1.0)  # nothing moves afterwards either
    assert {k: (await account(p, key))[k] for k in ("balance", "held")} == {
        "balance": 100,
        "held": 0,
    }
    assert (await p.http.get("/api/v1/tasks", headers=p.auth(key))).json()["data"] == []
    await ledger_ok(p)


async def test_database_outage_at_capture_is_retried_and_charged_once(
    fragile_platform: Platform,
) -> None:
    await outage_at_capture(fragile_platform)


@pytest.mark.postgres
async def test_database_outage_at_capture_on_postgres(postgres_platform: Platform) -> None:
    await outage_at_capture(postgres_platform)


async def outage_at_capture(p: Platform) -> None:
    """The completed event is retried until billing can write, then charged once."""
    key = await new_account(p, 100)
    prompt = f"captured after an outage {uuid.uuid4().hex}"
    await faults(p, {"kind": "latency", "seconds": 1.0, "match": prompt})
    try:
        submitted = await p.http.post(
            "/api/v1/images/generations", headers=p.auth(key), json={**BASIC, "prompt": prompt}
        )
        assert submitted.status_code == 200
        task_id = submitted.json()["id"]
        assert (await account(p, key))["held"] == 7
        with billing_writes_blocked(p):
            await asyncio.sleep(5.0)  # the images are stored at ~1 s; every capture fails
            during = (await p.http.get(f"/api/v1/tasks/{task_id}", headers=p.auth(key))).json()
            # The images are the client's; the charge waits for billing (the settled event).
            assert (during["status"], during["credits"]["settled"]) == ("completed", False)
            assert await upstream_requests(p, prompt) == 1
    finally:
        await faults(p)
    task = await poll_until_done(p.http, task_id, p.auth(key))
    assert (task["status"], task["credits"]["charged"]) == ("completed", 7)
    await wait_for_balance(p, key, {"balance": 93, "held": 0})
    usage = (await p.http.get("/api/v1/usage", headers=p.auth(key))).json()["data"]
    assert sorted(e["kind"] for e in usage if e["book"] == "held") == ["capture", "reserve"]
    assert await upstream_requests(p, prompt) == 1
    await ledger_ok(p)


async def test_the_database_never_holds_a_plaintext_key(platform: Platform) -> None:
    created = (
        await platform.http.post("/api/v1/keys", headers=platform.auth(), json={"name": "grep me"})
    ).json()
    secret = created["api_key"].encode()
    for path in platform.config.data_dir.glob("*.db*"):  # the database and its WAL
        assert secret not in path.read_bytes(), path
    assert platform.api_key.encode() not in (platform.config.data_dir / "billing.db").read_bytes()
