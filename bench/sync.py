"""The synchronous /v1 call's cost: what the platform adds to an OpenAI-style request
(hold, queue, dispatch, storing the result, settling, reading it back) over calling the
upstream directly, at light load with an upstream that answers at once; and the same
figure for LiteLLM's proxy (bench/litellm_proxy.py), which stores nothing."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench import cpu, litellm_proxy
from bench.loadgen import percentile
from bench.scenarios import Bench, ScenarioResult, object_puts, rpc_counts, slow_object_puts
from bench.two_channels import two_channel_platform

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


async def sync(
    bench: Bench, count: int = 200, levels: tuple[int, ...] = (1, 2, 16), rounds: int = 4
) -> ScenarioResult:
    """The same requests, one at a time and then two: straight to the simulator, through
    /v1, and through LiteLLM's proxy on the same simulator, in interleaved rounds (so a
    drift in the machine's load hits all three alike)."""
    targets = {
        "direct": (
            f"{bench.backup_sim_url}/v1/images/generations",
            {"Authorization": "Bearer sim"},
        ),
        "pixelrelay_v1": (f"http://{bench.host}:{bench.port}/v1/images/generations", bench.auth()),
    }
    not_measured = litellm_proxy.available()
    by_level: dict[int, dict[str, Any]] = {}
    # CPU each target's processes spend, and on how many requests (bench/cpu.py).
    processes: dict[str, dict[str, list[int]]] = {"pixelrelay_v1": _platform_pids(bench)}
    cpu_s: dict[str, dict[str, float]] = {}
    requests: dict[str, int] = {}
    s3_seconds = s3_writes = 0.0
    slow_before = await slow_object_puts(bench)
    # Calls billing answered during /v1's rounds, by RPC (the hot path's should be 1 per task).
    billing_calls: dict[str, float] = {}
    async with httpx.AsyncClient() as client, contextlib.AsyncExitStack() as stack:
        if not_measured is None:
            proxy = await stack.enter_async_context(
                litellm_proxy.litellm_proxy(f"{bench.backup_sim_url}/v1")
            )
            targets["litellm_proxy"] = (proxy.url, proxy.headers)
            processes["litellm_proxy"] = {"litellm": [proxy.pid]}
        for url, headers in targets.values():
            await _timed(client, url, headers, 10, 1)  # warm the connections
        for workers in levels:
            samples: dict[str, tuple[list[float], dict[str, int]]] = {n: ([], {}) for n in targets}
            elapsed: dict[str, float] = dict.fromkeys(targets, 0.0)
            # CPU per request is read one and two at a time (the figure); 16 at a
            # time reports throughput.
            measured = workers <= 2
            for _ in range(rounds):
                for name, (url, headers) in targets.items():
                    puts_before, put_s_before = await object_puts(bench)
                    calls_before = await rpc_counts(bench, "billing")
                    cpu_before = cpu.snapshot(processes.get(name, {}))
                    began = time.perf_counter()
                    latencies, statuses = await _timed(
                        client, url, headers, count // rounds, workers
                    )
                    elapsed[name] += time.perf_counter() - began
                    used = cpu.spent(cpu_before, cpu.snapshot(processes.get(name, {})))
                    if measured:
                        for process, seconds in used.items():
                            of_target = cpu_s.setdefault(name, {})
                            of_target[process] = of_target.get(process, 0.0) + seconds
                        requests[name] = requests.get(name, 0) + count // rounds
                    puts, put_s = await object_puts(bench)
                    if name == "pixelrelay_v1" and measured:
                        s3_writes += puts - puts_before
                        s3_seconds += put_s - put_s_before
                        for method, n in (await rpc_counts(bench, "billing")).items():
                            made = n - calls_before.get(method, 0.0)
                            billing_calls[method] = billing_calls.get(method, 0.0) + made
                    samples[name][0].extend(latencies)
                    for status, n in statuses.items():
                        samples[name][1][status] = samples[name][1].get(status, 0) + n
            figures = {name: _figures(*sample) for name, sample in samples.items()}
            for name, f in figures.items():
                f["images_per_s"] = round(f["ok"] / elapsed[name], 1) if elapsed[name] else 0.0
            by_level[workers] = {
                **figures,
                "added": {
                    name: {
                        "p50_ms": round(f["p50_ms"] - figures["direct"]["p50_ms"], 1),
                        "p99_ms": round(f["p99_ms"] - figures["direct"]["p99_ms"], 1),
                    }
                    for name, f in figures.items()
                    if name != "direct"
                },
            }
    slow_s3_writes = await slow_object_puts(bench) - slow_before
    # A task waits for its image's write (the manifest is written while it settles).
    s3_ms = s3_seconds * 1000 / max(s3_writes, 1)
    cpu_ms = {
        name: {
            process: round(seconds * 1000 / requests[name], 2)
            for process, seconds in sorted(used.items())
        }
        for name, used in cpu_s.items()
    }
    for used_ms in cpu_ms.values():
        used_ms["total"] = round(sum(used_ms.values()), 2)
    # The bar: PixelRelay's own processes, the S3 server (and the simulator, never
    # counted) excluded.
    ours_cpu = cpu_ms.get("pixelrelay_v1", {})
    own_ms = round(ours_cpu.get("total", 0.0) - ours_cpu.get("s3", 0.0), 2)
    theirs_ms = cpu_ms.get("litellm_proxy", {}).get("total")
    cpu_ratio = round(own_ms / theirs_ms, 2) if theirs_ms else None
    parts = []
    met: bool | None = None if not_measured else cpu_ratio is not None and cpu_ratio <= 1.5
    for workers, level in by_level.items():
        if workers > 2:  # throughput, side by side
            part = f"{workers} at a time: /v1 {level['pixelrelay_v1']['images_per_s']:.0f} images/s"
            if "litellm_proxy" in level:
                part += f", LiteLLM {level['litellm_proxy']['images_per_s']:.0f}"
            parts.append(part)
            continue
        ours = level["added"]["pixelrelay_v1"]
        part = f"{workers} at a time: /v1 +{ours['p50_ms']:.0f}/+{ours['p99_ms']:.0f} ms"
        if "litellm_proxy" in level["added"]:
            theirs = level["added"]["litellm_proxy"]
            part += f", LiteLLM +{theirs['p50_ms']:.0f}/+{theirs['p99_ms']:.0f} ms"
            if workers == 1:  # within LiteLLM's added latency and the S3 write
                met = (
                    bool(met)
                    and ours["p50_ms"] <= theirs["p50_ms"] + s3_ms
                    and ours["p99_ms"] <= theirs["p99_ms"] + s3_ms
                )
        parts.append(part)
    achieved = (
        f"added p50/p99 over the upstream: {'; '.join(parts)}; /v1 stores the result "
        f"(the S3 write, the dev S3 here, ≈ {s3_ms:.0f} ms of it)"
    )
    if ours_cpu:
        achieved += f"; CPU per request: /v1 {own_ms:.1f} ms without the S3 server"
        if theirs_ms:
            achieved += f", LiteLLM {theirs_ms:.1f} ms ({cpu_ratio:.2f}×)"
    per_task = {
        method: round(n / requests["pixelrelay_v1"], 2)
        for method, n in sorted(billing_calls.items())
        if n
    }
    achieved += "; billing calls per task: " + (
        ", ".join(f"{m} {n:g}" for m, n in per_task.items()) or "none"
    )
    if not_measured:
        achieved += f"; LiteLLM not measured: {not_measured}"
    return ScenarioResult(
        "sync",
        "/v1: CPU ≤ 1.5× LiteLLM's proxy's (S3 server excluded); added latency, one at a "
        "time, p50 and p99 ≤ LiteLLM's + the S3 write (same simulator, same run)",
        achieved,
        met,
        {
            "requests_per_level": count,
            "rounds": rounds,
            "by_concurrency": by_level,
            "s3_write_ms": round(s3_ms, 1),
            # CPU ms per request by process (replicas summed; the upstream's not counted):
            # what each hop costs, steadier than latency on a shared machine.
            "cpu_ms_per_request": cpu_ms,
            "cpu_ratio_without_s3": cpu_ratio,
            # Billing RPCs per /v1 task, by method (batched calls count once per batch).
            "billing_calls_per_task": per_task,
            # Writes over 100 ms (all scenarios' platforms share the dev S3): a tail the p99 shows.
            "s3_writes_over_100ms": slow_s3_writes,
            "litellm_version": None if not_measured else litellm_proxy.version(),
        },
    )


