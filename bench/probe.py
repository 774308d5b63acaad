"""One endpoint at a few fixed rates, for before/after comparisons of an optimisation.

    python -m bench.probe account 200 400 800     # GET /api/v1/account
    python -m bench.probe submit 100 200 300      # POST generations, dispatchers paused
    python -m bench.probe poll 500 1000 2000      # GET /api/v1/tasks/{id} of 200 tasks
    python -m bench.probe ledger                  # reserve_many and settle_many in-process, ms per hold
    python -m bench.probe rpc                     # one internal gRPC round trip, idle

Prints achieved requests/s (over the time the answers took), p50 and p99 per rate, and the
CPU milliseconds each process spent per answered request.
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

from bench import cpu
from bench.loadgen import http_request, open_loop, percentile
from pixelrelay_dev.config import StackConfig
from pixelrelay_dev.devstack import Stack


async def http_probe(endpoint: str, rates: list[int], seconds: float = 4.0) -> None:
    stack = Stack(
        StackConfig.leased_ports(
            Path(tempfile.mkdtemp()), sim_latency_ms=0, extra_env={"LOG_LEVEL": "warning"}
        )
    )
    await stack.start()
    try:
        billing = stack.billing()
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

        pids = {c.name: [c.process.pid] for c in stack.children} | {"loadgen": [os.getpid()]}
        for rate in rates:
            before = cpu.snapshot(pids)
            samples = await open_loop(
                "127.0.0.1", stack.config.http_port, request, rate=rate, duration=seconds
            )
            ok = [s for s in samples if s.status == 200]
            took = max(s.scheduled + s.latency for s in samples)
            ms = [s.latency * 1000 for s in ok]
            per_request = {
                name: seconds * 1000 / max(len(ok), 1)
                for name, seconds in cpu.spent(before, cpu.snapshot(pids)).items()
            }
            sys.stdout.write(
                f"{endpoint} offered {rate}/s: {len(ok) / took:.0f}/s, "
                f"p50 {percentile(ms, 50):.1f} ms, p99 {percentile(ms, 99):.1f} ms; "
                "CPU ms per request: "
                + ", ".join(f"{n} {v:.2f}" for n, v in per_request.items() if v >= 0.01)
                + "\n"
            )
        if endpoint == "submit":
            os.kill(stack.child("dispatcher").process.pid, signal.SIGCONT)
    finally:
        await stack.stop()


async def rpc_probe(calls: int = 1000) -> None:
    """One internal gRPC round trip on an idle platform (Billing.GetAccount, a one-row
    read): the cost of each hop between the services."""
    stack = Stack(
        StackConfig.leased_ports(Path(tempfile.mkdtemp()), extra_env={"LOG_LEVEL": "warning"})
    )
    await stack.start()
    billing = stack.billing()
    try:
        account = (await billing.create_account("probe", 0)).id
        for _ in range(calls // 10):
            await billing.get_account(account)
        pids = {"billing": [stack.child("billing").process.pid], "caller": [os.getpid()]}
        before, ms = cpu.snapshot(pids), []
        for _ in range(calls):
            started = time.perf_counter()
            await billing.get_account(account)
            ms.append((time.perf_counter() - started) * 1000)
        used = cpu.spent(before, cpu.snapshot(pids))
        sys.stdout.write(
            f"Billing.GetAccount one at a time: p50 {percentile(ms, 50):.2f} ms, "
            f"p99 {percentile(ms, 99):.2f} ms; CPU ms per call: "
            + ", ".join(f"{n} {v * 1000 / calls:.2f}" for n, v in used.items())
            + "\n"
        )
    finally:
        await billing.close()
        await stack.stop()


def ledger_probe(calls: int = 1000) -> None:
    from pixelrelay.db import Database  # noqa: PLC0415
    from pixelrelay.v1 import common_pb2  # noqa: PLC0415
    from pixelrelay_billing.ledger import HoldRequest, Ledger, Settle  # noqa: PLC0415
    from pixelrelay_billing.migrate import SCHEMA  # noqa: PLC0415
    from pixelrelay_billing.prices import PriceList  # noqa: PLC0415

    url = f"sqlite:///{Path(tempfile.mkdtemp()) / 'ledger.db'}"
    SCHEMA.upgrade(url)
    ledger = Ledger(Database(url).engine, PriceList.load(), 10**9)
    account = ledger.create_account(name="probe").id
    key = ledger.create_api_key(account_id=account).key.id
    item = common_pb2.PriceItem(model="gpt-image-2", resolution="1k", n=1)
    for i in range(calls // 5):  # warm the statement caches
        ledger.reserve(task_id=f"w{i}", account_id=account, item=item, expires_at=0, key_id=key)
    for size in (1, 4, 16, 64):
        started = time.perf_counter()
        for i in range(calls // size):
            ledger.reserve_many(
                [HoldRequest(f"t{size}-{i}-{j}", account, item, 0, key) for j in range(size)]
            )
        per_hold = (time.perf_counter() - started) / (calls // size * size) * 1000
        sys.stdout.write(f"Ledger.reserve_many, batches of {size}: {per_hold:.3f} ms per hold\n")
        started = time.perf_counter()
        for i in range(calls // size):
            ledger.settle_many([Settle(f"t{size}-{i}-{j}", 1) for j in range(size)])
        per_hold = (time.perf_counter() - started) / (calls // size * size) * 1000
        sys.stdout.write(f"Ledger.settle_many, batches of {size}: {per_hold:.3f} ms per hold\n")


if __name__ == "__main__":
    what, *rates = sys.argv[1:] or ["account"]
    if what == "ledger":
        ledger_probe()
    elif what == "rpc":
        asyncio.run(rpc_probe())
    else:
        asyncio.run(http_probe(what, [int(r) for r in rates] or [200, 400, 800]))
