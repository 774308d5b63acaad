"""The synchronous /v1 call's cost: what the platform adds to an OpenAI-style request
(hold, queue, dispatch, storing the result, settling, reading it back) over calling the
upstream directly, at light load with an upstream that answers at once."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx

from bench.loadgen import percentile
from bench.scenarios import Bench, ScenarioResult

BODY = {"model": "gpt-image-2", "size": "1024x1024"}


async def _timed(
    client: httpx.AsyncClient, url: str, headers: dict[str, str], count: int, workers: int
) -> tuple[list[float], dict[str, int]]:
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    counter = iter(range(count))

    async def worker() -> None:
        for i in counter:
            started = time.perf_counter()
            answer = await client.post(
                url, headers=headers, json={**BODY, "prompt": f"sync {i}"}, timeout=60
            )
            if answer.status_code == 200:
                latencies.append((time.perf_counter() - started) * 1000)
            statuses[str(answer.status_code)] = statuses.get(str(answer.status_code), 0) + 1

    await asyncio.gather(*(worker() for _ in range(workers)))
    return latencies, statuses


def _figures(latencies: list[float], statuses: dict[str, int]) -> dict[str, Any]:
    return {
        "p50_ms": round(percentile(latencies, 50), 1),
        "p99_ms": round(percentile(latencies, 99), 1),
        "ok": len(latencies),
        "statuses": statuses,
    }


async def sync(bench: Bench, count: int = 200, workers: int = 2) -> ScenarioResult:
    """The same requests, two at a time: straight to the simulator, then through /v1."""
    async with httpx.AsyncClient() as client:
        sim = f"{bench.backup_sim_url}/v1/images/generations"
        await _timed(client, sim, {"Authorization": "Bearer sim"}, 10, 1)
        direct = _figures(
            *await _timed(client, sim, {"Authorization": "Bearer sim"}, count, workers)
        )
        gateway = f"http://{bench.host}:{bench.port}/v1/images/generations"
        await _timed(client, gateway, bench.auth(), 10, 1)  # warm the connections
        platform = _figures(*await _timed(client, gateway, bench.auth(), count, workers))
    added_p50 = platform["p50_ms"] - direct["p50_ms"]
    added_p99 = platform["p99_ms"] - direct["p99_ms"]
    return ScenarioResult(
        "sync",
        "/v1 adds less than LiteLLM's proxy on the same simulator (LiteLLM not measured yet)",
        f"added p50 {added_p50:.0f} ms, p99 {added_p99:.0f} ms over the upstream "
        f"({direct['p50_ms']:.0f}/{direct['p99_ms']:.0f} ms direct, "
        f"{platform['p50_ms']:.0f}/{platform['p99_ms']:.0f} ms through /v1), "
        f"{workers} at a time, result stored",
        None,
        {
            "requests": count,
            "concurrency": workers,
            "direct": direct,
            "pixelrelay_v1": platform,
            "added_p50_ms": round(added_p50, 1),
            "added_p99_ms": round(added_p99, 1),
        },
    )
