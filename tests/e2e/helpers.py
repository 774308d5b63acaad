from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import orjson

from tests.e2e.conftest import Platform


async def eventually(
    check: Callable[[], Awaitable[object]], what: str, within: float = 30.0
) -> None:
    """Wait for a condition, not for a time: returns as soon as ``check()`` is truthy."""
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {within:.0f} s")
        await asyncio.sleep(0.05)


async def poll_until_done(
    http: httpx.AsyncClient, task_id: str, headers: dict[str, str], deadline_s: float = 60.0
) -> dict[str, Any]:
    """Poll like a client would, until the task is completed or failed and billing has
    settled its credits (credits.settled: charged is final)."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        response = await http.get(f"/api/v1/tasks/{task_id}", headers=headers)
        assert response.status_code == 200, response.text
        task: dict[str, Any] = response.json()
        if task["status"] in ("completed", "failed") and task["credits"]["settled"]:
            return task
        await asyncio.sleep(0.1)
    raise AssertionError(f"task {task_id} still processing after {deadline_s}s")


async def new_account(platform: Platform, grant: int) -> str:
    """A fresh account with ``grant`` credits; returns its API key."""
    billing = platform.stack.billing()
    try:
        account = await billing.create_account(f"e2e-{uuid.uuid4().hex[:6]}", grant)
        return (await billing.create_api_key(account.id)).api_key
    finally:
        await billing.close()


async def ledger_ok(platform: Platform) -> None:
    """The operator's ledger check passes: every balance is the sum of its entries."""
    check = await platform.http.get("/admin/v1/ledger/check", headers=admin(platform))
    assert check.status_code == 200 and check.json()["ok"], check.text


def admin(platform: Platform) -> dict[str, str]:
    return {"Authorization": f"Bearer {platform.config.admin_token}"}


async def faults(platform: Platform, *rules: dict[str, Any]) -> None:
    """Replace the simulator's fault rules (pixelrelay_sim/faults.py)."""
    async with httpx.AsyncClient(base_url=platform.config.sim_url) as sim:
        (await sim.put("/_sim/faults", json=list(rules))).raise_for_status()


async def upstream_requests(platform: Platform, prompt: str) -> int:
    """How many times the simulator was asked for ``prompt`` (it keeps only hashes)."""
    digest = hashlib.sha256(prompt.encode()).hexdigest()
    async with httpx.AsyncClient(base_url=platform.config.sim_url) as sim:
        seen = (await sim.get("/_sim/requests")).json()
    return sum(1 for r in seen if r["prompt_sha256"] == digest)


def bucket_keys(platform: Platform, prefix: str) -> list[str]:
    """What the platform's object store holds under ``prefix``."""
    s3 = platform.config.object_store()
    return [o.object_name or "" for o in s3.list_objects("pixelrelay", prefix, recursive=True)]


def refusal(answer: httpx.Response) -> tuple[int, int]:
    """An HTTP answer's status and error code (0 when it is no error)."""
    body = answer.json() if answer.content else {}
    return answer.status_code, int(body.get("error", {}).get("code", 0)) if isinstance(
        body, dict
    ) else 0


def status_and_code(answer: bytes) -> tuple[int, int]:
    """The status and error code of a raw HTTP answer."""
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split()[1]), int(orjson.loads(body)["error"]["code"])


def rss_bytes(pid: int) -> int:
    """A process's resident memory."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")
