"""What must hold across gateway replicas: one key's rate limit is one budget, and a
revoked key stops working on every replica within a second."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import httpx
import pytest

from tests.e2e.conftest import Platform

pytestmark = pytest.mark.e2e


@pytest.fixture
async def replicas(replicated_platform: Platform) -> AsyncIterator[list[httpx.AsyncClient]]:
    urls = replicated_platform.config.gateway_urls()
    assert len(urls) == 2
    async with (
        httpx.AsyncClient(base_url=urls[0], timeout=10) as one,
        httpx.AsyncClient(base_url=urls[1], timeout=10) as two,
    ):
        yield [one, two]


async def limited_key(p: Platform, per_minute: int) -> str:
    created = await p.http.post("/api/v1/keys", headers=p.auth(), json={"rate_limit": per_minute})
    assert created.status_code == 200, created.text
    return str(created.json()["api_key"])


async def test_a_keys_rate_limit_is_shared_by_the_replicas(
    replicated_platform: Platform, replicas: list[httpx.AsyncClient]
) -> None:
    p = replicated_platform
    key = await limited_key(p, 10)
    statuses = []
    for i in range(30):  # alternating replicas, as a round-robin balancer would
        response = await replicas[i % 2].get("/api/v1/account", headers=p.auth(key))
        statuses.append(response.status_code)
    assert statuses.count(200) == 10, statuses  # 10 in total, not 10 per replica
    assert set(statuses[10:]) == {429}
    both = {
        r.status_code
        for r in (
            await asyncio.gather(*(c.get("/api/v1/account", headers=p.auth(key)) for c in replicas))
        )
    }
    assert both == {429}


async def test_concurrent_requests_across_replicas_never_exceed_the_limit(
    replicated_platform: Platform, replicas: list[httpx.AsyncClient]
) -> None:
    p = replicated_platform
    key = await limited_key(p, 25)
    responses = await asyncio.gather(
        *(replicas[i % 2].get("/api/v1/account", headers=p.auth(key)) for i in range(80))
    )
    assert sorted(r.status_code for r in responses) == [200] * 25 + [429] * 55


async def test_a_revoked_key_stops_on_every_replica_within_a_second(
    replicated_platform: Platform, replicas: list[httpx.AsyncClient]
) -> None:
    p = replicated_platform
    created = (await p.http.post("/api/v1/keys", headers=p.auth(), json={})).json()
    key, key_id = created["api_key"], created["key"]["id"]
    for client in replicas:  # both replicas have it cached
        assert (await client.get("/api/v1/account", headers=p.auth(key))).status_code == 200
    revoked = await p.http.delete(f"/api/v1/keys/{key_id}", headers=p.auth())
    assert revoked.status_code == 200, revoked.text
    revoked_at = time.monotonic()
    for client in replicas:
        while (await client.get("/api/v1/account", headers=p.auth(key))).status_code != 401:
            assert time.monotonic() - revoked_at < 1.0, "a replica still accepts the revoked key"
            await asyncio.sleep(0.02)
    assert time.monotonic() - revoked_at < 1.0
