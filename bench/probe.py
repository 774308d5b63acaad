"""One endpoint at a few fixed rates, for before/after comparisons of an optimisation.

    python -m bench.probe account 200 400 800     # GET /api/v1/account
    python -m bench.probe submit 100 200 300      # POST generations, dispatchers paused
    python -m bench.probe poll 500 1000 2000      # GET /api/v1/tasks/{id} of 200 tasks
    python -m bench.probe ledger                  # Ledger.reserve in-process, ms per call

Prints achieved requests/s (over the time the answers took), p50 and p99 per rate.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

import httpx
import orjson

from bench.loadgen import http_request, open_loop, percentile
from pixelrelay.billing_client import BillingClient
from pixelrelay.devstack import Stack, StackConfig


async def http_probe(endpoint: str, rates: list[int], seconds: float = 4.0) -> None:
    stack = Stack(
        StackConfig.free_ports(
            Path(tempfile.mkdtemp()), sim_latency_ms=0, extra_env={"LOG_LEVEL": "warning"}
        )
    )
    await stack.start()
    try:
        billing = BillingClient(f"127.0.0.1:{stack.config.billing_port}")
        account = await billing.create_account("probe", 10**9)
        key = (await billing.create_api_key(account.id)).api_key
        await billing.close()
        headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
        if endpoint == "submit":
            os.kill(stack.child("dispatcher").process.pid, signal.SIGSTOP)

            def request(i: int) -> bytes:
                body = orjson.dumps({"model": "gpt-image-2", "prompt": f"probe {i}"})
                return http_request("POST", "/api/v1/images/generations", "probe", headers, body)
        elif endpoint == "poll":
            async with httpx.AsyncClient(base_url=stack.config.base_url, headers=headers) as http:
                ids = [
                    (
                        await http.post(
                            "/api/v1/images/generations",
                            json={"model": "gpt-image-2", "prompt": f"probe {i}"},
                        )
                    ).json()["id"]
                    for i in range(200)
                ]
            polls = [http_request("GET", f"/api/v1/tasks/{t}", "probe", headers) for t in ids]

            def request(i: int) -> bytes:
                return polls[i % len(polls)]
        else:
            fixed = http_request("GET", "/api/v1/account", "probe", headers)

            def request(i: int) -> bytes:
                return fixed

        for rate in rates:
            samples = await open_loop(
                "127.0.0.1", stack.config.http_port, request, rate=rate, duration=seconds
            )
            ok = [s for s in samples if s.status == 200]
            took = max(s.scheduled + s.latency for s in samples)
            ms = [s.latency * 1000 for s in ok]
            sys.stdout.write(
                f"{endpoint} offered {rate}/s: {len(ok) / took:.0f}/s, "
                f"p50 {percentile(ms, 50):.1f} ms, p99 {percentile(ms, 99):.1f} ms\n"
            )
        if endpoint == "submit":
            os.kill(stack.child("dispatcher").process.pid, signal.SIGCONT)
    finally:
        await stack.stop()


def ledger_probe(calls: int = 1000) -> None:
    from billing.ledger import Ledger  # noqa: PLC0415
    from billing.migrate import upgrade  # noqa: PLC0415
    from billing.prices import PriceList  # noqa: PLC0415
    from billing.settings import DEFAULT_PRICES  # noqa: PLC0415
    from pixelrelay.db import Database  # noqa: PLC0415
    from pixelrelay.v1 import common_pb2  # noqa: PLC0415

    url = f"sqlite:///{Path(tempfile.mkdtemp()) / 'ledger.db'}"
    upgrade(url)
    ledger = Ledger(Database(url).engine, PriceList.load(DEFAULT_PRICES), 10**9)
    account = ledger.create_account(name="probe").id
    key = ledger.create_api_key(account_id=account).key.id
    item = common_pb2.PriceItem(model="gpt-image-2", resolution="1k", n=1)
    for i in range(calls // 5):  # warm the statement caches
        ledger.reserve(task_id=f"w{i}", account_id=account, item=item, expires_at=0, key_id=key)
    started = time.perf_counter()
    for i in range(calls):
        ledger.reserve(task_id=f"t{i}", account_id=account, item=item, expires_at=0, key_id=key)
    sys.stdout.write(f"Ledger.reserve: {(time.perf_counter() - started) / calls * 1000:.2f} ms\n")


if __name__ == "__main__":
    what, *rates = sys.argv[1:] or ["account"]
    if what == "ledger":
        ledger_probe()
    else:
        asyncio.run(http_probe(what, [int(r) for r in rates] or [200, 400, 800]))
