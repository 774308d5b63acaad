"""The dispatcher under failure: failover, crashed workers, slow upstreams, dead letters."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter

import pytest

from tests.e2e.conftest import Platform
from tests.e2e.helpers import (
    eventually,
    faults,
    ledger_ok,
    new_account,
    poll_until_done,
    upstream_requests,
)
from tests.e2e.test_billing import gateway_dies_after_recording_the_settlement

pytestmark = pytest.mark.e2e


async def submit(platform: Platform, prompt: str, key: str | None = None) -> str:
    response = await platform.http.post(
        "/api/v1/images/generations",
        headers=platform.auth(key),
        json={"model": "gpt-image-2", "prompt": prompt},
    )
    assert response.status_code == 200, response.text
    return str(response.json()["id"])


async def revive_the_crashed_dispatcher(p: Platform) -> None:
    """Wait for a dispatcher to die at an armed crash point, and start it again."""
    deadline = time.monotonic() + 15
    dead = None
    while dead is None and time.monotonic() < deadline:
        dead = next(
            (
                c.name
                for c in p.stack.children
                if c.name.startswith("dispatcher") and c.process.poll() is not None
            ),
            None,
        )
        await asyncio.sleep(0.05)
    assert dead, "no dispatcher reached the crash point"
    assert await p.stack.revive_crashed(dead) == 137


async def test_tasks_fail_over_past_a_dead_channel(dispatch_platform: Platform) -> None:
    p = dispatch_platform
    task = await poll_until_done(p.http, await submit(p, "failover"), p.auth())
    assert task["status"] == "completed"
    attempts = [(a["channel"], a["outcome"]) for a in task["attempts"]]
    assert attempts[-1] == ("simulator", "ok")
    assert attempts[0][0] == "dead" and attempts[0][1] in ("upstream_unavailable", "skipped_open")


async def test_a_killed_dispatchers_jobs_finish_elsewhere_exactly_once(
    dispatch_platform: Platform,
) -> None:
    p = dispatch_platform
    key = await new_account(p, 1000)
    run = uuid.uuid4().hex[:8]
    await faults(p, {"kind": "latency", "seconds": 2, "match": f"KILL-{run}"})
    ids = [await submit(p, f"KILL-{run} {i}", key) for i in range(8)]

    async def all_taken() -> bool:
        tasks = [(await p.http.get(f"/api/v1/tasks/{i}", headers=p.auth(key))).json() for i in ids]
        return all(t["timings"]["queued_ms"] is not None for t in tasks)

    await eventually(all_taken, "every job taken by a dispatcher")
    victim = p.stack.kill("dispatcher")  # SIGKILL mid-call
    try:
        done = [await poll_until_done(p.http, i, p.auth(key), deadline_s=30) for i in ids]
    finally:
        await faults(p)
        await p.stack.revive(victim)
    assert [t["status"] for t in done] == ["completed"] * len(ids)
    assert [t["credits"]["charged"] for t in done] == [7] * len(ids)
    stored = Counter(
        line.split('"task_id":"')[1].split('"')[0]
        for line in (p.config.data_dir / "logs" / "storage.log").read_text().splitlines()
        if '"task images stored"' in line
    )
    assert [stored[i] for i in ids] == [1] * len(ids)  # one stored image set per task
    usage = (await p.http.get("/api/v1/usage?limit=200", headers=p.auth(key))).json()["data"]
    captures = Counter(
        e["task_id"] for e in usage if e["kind"] == "capture" and e["book"] == "held"
    )
    assert [captures[i] for i in ids] == [1] * len(ids)  # one capture per task
    await ledger_ok(p)


async def test_an_upstream_slower_than_ack_wait_is_not_redelivered(
    dispatch_platform: Platform,
) -> None:
    p = dispatch_platform
    prompt = f"SLOW-{uuid.uuid4().hex[:8]}"
    await faults(p, {"kind": "latency", "seconds": 5, "match": prompt})
    try:
        task = await poll_until_done(p.http, await submit(p, prompt), p.auth(), deadline_s=30)
    finally:
        await faults(p)
    assert task["status"] == "completed"
    assert await upstream_requests(p, prompt) == 1  # heartbeats kept it ours


async def test_a_job_that_kills_every_worker_goes_to_the_dead_letter_stream(
    dispatch_platform: Platform,
) -> None:
    p = dispatch_platform
    key = await new_account(p, 100)
    (p.config.data_dir / "crash" / "dispatcher.before_upstream").write_text("2")
    task_id = await submit(p, "poison", key)
    for _ in range(2):  # each delivery kills a dispatcher; bring it back
        await revive_the_crashed_dispatcher(p)
    task = await poll_until_done(p.http, task_id, p.auth(key), deadline_s=30)
    assert task["status"] == "failed"
    assert task["error"]["code"] == 70006 and task["error"]["type"] == "job_abandoned"
    balance = (await p.http.get("/api/v1/account", headers=p.auth(key))).json()
    assert (balance["balance"], balance["held"]) == (100, 0)
    await ledger_ok(p)


async def test_a_dispatcher_killed_after_storing_never_generates_again(
    dispatch_platform: Platform,
) -> None:
    await dispatcher_killed_after_storing(dispatch_platform)


async def test_a_gateway_killed_after_recording_a_settlement_records_it_once(
    dispatch_platform: Platform,
) -> None:
    """Here, not with billing's crash tests: the event's redelivery takes one AckWait, which
    is 2 s on this platform."""
    await gateway_dies_after_recording_the_settlement(dispatch_platform)


async def dispatcher_killed_after_storing(p: Platform) -> None:
    """Stored and announced, killed before the ack: the redelivery finds the stored set
    (and announces it again) or the hold already captured; either way the upstream is
    asked once and the task charged once. (With both checks removed, this fails.)"""
    key = await new_account(p, 100)
    prompt = f"stored, then killed before the ack {uuid.uuid4().hex}"
    p.arm("dispatcher.after_store")
    task_id = await submit(p, prompt, key)
    await revive_the_crashed_dispatcher(p)
    task = await poll_until_done(p.http, task_id, p.auth(key), deadline_s=30)
    assert (task["status"], task["credits"]["charged"]) == ("completed", 7)
    await asyncio.sleep(2 * 2 + 1)  # past the redelivery (AckWait 2 s here) and its handling
    assert await upstream_requests(p, prompt) == 1
    balance = (await p.http.get("/api/v1/account", headers=p.auth(key))).json()
    assert (balance["balance"], balance["held"]) == (93, 0)
    usage = (await p.http.get("/api/v1/usage", headers=p.auth(key))).json()["data"]
    assert sorted(e["kind"] for e in usage if e["book"] == "held") == ["capture", "reserve"]
    await ledger_ok(p)
