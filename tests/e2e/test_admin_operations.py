"""The operator's task lookup, channel health and an account's usage (GET /admin/v1/tasks/{id},
/admin/v1/channels, /admin/v1/accounts/{id}/usage/tasks; Admin.GetTask, ListChannels and
ListTaskUsage on gRPC): billing judges the token."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest

from pixelrelay.callers import GATEWAY
from pixelrelay.errors import ApiError, E
from pixelrelay.ids import random_token
from pixelrelay.v1 import public_api_pb2
from pixelrelay_cli.admin_client import AdminClient
from tests.e2e.conftest import Platform
from tests.e2e.helpers import admin, eventually, faults, new_account, poll_until_done

pytestmark = pytest.mark.e2e


async def _task(platform: Platform, prompt: str) -> dict[str, Any]:
    submitted = await platform.http.post(
        "/api/v1/images/generations",
        headers=platform.auth(),
        json={"model": "gpt-image-2", "prompt": prompt, "resolution": "1k"},
    )
    assert submitted.status_code == 200, submitted.text
    return await poll_until_done(platform.http, submitted.json()["id"], platform.auth())


async def _channels(platform: Platform) -> dict[str, dict[str, Any]]:
    listed = await platform.http.get("/admin/v1/channels", headers=admin(platform))
    assert listed.status_code == 200, listed.text
    return {c["name"]: c for c in listed.json()["data"]}


@pytest.mark.security
@pytest.mark.parametrize(
    "path",
    [
        "/admin/v1/tasks/task_abc",
        "/admin/v1/channels",
        "/admin/v1/accounts/acct_abc/usage/tasks",
        "/admin/v1/margin",
    ],
)
@pytest.mark.parametrize("token", [None, "{api_key}", "{gateway}", "pxs_" + "x" * 40])
async def test_only_the_operator_reads_tasks_and_channels(
    platform: Platform, path: str, token: str | None
) -> None:
    headers = {}
    if token is not None:
        bearer = token.format(
            api_key=platform.api_key, gateway=platform.config.credentials[GATEWAY]
        )
        headers["Authorization"] = f"Bearer {bearer}"
    refused = await platform.http.get(path, headers=headers)
    assert refused.status_code == 401, refused.text
    assert refused.json()["error"]["code"] == E.ADMIN_TOKEN_INVALID.code


async def test_the_operator_finds_any_accounts_task_with_its_owner(platform: Platform) -> None:
    done = await _task(platform, f"lookup {random_token(6)}")
    found = await platform.http.get(f"/admin/v1/tasks/{done['id']}", headers=admin(platform))
    assert found.status_code == 200, found.text
    task = found.json()
    assert task["account_id"] == platform.account_id and task["key_id"].startswith("key_")
    assert {k: task[k] for k in done if k not in ("output", "attempts")} == {
        k: v for k, v in done.items() if k not in ("output", "attempts")
    }
    # the operator sees each attempt's usage and cost besides what the customer sees
    assert [{k: a[k] for k in ("channel", "outcome", "latency_ms")} for a in task["attempts"]] == (
        done["attempts"]
    )
    assert task["attempts"][0]["usage"]["output_tokens"] > 0
    assert task["attempts"][0]["channel"] == "simulator"

    missing = await platform.http.get("/admin/v1/tasks/task_nothere", headers=admin(platform))
    assert (missing.status_code, missing.json()["error"]["code"]) == (404, E.TASK_NOT_FOUND.code)
    bad = await platform.http.get("/admin/v1/tasks/not-a-task", headers=admin(platform))
    assert (bad.status_code, bad.json()["error"]["code"]) == (400, E.INVALID_PARAMETER.code)

    client = AdminClient(f"127.0.0.1:{platform.config.grpc_port}", platform.config.admin_token)
    intruder = AdminClient(f"127.0.0.1:{platform.config.grpc_port}", platform.api_key)
    try:
        over_grpc = await client.get_task(done["id"])
        assert (over_grpc.task.id, over_grpc.account_id) == (done["id"], platform.account_id)
        assert (await client.list_channels()).window_seconds in (0, 300)
        with pytest.raises(ApiError) as refused:
            await intruder.get_task(done["id"])
        assert refused.value.kind is E.ADMIN_TOKEN_INVALID
    finally:
        await client.close()
        await intruder.close()


async def test_the_channels_appear_closed_after_a_completed_task(platform: Platform) -> None:
    done = await _task(platform, f"healthy {random_token(6)}")
    assert done["status"] == "completed"

    async def reported() -> bool:
        sim = (await _channels(platform)).get("simulator")
        return bool(sim and sim["requests"] >= 1 and sim["p50_ms"])

    await eventually(reported, "the simulator channel reported with a call")
    sim = (await _channels(platform))["simulator"]
    assert (sim["breaker"], sim["replicas"]) == ("closed", 1)


async def test_a_failing_channel_shows_its_errors_and_open_breaker(platform: Platform) -> None:
    before = (await _channels(platform)).get("simulator", {"errors": 0})["errors"]
    prompt = f"failing {random_token(6)}"
    await faults(platform, {"kind": "status", "status": 500, "match": prompt, "times": 3})
    try:
        for _ in range(3):  # three failures in a row open the breaker
            assert (await _task(platform, prompt))["status"] == "failed"

        async def errors_shown() -> bool:
            sim = (await _channels(platform))["simulator"]
            return bool(sim["errors"] >= before + 3 and sim["breaker"] != "closed")

        await eventually(errors_shown, "the failures in the channel's health", within=10)
        sim = (await _channels(platform))["simulator"]
        assert sim["error_rate"] > 0 and sum(sim["errors_by_class"].values()) == sim["errors"]
        assert sim["errors_by_class"]["upstream_unavailable"] >= 3  # a public name, not a class
    finally:
        await faults(platform)
    assert (await _task(platform, f"recovered {random_token(6)}"))["status"] == "completed"


def test_the_cli_looks_up_a_task_and_lists_channels(platform: Platform) -> None:
    env = {
        **os.environ,
        "PIXELRELAY_DATA_DIR": "/nonexistent",
        "PIXELRELAY_ADMIN_TOKEN": platform.config.admin_token,
        "GATEWAY_ADDR": f"127.0.0.1:{platform.config.grpc_port}",
    }

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "pixelrelay_cli", "admin", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    missing = cli("get-task", "task_nothere")
    assert missing.returncode == 1 and "40001" in missing.stderr, missing.stderr
    listed = cli("channels")
    assert listed.returncode == 0, listed.stderr
    assert [c["name"] for c in json.loads(listed.stdout)["channels"]] == ["simulator"]
    usage = cli("usage", platform.account_id, "--limit", "1")
    assert usage.returncode == 0, usage.stderr
    assert len(json.loads(usage.stdout)["tasks"]) <= 1  # the account's latest, if any


async def test_an_accounts_usage_is_the_same_for_the_operator_and_for_a_period(
    platform: Platform,
) -> None:
    """GET /api/v1/usage/tasks's since/until, and the operator's view of the same lines
    (GET /admin/v1/accounts/{id}/usage/tasks, Admin.ListTaskUsage, `pixelrelay admin usage`)."""
    key = await new_account(platform, 100)
    done = []
    for i in range(2):
        submitted = await platform.http.post(
            "/api/v1/images/generations",
            headers=platform.auth(key),
            json={"model": "gpt-image-2", "prompt": f"usage period {i}", "resolution": "1k"},
        )
        done.append(
            await poll_until_done(platform.http, submitted.json()["id"], platform.auth(key))
        )
    first, last = min(t["created_at"] for t in done), max(t["created_at"] for t in done)
    account_id = (await platform.http.get("/api/v1/account", headers=platform.auth(key))).json()[
        "account_id"
    ]

    async def mine(**period: int) -> list[str]:
        page = await platform.http.get(
            "/api/v1/usage/tasks", params=period, headers=platform.auth(key)
        )
        assert page.status_code == 200, page.text
        return [line["task_id"] for line in page.json()["data"]]

    both = [t["id"] for t in done][::-1]
    assert await mine() == both
    assert await mine(since=first, until=last + 1) == both
    assert await mine(since=last + 1) == []
    assert await mine(until=first) == []
    bad = await platform.http.get(
        "/api/v1/usage/tasks", params={"since": -1}, headers=platform.auth(key)
    )
    assert (bad.status_code, bad.json()["error"]["code"]) == (400, E.INVALID_PARAMETER.code)

    customer = (await platform.http.get("/api/v1/usage/tasks", headers=platform.auth(key))).json()
    operator = await platform.http.get(
        f"/admin/v1/accounts/{account_id}/usage/tasks", headers=admin(platform)
    )
    assert operator.status_code == 200, operator.text
    assert operator.json() == customer
    assert [line["charged"] for line in customer["data"]] == [
        t["credits"]["charged"] for t in done
    ][::-1]
    bad_id = await platform.http.get(
        "/admin/v1/accounts/not-an-account/usage/tasks", headers=admin(platform)
    )
    assert (bad_id.status_code, bad_id.json()["error"]["code"]) == (400, E.INVALID_PARAMETER.code)

    client = AdminClient(f"127.0.0.1:{platform.config.grpc_port}", platform.config.admin_token)
    intruder = AdminClient(f"127.0.0.1:{platform.config.grpc_port}", key)
    try:
        over_grpc = await client.list_task_usage(
            account_id, public_api_pb2.ListTaskUsageRequest(since=last + 1)
        )
        assert list(over_grpc.tasks) == []
        with pytest.raises(ApiError) as refused:
            await intruder.list_task_usage(account_id, public_api_pb2.ListTaskUsageRequest())
        assert refused.value.kind is E.ADMIN_TOKEN_INVALID
    finally:
        await client.close()
        await intruder.close()


async def test_the_margin_is_the_upstreams_reported_usage_at_the_channel_price(
    platform: Platform,
) -> None:
    """A known mix: the simulator reports its usage, the channel's price (make run's
    channels.yaml: $5 / $10 / $40 per million text-in / image-in / image-out tokens)
    makes it a cost; a failed task is charged nothing and cost nothing."""
    key = await new_account(platform, 2000)
    fail = f"margin fails {random_token(6)}"
    mix = [
        ({"model": "gpt-image-2", "prompt": "margin basic", "resolution": "1k"}, "completed"),
        (
            {"model": "gpt-image-2-official", "prompt": "margin low", "quality": "low", "n": 2},
            "completed",
        ),
        (
            {"model": "gpt-image-2-official", "prompt": "margin high", "quality": "high"},
            "completed",
        ),
        ({"model": "gpt-image-2", "prompt": fail, "resolution": "1k"}, "failed"),
    ]
    await faults(platform, {"kind": "status", "status": 500, "match": fail, "times": 1})
    tasks = []
    try:
        for body, status in mix:
            submitted = await platform.http.post(
                "/api/v1/images/generations", headers=platform.auth(key), json=body
            )
            done = await poll_until_done(platform.http, submitted.json()["id"], platform.auth(key))
            assert done["status"] == status, done
            tasks.append(done)
    finally:
        await faults(platform)
    account_id = (await platform.http.get("/api/v1/account", headers=platform.auth(key))).json()[
        "account_id"
    ]

    expected_cost = 0
    for task in tasks:
        seen = await platform.http.get(f"/admin/v1/tasks/{task['id']}", headers=admin(platform))
        for attempt in seen.json()["attempts"]:
            usage = attempt["usage"] or {}
            cost = (
                usage.get("input_text_tokens", 0) * 5
                + usage.get("input_image_tokens", 0) * 10
                + usage.get("output_tokens", 0) * 40
            )
            assert attempt["cost_micros"] == (cost if attempt["outcome"] == "ok" else 0)
            expected_cost += cost
    # the simulator's own rule for the low pair: 272 output tokens an image
    low = await platform.http.get(f"/admin/v1/tasks/{tasks[1]['id']}", headers=admin(platform))
    assert low.json()["attempts"][0]["usage"]["output_tokens"] == 2 * 272

    charged = sum(t["credits"]["charged"] for t in tasks)
    assert charged == 7 + 2 * 6 + 186
    report = await platform.http.get(
        "/admin/v1/margin",
        params={"since": min(t["created_at"] for t in tasks), "group_by": "account"},
        headers=admin(platform),
    )
    assert report.status_code == 200, report.text
    (line,) = [row for row in report.json()["data"] if row["key"] == account_id]
    assert line == {
        "key": account_id,
        "tasks": 3,
        "credits_charged": charged,
        "revenue_micros": charged * 1000,
        "cost_micros": expected_cost,
        "margin_micros": charged * 1000 - expected_cost,
        "unpriced_tasks": 0,
    }
    by_channel = await platform.http.get(
        "/admin/v1/margin", params={"group_by": "channel"}, headers=admin(platform)
    )
    assert [row["key"] for row in by_channel.json()["data"]] == ["simulator"]

    bad = await platform.http.get(
        "/admin/v1/margin", params={"group_by": "key"}, headers=admin(platform)
    )
    assert (bad.status_code, bad.json()["error"]["param"]) == (400, "group_by")
    refused = await platform.http.get("/admin/v1/margin", headers=platform.auth(key))
    assert refused.status_code == 401
