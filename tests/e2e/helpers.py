from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import httpx

from pixelrelay.billing_client import BillingClient
from tests.e2e.conftest import Platform


async def poll_until_done(
    http: httpx.AsyncClient, task_id: str, headers: dict[str, str], deadline_s: float = 60.0
) -> dict[str, Any]:
    """Poll like a client would, until the task is completed or failed."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        response = await http.get(f"/api/v1/tasks/{task_id}", headers=headers)
        assert response.status_code == 200, response.text
        task: dict[str, Any] = response.json()
        if task["status"] in ("completed", "failed"):
            return task
        await asyncio.sleep(0.1)
    raise AssertionError(f"task {task_id} still processing after {deadline_s}s")


async def new_account(platform: Platform, grant: int) -> str:
    """A fresh account with ``grant`` credits; returns its API key."""
    billing = BillingClient(f"127.0.0.1:{platform.config.billing_port}")
    try:
        account = await billing.create_account(f"e2e-{uuid.uuid4().hex[:6]}", grant)
        return (await billing.create_api_key(account.id)).api_key
    finally:
        await billing.close()