def _platform_pids(bench: Bench) -> dict[str, list[int]]:
    """The platform's processes by service (replicas together), without the simulators."""
    pids: dict[str, list[int]] = {}
    for child in bench.stack.children:
        if child.name != "pixelrelay_sim":
            pids.setdefault(re.sub(r"-\d+$", "", child.name), []).append(child.process.pid)
    return pids


async def on_own_platform(count: int = 200) -> ScenarioResult:
    """The scenario on a fresh platform of its own, as ``python -m bench.sync`` runs it:
    nothing the earlier scenarios leave behind (the submit scenario's ~100,000 unqueued
    holds, databases and streams grown by them) is in what /v1 is measured with."""
    work = Path(tempfile.mkdtemp(prefix="pixelrelay-sync-"))
    try:
        async with two_channel_platform(work, latency_ms=0) as platform:
            billing = platform.stack.billing()
            account = await billing.create_account("bench-sync", 10**9)
            key = (await billing.create_api_key(account.id, "bench-sync")).api_key
            await billing.close()
            return await sync(Bench(platform.stack, key, platform.primary_sim_url), count)
    finally:
        shutil.rmtree(work, ignore_errors=True)


async def main() -> None:
    """`python -m bench.sync`: this scenario alone."""
    result = await on_own_platform()
    sys.stdout.write(f"{result.achieved}\n{json.dumps(result.details, indent=2)}\n")


if __name__ == "__main__":
    asyncio.run(main())
