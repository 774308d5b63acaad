"""python -m bench (make bench): start the platform on free ports, run every scenario,
write bench/results/<time>/{report.json, summary.md, latency.png} and bench/results/latest."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from bench import report, scale, scenarios, sync
from bench.profile import record
from bench.two_channels import two_channel_platform

log = logging.getLogger("bench")
RESULTS = Path(__file__).resolve().parent / "results"
ACK_WAIT = 10.0


async def main() -> None:
    quick = os.environ.get("BENCH_QUICK") == "1"
    soak = float(os.environ.get("BENCH_SOAK_SECONDS", "20" if quick else "120"))
    started = time.strftime("%Y-%m-%dT%H-%M-%SZ", time.gmtime())
    work = Path(tempfile.mkdtemp(prefix="pixelrelay-bench-"))
    results: list[scenarios.ScenarioResult] = []
    profiles: dict[str, list[str]] = {}
    env = {
        "ACK_WAIT": str(ACK_WAIT),
        # Every failover is measured: the breaker must not open during the failover run.
        "BREAKER_CONSECUTIVE_FAILURES": "1000000",
        "BREAKER_MIN_CALLS": "1000000",
    }
    async with two_channel_platform(work, latency_ms=0, env=env) as platform:
        stack = platform.stack
        billing = stack.billing()
        account = await billing.create_account("bench", 10**9)
        key = (await billing.create_api_key(account.id, "bench")).api_key
        await billing.close()
        bench = scenarios.Bench(stack, key, platform.primary_sim_url)
        short = 5.0 if quick else 10.0
        submit_steps = [
            (100, short),
            (250, short),
            (500, short),
            (1000, short),
            (1500, short if quick else 60.0),
        ]
        results.append(await scenarios.submit(bench, submit_steps))
        log.info("submit: %s", results[-1].achieved)
        results.append(
            await scenarios.poll(
                bench, [(250, short), (500, short), (1000, short), (2000, short), (4000, short)]
            )
        )
        log.info("poll: %s", results[-1].achieved)
        pids = {
            c.name: c.process.pid
            for c in stack.children
            if c.name in ("gateway", "billing", "storage", "dispatcher")
        }
        profiling = asyncio.create_task(record(pids, 8, work / "profiles"))
        results.append(await scenarios.end_to_end(bench, 400, short))
        profiles = await profiling
        log.info("end-to-end: %s", results[-1].achieved)
        capacity = results[-1].details["completed_per_s"] or 100
        half = max(10.0, capacity / 2)
        results.append(await scenarios.overhead(bench, half, short))
        log.info("overhead: %s", results[-1].achieved)
        results.append(await scenarios.failover(bench, 60 if quick else 150))
        log.info("failover: %s", results[-1].achieved)
        results.append(await scenarios.crash(bench, ACK_WAIT))
        log.info("crash: %s", results[-1].achieved)
        results.append(await scenarios.memory(bench, half, soak))
        log.info("memory: %s", results[-1].achieved)
    # Platforms of their own: /v1 beside LiteLLM's proxy, replicas of the gateway, more
    # dispatchers.
    results.append(await sync.on_own_platform(100 if quick else 200))
    log.info("sync: %s", results[-1].achieved)
    results.append(await scale.scale(quick))
    log.info("scale: %s", results[-1].achieved)
    out = RESULTS / started
    report.write(out, results, profiles, {"started": started, "quick": quick})
    latest = RESULTS / "latest"
    shutil.rmtree(latest, ignore_errors=True)
    shutil.copytree(out, latest)
    shutil.rmtree(work, ignore_errors=True)
    sys.stdout.write((out / "summary.md").read_text())


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="bench: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    asyncio.run(main())
