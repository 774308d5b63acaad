"""python -m bench (make bench): start the platform on free ports, run every scenario,
write bench/results/<time>/{report.json, summary.md, latency.png} and bench/results/latest."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import report, scenarios
from bench.profile import record
from pixelrelay_dev.children import wait_http
from pixelrelay_dev.config import StackConfig
from pixelrelay_dev.devstack import Stack
from pixelrelay_dev.ports import lease_ports

log = logging.getLogger("bench")
RESULTS = Path(__file__).resolve().parent / "results"
ACK_WAIT = 10.0

CHANNELS = """
channels:
  sim-b:
    base_url: http://127.0.0.1:{primary}/v1
    model: gpt-image-2
    connect_timeout: 1
    max_concurrency: 64
    capabilities: {{max_n: 4, masks: true, transparency: true, formats: [png, jpeg, webp]}}
  simulator:
    base_url: http://127.0.0.1:8090/v1
    model: gpt-image-2
    max_concurrency: 64
    capabilities: {{max_n: 4, masks: true, transparency: true, formats: [png, jpeg, webp]}}
routes:
  gpt-image-2: {{channels: [sim-b, simulator]}}
  gpt-image-2-official: {{channels: [sim-b, simulator]}}
"""


async def main() -> None:
    quick = os.environ.get("BENCH_QUICK") == "1"
    soak = float(os.environ.get("BENCH_SOAK_SECONDS", "20" if quick else "120"))
    started = time.strftime("%Y-%m-%dT%H-%M-%SZ", time.gmtime())
    work = Path(tempfile.mkdtemp(prefix="pixelrelay-bench-"))
    primary_lease = lease_ports(1)
    [primary_port] = primary_lease.ports
    (work / "channels.yaml").write_text(CHANNELS.format(primary=primary_port))
    primary = subprocess.Popen(
        [sys.executable, "-m", "upstream_sim"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={
            **os.environ,
            "SIM_PORT": str(primary_port),
            "SIM_LATENCY_MS": "0",
            "LOG_LEVEL": "warning",
        },
    )
    config = StackConfig.leased_ports(
        work,
        dispatchers=2,
        sim_latency_ms=0,
        extra_env={
            "CHANNELS_FILE": str(work / "channels.yaml"),
            "LOG_LEVEL": "warning",
            "ACK_WAIT": str(ACK_WAIT),
            "SIM_LOG_LEVEL": "warning",
            # Every failover is measured: the breaker must not open during the failover run.
            "BREAKER_CONSECUTIVE_FAILURES": "1000000",
            "BREAKER_MIN_CALLS": "1000000",
        },
    )
    stack = Stack(config)
    results: list[scenarios.ScenarioResult] = []
    profiles: dict[str, list[str]] = {}
    try:
        await wait_http(f"http://127.0.0.1:{primary_port}/healthz", "second simulator")
        await stack.start()
        billing = stack.billing()
        account = await billing.create_account("bench", 10**9)
        key = (await billing.create_api_key(account.id, "bench")).api_key
        await billing.close()
        bench = scenarios.Bench(stack, key, f"http://127.0.0.1:{primary_port}")
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
    finally:
        await stack.stop()
        primary.terminate()
        primary.wait()
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
