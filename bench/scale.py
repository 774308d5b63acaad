"""The scale scenario of `make bench`: what a second gateway and more dispatchers buy.

- Submit throughput (dispatchers paused, the accept path alone) with 1 and 2 gateway
  replicas over one billing, offered more than either can take, spread evenly.
- Completed tasks/s with 1 and 3 dispatchers while the upstream takes 2 s per image: a
  dispatcher runs CONCURRENCY (16) jobs at once, so its ceiling is 8 tasks/s and three
  should reach about 24.

This box has 2 cores. A second gateway process shares them with the first, billing, NATS,
the load generator and the databases, so the submit ratio measures how much of the
gateway's work is parallel here, not what a second machine would add; the dispatcher
ratio is bounded by the upstream's latency, not CPU, and shows the design's scaling.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import orjson

from bench.loadgen import open_loop
from bench.scenarios import Bench, ScenarioResult, purge_jobs, settled, submit_request, summarize
from bench.two_channels import two_channel_platform

UPSTREAM_S = 2.0


@contextlib.asynccontextmanager
async def bench_platform(
    *, latency_ms: int, gateways: int = 1, dispatchers: int = 1
) -> AsyncIterator[Bench]:
    work = Path(tempfile.mkdtemp(prefix="pixelrelay-scale-"))
    async with two_channel_platform(
        work, latency_ms=latency_ms, dispatchers=dispatchers, topology={"gateways": gateways}
    ) as platform:
        billing = platform.stack.billing()
        account = await billing.create_account("scale", 10**9)
        key = (await billing.create_api_key(account.id, "scale")).api_key
        await billing.close()
        yield Bench(platform.stack, key, platform.primary_sim_url)


async def accepted_per_s(gateways: int, rate: float, duration: float) -> dict[str, object]:
    async with bench_platform(latency_ms=0, gateways=gateways) as bench:
        for pid in bench.dispatchers():
            os.kill(pid, signal.SIGSTOP)
        try:
            await open_loop(  # warm-up: connections, caches, the first batches
                bench.host, bench.port, submit_request(bench, "warm"), rate=200, duration=2
            )
            ports = [bench.port + i for i in range(gateways)]
            runs = await asyncio.gather(
                *(
                    open_loop(
                        bench.host,
                        port,
                        submit_request(bench, f"scale {port}"),
                        rate=rate / gateways,
                        duration=duration,
                    )
                    for port in ports
                )
            )
        finally:
            await purge_jobs(bench)
            for pid in bench.dispatchers():
                os.kill(pid, signal.SIGCONT)
    per_gateway = [summarize(samples, duration) for samples in runs]
    return {
        "gateways": gateways,
        "offered_per_s": rate,
        "accepted_per_s": round(sum(float(r["ok_per_s"]) for r in per_gateway), 1),
        "p99_ms": max(float(r["p99_ms"]) for r in per_gateway),
    }


async def completed_per_s(dispatchers: int, rate: float, duration: float) -> dict[str, object]:
    async with bench_platform(latency_ms=int(UPSTREAM_S * 1000), dispatchers=dispatchers) as bench:
        samples = await open_loop(
            bench.host,
            bench.port,
            submit_request(bench, f"dispatchers {dispatchers}"),
            rate=rate,
            duration=duration,
            keep_bodies=True,
        )
        ids = [orjson.loads(s.body)["id"] for s in samples if s.status == 200]
        started = time.time()
        tasks = await settled(bench, ids, limit=600)
    completed = [t for t in tasks if t["status"] == "completed"]
    # Steady state: completions between the first and the last, while the queue was full.
    ends = sorted(t["created_at"] + t["timings"]["total_ms"] / 1000 for t in completed)
    span = ends[-1] - ends[0] if len(ends) > 1 else float("nan")
    return {
        "dispatchers": dispatchers,
        "offered_per_s": rate,
        "completed": len(completed),
        "completed_per_s": round(len(completed) / span, 2) if span else 0.0,
        "drain_s": round(time.time() - started, 1),
    }


async def scale(quick: bool) -> ScenarioResult:
    seconds = 5.0 if quick else 15.0
    one_gw, two_gw = [await accepted_per_s(g, 2500, seconds) for g in (1, 2)]
    one_d, three_d = [await completed_per_s(d, 30, seconds * 2) for d in (1, 3)]
    gw_ratio = float(two_gw["accepted_per_s"]) / float(one_gw["accepted_per_s"])  # type: ignore[arg-type]
    d_ratio = float(three_d["completed_per_s"]) / float(one_d["completed_per_s"])  # type: ignore[arg-type]
    return ScenarioResult(
        "scale",
        "report: ×gateways (2 cores: CPU-bound) and ×dispatchers (2 s upstream: latency-bound)",
        f"2 gateways {gw_ratio:.2f}× the submits of 1 ({two_gw['accepted_per_s']:,.0f} vs "
        f"{one_gw['accepted_per_s']:,.0f}/s); 3 dispatchers {d_ratio:.2f}× the completions "
        f"of 1 ({three_d['completed_per_s']} vs {one_d['completed_per_s']}/s)",
        None,
        {
            "submit": [one_gw, two_gw],
            "dispatch": [one_d, three_d],
            "gateway_ratio": round(gw_ratio, 2),
            "dispatcher_ratio": round(d_ratio, 2),
        },
    )
