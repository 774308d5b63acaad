"""python -m bench.soak (make soak): the fault soak, ending with an audit of every task and
every credit.

Steady mixed load (both models, 1-2 images, three formats) from clients that retry like a
careful client does: the same Idempotency-Key until they get an answer. Meanwhile every
process is killed with SIGKILL in turn (each dispatcher, storage, the gateway, NATS,
billing, the S3 server) and started again after a few seconds, and the first upstream
answers 10% of requests with 500 and hangs on 2% (failover to the second).

The S3 server comes back with its bucket and every object (the development one keeps them
on disk, as a real S3 does).

The audit: every accepted task completed or failed (none stuck); each settled exactly once
in the ledger, charged what the task says; balance = grant - charged, nothing held; the
ledger check passes; no refused submit was generated; upstream generations per completed
task. Results: bench/results/soak-<time>/{audit.json,audit.md}; exit 1 when a check fails.

SOAK_MINUTES (load, default 4: about 5 min with the drain), SOAK_RATE (tasks/s, 12),
SOAK_KILL_EVERY (seconds between kills, 30: every target at least once in 4 minutes).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import shutil
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench.two_channels import TwoChannels, prompt_digest, set_faults, two_channel_platform
from pixelrelay.v1 import common_pb2
from pixelrelay_billing.prices import PriceList

log = logging.getLogger("soak")
RESULTS = Path(__file__).resolve().parent / "results"
GRANT = 10**9
UPSTREAM_LATENCY_MS = 300
# Killed in this order, round and round; each stays down DOWN_SECONDS.
TARGETS = ("dispatcher", "storage", "gateway", "nats", "dispatcher-1", "billing", "s3")
DOWN_SECONDS = 3.0
SUBMIT_PATIENCE = 150.0  # a client gives up on a submit after this long
DRAIN_SECONDS = 300.0  # after the load, for every accepted task to settle
RETRY = {409, 429, 502, 503, 504}  # answers a careful client retries with the same key
FLAKY, HANG = "[upstream-500]", "[upstream-hangs]"
MAX_GENERATIONS_PER_TASK = 1.01


@dataclass
class Submit:
    prompt: str
    body: dict[str, Any]
    attempts: int = 0
    answers: list[str] = field(default_factory=list)  # status codes, or "conn" for errors
    task_id: str | None = None
    refused: tuple[int, int] | None = None  # (status, error code): a final 4xx


@dataclass(frozen=True)
class Plan:
    """What to run: the topology (StackConfig fields: replicas, database), the load, and
    which processes are killed in turn. `make soak` and `make cluster-test` differ here."""

    name: str
    minutes: float
    rate: float
    kill_every: float
    targets: tuple[str, ...] = TARGETS
    dispatchers: int = 2
    topology: dict[str, Any] = field(default_factory=dict)


@dataclass
class Soak:
    platform: TwoChannels
    api_key: str
    rng: random.Random
    plan: Plan
    submits: list[Submit] = field(default_factory=list)
    kills: list[dict[str, Any]] = field(default_factory=list)
    polls: Counter[str] = field(default_factory=Counter)

    @property
    def base_url(self) -> str:
        """The first gateway: never killed, it reads the results."""
        return self.platform.stack.config.base_url

    @property
    def gateway_urls(self) -> list[str]:
        return self.platform.stack.config.gateway_urls()

    def request(self, i: int) -> Submit:
        """Request i of the mix: 60% basic, 40% stable with 1-2 images and a format; a
        tenth marked for a 500 and a fiftieth for a hang at the first upstream."""
        rng = self.rng
        tag = rng.choices(["", FLAKY, HANG], weights=[88, 10, 2])[0]
        prompt = f"soak {i} {uuid.uuid4().hex} {tag}"
        body: dict[str, Any] = {"model": "gpt-image-2", "prompt": prompt}
        if rng.random() < 0.4:
            body = {
                "model": "gpt-image-2-official",
                "prompt": prompt,
                "n": rng.choice([1, 1, 2]),
                "quality": rng.choice(["low", "medium"]),
                "output_format": rng.choice(["png", "jpeg", "webp"]),
            }
        return Submit(prompt, body)


async def submit_until_answered(
    soak: Soak, gateways: list[httpx.AsyncClient], submit: Submit, first: int
) -> None:
    """Submit with one Idempotency-Key until a final answer, each attempt to the next
    gateway (as a balancer routes around a dead one); then poll the task once."""
    headers = {"Authorization": f"Bearer {soak.api_key}", "Idempotency-Key": str(uuid.uuid4())}
    deadline = time.monotonic() + SUBMIT_PATIENCE
    delay = 0.25
    while True:
        http = gateways[(first + submit.attempts) % len(gateways)]
        submit.attempts += 1
        try:
            response = await http.post(
                "/api/v1/images/generations", headers=headers, json=submit.body
            )
        except httpx.HTTPError:
            submit.answers.append("conn")
        else:
            submit.answers.append(str(response.status_code))
            if response.status_code == 200:
                task_id = response.json()["id"]
                if submit.task_id not in (None, task_id):  # a repeat made a second task
                    raise AssertionError(f"one key, two tasks: {submit.task_id}, {task_id}")
                submit.task_id = task_id
                break
            if response.status_code not in RETRY:
                submit.refused = (response.status_code, response.json()["error"]["code"])
                return
        if time.monotonic() > deadline:
            return
        await asyncio.sleep(delay)
        delay = min(delay * 2, 4.0)
    await asyncio.sleep(soak.rng.uniform(1, 5))
    try:
        polled = await http.get(f"/api/v1/tasks/{submit.task_id}", headers=headers)
        soak.polls[str(polled.status_code)] += 1
    except httpx.HTTPError:
        soak.polls["conn"] += 1


async def load(soak: Soak, rate: float, seconds: float) -> None:
    """Open loop: a new submit every 1/rate s, whatever the earlier ones are doing."""
    running: set[asyncio.Task[None]] = set()
    limits = httpx.Limits(max_connections=400, max_keepalive_connections=100)
    async with contextlib.AsyncExitStack() as clients:
        gateways = [
            await clients.enter_async_context(
                httpx.AsyncClient(base_url=url, timeout=20, limits=limits)
            )
            for url in soak.gateway_urls
        ]
        started = time.monotonic()
        i = 0
        while (now := time.monotonic()) - started < seconds:
            due = started + i / rate
            if due > now:
                await asyncio.sleep(due - now)
            submit = soak.request(i)
            soak.submits.append(submit)
            task = asyncio.create_task(submit_until_answered(soak, gateways, submit, i))
            running.add(task)
            task.add_done_callback(running.discard)
            i += 1
        await asyncio.gather(*running)


async def kill_in_turn(soak: Soak, every: float, stop: asyncio.Event) -> None:
    stack = soak.platform.stack
    n = 0
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every)
        if stop.is_set():
            return
        target = soak.plan.targets[n % len(soak.plan.targets)]
        n += 1
        killed_at = time.time()
        dead = stack.kill(target)
        await asyncio.sleep(DOWN_SECONDS)
        await stack.revive(dead)
        soak.kills.append({"target": target, "at": killed_at, "down_s": time.time() - killed_at})
        log.info("killed and revived %s (%.1f s down)", target, time.time() - killed_at)


async def settle(soak: Soak, ids: list[str]) -> dict[str, dict[str, Any]]:
    """Each task as last read; waits up to DRAIN_SECONDS for all to leave processing and
    have their credits settled by billing (credits.settled)."""
    headers = {"Authorization": f"Bearer {soak.api_key}"}
    tasks: dict[str, dict[str, Any]] = {}
    pending = set(ids)
    deadline = time.monotonic() + DRAIN_SECONDS
    async with httpx.AsyncClient(base_url=soak.base_url, timeout=20, headers=headers) as http:
        while True:
            for task_id in list(pending):
                task = (await http.get(f"/api/v1/tasks/{task_id}")).json()
                tasks[task_id] = task
                if task["status"] != "processing" and task["credits"]["settled"]:
                    pending.discard(task_id)
            if not pending or time.monotonic() > deadline:
                return tasks
            log.info("%d tasks still processing", len(pending))
            await asyncio.sleep(5)


async def ledger(soak: Soak) -> tuple[list[dict[str, Any]], dict[str, Any], dict[str, Any]]:
    """(the account's entries, the account, the ledger check)."""
    headers = {"Authorization": f"Bearer {soak.api_key}"}
    admin = {"Authorization": f"Bearer {soak.platform.stack.config.admin_token}"}
    entries: list[dict[str, Any]] = []
    async with httpx.AsyncClient(base_url=soak.base_url, timeout=60) as http:
        cursor = ""
        while True:
            page = (
                await http.get(
                    "/api/v1/usage", headers=headers, params={"limit": 200, "cursor": cursor}
                )
            ).json()
            entries += page["data"]
            if not page["next_cursor"]:
                break
            cursor = page["next_cursor"]
        account = (await http.get("/api/v1/account", headers=headers)).json()
        check = (await http.get("/admin/v1/ledger/check", headers=admin)).json()
    return entries, account, check


async def generations(platform: TwoChannels) -> Counter[str]:
    total: Counter[str] = Counter()
    async with httpx.AsyncClient() as http:
        for url in platform.sim_urls:
            total.update((await http.get(f"{url}/_sim/generated")).json())
    return total


PRICES = PriceList.load()


def expected_credits(task: dict[str, Any]) -> dict[str, Any]:
    """From the price list, not from the ledger: what the task's credits must say."""
    params = task["params"]
    quote = PRICES.quote(
        common_pb2.PriceItem(
            model=task["model"],
            resolution=params["resolution"],
            quality=params.get("quality", ""),
            n=params["n"],
        )
    )
    delivered = len(task["output"]["image_urls"]) if task["status"] == "completed" else 0
    return {
        "reserved": quote.credits,
        "charged": quote.unit_credits * delivered,
        "settled": True,
        "price_id": quote.price_id,
    }


def audit(
    soak: Soak,
    tasks: dict[str, dict[str, Any]],
    entries: list[dict[str, Any]],
    account: dict[str, Any],
    check: dict[str, Any],
    generated: Counter[str],
) -> dict[str, Any]:
    accepted = [s for s in soak.submits if s.task_id]
    statuses = Counter(tasks[s.task_id]["status"] for s in accepted if s.task_id)
    failed_types = Counter(t["error"]["type"] for t in tasks.values() if t["status"] == "failed")
    settled: dict[str, Counter[str]] = {}
    charged_in_ledger: Counter[str] = Counter()
    for e in entries:
        if e["task_id"] and e["book"] == "held" and e["kind"] in ("capture", "refund", "release"):
            settled.setdefault(e["task_id"], Counter())[e["kind"]] += 1
        if e["task_id"] and e["kind"] == "capture":
            # the account's side of a capture is its held -charge (the rest is a refund)
            charged_in_ledger[e["task_id"]] -= e["amount"]
    charged = {tid: t["credits"]["charged"] for tid, t in tasks.items()}
    # Settled once: a capture and/or its refund (one each at most), or a release alone.
    twice = [
        tid
        for tid, kinds in settled.items()
        if max(kinds.values()) > 1 or (kinds["release"] and (kinds["capture"] or kinds["refund"]))
    ]
    unsettled = [tid for tid in tasks if tid not in settled]
    wrong_charge = [tid for tid in tasks if charged_in_ledger[tid] != charged[tid]]
    mispriced = [tid for tid, t in tasks.items() if t["credits"] != expected_credits(t)]
    failed_but_charged = [
        tid for tid, t in tasks.items() if t["status"] == "failed" and charged[tid] != 0
    ]
    completed = [s for s in accepted if tasks[str(s.task_id)]["status"] == "completed"]
    gens_completed = sum(generated[prompt_digest(s.prompt)] for s in completed)
    gens_failed = sum(
        generated[prompt_digest(s.prompt)]
        for s in accepted
        if tasks[str(s.task_id)]["status"] == "failed"
    )
    unaccepted = [s for s in soak.submits if not s.task_id]
    generated_unaccepted = sum(generated[prompt_digest(s.prompt)] for s in unaccepted)
    regenerated = sum(1 for s in completed if generated[prompt_digest(s.prompt)] > 1)
    per_task = gens_completed / len(completed) if completed else float("nan")
    answers = Counter(a for s in soak.submits for a in s.answers)
    unexpected = {
        code: n
        for code, n in answers.items()
        if code not in {"200", "conn"} | {str(r) for r in RETRY}
    }
    stuck = statuses.get("processing", 0)
    expected_balance = GRANT - sum(charged.values())
    checks = {
        "every submit got an answer": not any(
            s.task_id is None and s.refused is None for s in soak.submits
        ),
        "no unexpected answer (500, 4xx)": not unexpected,
        "accepted = completed + failed (none stuck)": stuck == 0
        and statuses["completed"] + statuses["failed"] == len(accepted),
        "each task settled exactly once (captured or released)": not twice and not unsettled,
        "the ledger charged what each task says": not wrong_charge,
        "each task reserved its list price, charged per image delivered": not mispriced,
        "failed tasks charged nothing": not failed_but_charged,
        "balance = grant - charged, nothing held": account["balance"] == expected_balance
        and account["held"] == 0,
        "ledger check passes": bool(check.get("ok")),
        "no submit without a task was generated": generated_unaccepted == 0,
        f"generations per completed task <= {MAX_GENERATIONS_PER_TASK}": per_task
        <= MAX_GENERATIONS_PER_TASK,
    }
    return {
        "checks": checks,
        "submits": len(soak.submits),
        "submit_attempts": sum(s.attempts for s in soak.submits),
        "submit_answers": dict(answers),
        "gave_up": sum(1 for s in unaccepted if s.refused is None),
        "refused": Counter(str(s.refused) for s in unaccepted if s.refused),
        "accepted": len(accepted),
        "statuses": dict(statuses),
        "failed_by_type": dict(failed_types),
        "polls_during_load": dict(soak.polls),
        "kills": soak.kills,
        "generations_for_completed": gens_completed,
        "generations_per_completed_task": round(per_task, 4),
        "completed_tasks_generated_more_than_once": regenerated,
        "generations_for_failed_tasks": gens_failed,
        "generations_for_unaccepted_submits": generated_unaccepted,
        "charged": sum(charged.values()),
        "balance": account["balance"],
        "held": account["held"],
        "expected_balance": expected_balance,
        "ledger_check": check,
        "settled_twice": twice[:20],
        "unsettled": unsettled[:20],
        "wrong_charge": wrong_charge[:20],
        "mispriced": [
            {"task": tasks[tid], "expected": expected_credits(tasks[tid])} for tid in mispriced[:5]
        ],
        "mispriced_count": len(mispriced),
    }


def markdown(result: dict[str, Any], minutes: float, rate: float) -> str:
    lines = [
        f"# {result['title']}, {result['started']}",
        "",
        f"{minutes:g} min of load at {rate:g} tasks/s offered; upstream {UPSTREAM_LATENCY_MS} ms,"
        f" 10% 500s and 2% hangs at the first channel; {len(result['kills'])} SIGKILLs"
        f" ({', '.join(sorted(Counter(k['target'] for k in result['kills'])))}),"
        f" each down {DOWN_SECONDS:g} s.",
        "",
        "| check | |",
        "|---|---|",
        *(
            f"| {name} | {'passed' if ok else '**FAILED**'} |"
            for name, ok in result["checks"].items()
        ),
        "",
        "| figure | value |",
        "|---|---|",
    ]
    for name in (
        "submits",
        "submit_attempts",
        "submit_answers",
        "gave_up",
        "accepted",
        "statuses",
        "failed_by_type",
        "polls_during_load",
        "generations_per_completed_task",
        "completed_tasks_generated_more_than_once",
        "generations_for_failed_tasks",
        "generations_for_unaccepted_submits",
        "charged",
        "balance",
        "held",
    ):
        lines.append(f"| {name} | {result[name]} |")
    return "\n".join(lines) + "\n"


async def run(plan: Plan) -> int:
    """Start the platform as ``plan`` says, load it while killing its targets in turn,
    drain, audit; the results go to bench/results/<name>-<time>/. 0 when every check
    passed."""
    started = time.strftime("%Y-%m-%dT%H-%M-%SZ", time.gmtime())
    work = Path(tempfile.mkdtemp(prefix=f"pixelrelay-{plan.name}-"))
    async with two_channel_platform(
        work,
        latency_ms=UPSTREAM_LATENCY_MS,
        primary_timeout=5,
        dispatchers=plan.dispatchers,
        topology=plan.topology,
    ) as platform:
        billing = platform.stack.billing()
        account = await billing.create_account(plan.name, GRANT)
        api_key = (await billing.create_api_key(account.id, plan.name)).api_key
        await billing.close()
        soak = Soak(platform, api_key, random.Random(7), plan)
        await set_faults(
            platform.primary_sim_url,
            {"kind": "status", "status": 500, "match": FLAKY},
            {"kind": "hang", "seconds": 30, "match": HANG},
        )
        stop = asyncio.Event()
        killing = asyncio.create_task(kill_in_turn(soak, every=plan.kill_every, stop=stop))
        try:
            await load(soak, plan.rate, plan.minutes * 60)
        finally:
            stop.set()
            await killing
        log.info("load done: %d submits; draining", len(soak.submits))
        tasks = await settle(soak, [s.task_id for s in soak.submits if s.task_id])
        entries, balance, check = await ledger(soak)
        generated = await generations(platform)
    result = audit(soak, tasks, entries, balance, check, generated)
    result["started"] = started
    result["title"] = "Fault soak" if plan.name == "soak" else f"Fault soak ({plan.name})"
    out = RESULTS / f"{plan.name}-{started}"
    out.mkdir(parents=True)
    (out / "audit.json").write_text(json.dumps(result, indent=2, default=str))
    (out / "audit.md").write_text(markdown(result, plan.minutes, plan.rate))
    sys.stdout.write((out / "audit.md").read_text())
    if all(result["checks"].values()):
        shutil.rmtree(work, ignore_errors=True)
        return 0
    sys.stdout.write(f"\nThe platform's logs and databases are kept in {work}\n")
    return 1


async def main() -> int:
    return await run(
        Plan(
            name="soak",
            minutes=float(os.environ.get("SOAK_MINUTES", "4")),
            rate=float(os.environ.get("SOAK_RATE", "12")),
            kill_every=float(os.environ.get("SOAK_KILL_EVERY", "30")),
        )
    )


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="soak: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    sys.exit(asyncio.run(main()))
