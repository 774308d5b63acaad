"""One task through every real process: gateway → billing → NATS → dispatcher → simulator
→ storage → S3 → event → billing capture → poll → download."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from PIL import Image

from pixelrelay.grpc_server import check_health
from pixelrelay.v1 import public_api_pb2, public_api_pb2_grpc
from pixelrelay_sim.render import prompt_color
from tests.e2e.conftest import Platform
from tests.e2e.helpers import eventually, new_account, poll_until_done, upstream_requests

pytestmark = pytest.mark.e2e

SECRET_PROMPT = f"a lighthouse at dawn {uuid.uuid4().hex}"


async def balance(platform: Platform, key: str | None = None) -> dict[str, int]:
    response = await platform.http.get("/api/v1/account", headers=platform.auth(key))
    assert response.status_code == 200, response.text
    return dict(response.json())


async def test_basic_1k_task_completes_downloads_and_charges_7(platform: Platform) -> None:
    key = await new_account(platform, 2000)
    submitted = await platform.http.post(
        "/api/v1/images/generations",
        headers=platform.auth(key),
        json={"model": "gpt-image-2", "prompt": SECRET_PROMPT, "resolution": "1k"},
    )
    assert submitted.status_code == 200, submitted.text
    body = submitted.json()
    assert set(body) == {"id", "model", "status", "created_at"}
    assert body["status"] == "processing" and body["model"] == "gpt-image-2"
    assert body["id"].startswith("task_")

    task = await poll_until_done(platform.http, body["id"], platform.auth(key))
    assert task["status"] == "completed", task
    assert task["error"] is None
    assert task["credits"] == {"reserved": 7, "charged": 7, "settled": True, "price_id": "basic-1k"}
    [url] = task["output"]["image_urls"]
    assert task["expires_at"] >= task["created_at"] + 7 * 24 * 3600 - 60

    # The URL works without the API key and holds a real PNG of the requested size.
    async with httpx.AsyncClient() as anonymous:
        download = await anonymous.get(url)
    assert download.status_code == 200
    image = Image.open(io.BytesIO(download.content))
    assert image.format == "PNG" and image.size == (1024, 1024)
    assert image.convert("RGB").getpixel((2, 2)) == prompt_color(SECRET_PROMPT)
    assert task["output"]["images"][0]["bytes"] == len(download.content)

    assert await balance(platform, key) == {
        "account_id": (await balance(platform, key))["account_id"],
        "balance": 1993,
        "held": 0,
    }


async def test_image_urls_are_presigned_for_7_days_and_unguessable(platform: Platform) -> None:
    """A SigV4 presigned URL, 7 days long: the development object store checks signatures
    as MinIO, R2 and AWS do, so a URL changed to reach another object is refused."""
    submitted = await platform.http.post(
        "/api/v1/images/generations",
        headers=platform.auth(),
        json={"model": "gpt-image-2", "prompt": "url signing check"},
    )
    task = await poll_until_done(platform.http, submitted.json()["id"], platform.auth())
    url = httpx.URL(task["output"]["image_urls"][0])
    assert url.params["X-Amz-Expires"] == str(7 * 24 * 3600)
    assert len(url.params["X-Amz-Signature"]) == 64
    assert "X-Amz-Credential" in url.params
    assert url.path.endswith(f"/tasks/{task['id']}/0.png")
    async with httpx.AsyncClient() as anyone:
        assert (await anyone.get(url)).status_code == 200
        other = url.copy_with(path=url.path.replace("/0.png", "/1.png"))
        assert (await anyone.get(other)).status_code == 403
        assert (await anyone.get(url.copy_with(query=None))).status_code == 403


async def test_failing_upstream_fails_the_task_and_returns_the_credits(platform: Platform) -> None:
    key = await new_account(platform, 100)
    async with httpx.AsyncClient(base_url=platform.config.sim_url) as sim:
        await sim.put(
            "/_sim/faults", json=[{"kind": "status", "status": 500, "match": "UPSTREAM-DOWN"}]
        )
        try:
            submitted = await platform.http.post(
                "/api/v1/images/generations",
                headers=platform.auth(key),
                json={"model": "gpt-image-2", "prompt": "UPSTREAM-DOWN please"},
            )
            assert submitted.status_code == 200
            task = await poll_until_done(platform.http, submitted.json()["id"], platform.auth(key))
        finally:
            await sim.delete("/_sim/faults")
    assert task["status"] == "failed"
    assert task["error"]["code"] == 70001 and task["error"]["type"] == "upstream_failed"
    assert task["output"] is None
    assert task["credits"] == {"reserved": 7, "charged": 0, "settled": True, "price_id": "basic-1k"}
    account = await balance(platform, key)
    assert (account["balance"], account["held"]) == (100, 0)


async def test_moderation_rejection_fails_without_charge(platform: Platform) -> None:
    key = await new_account(platform, 100)
    async with httpx.AsyncClient(base_url=platform.config.sim_url) as sim:
        await sim.put(
            "/_sim/faults",
            json=[
                {
                    "kind": "status",
                    "status": 400,
                    "match": "FORBIDDEN-TOPIC",
                    "type": "image_generation_user_error",
                    "code": "moderation_blocked",
                    "message": "Your request was rejected by the safety system.",
                }
            ],
        )
        try:
            submitted = await platform.http.post(
                "/api/v1/images/generations",
                headers=platform.auth(key),
                json={"model": "gpt-image-2", "prompt": "FORBIDDEN-TOPIC"},
            )
            task = await poll_until_done(platform.http, submitted.json()["id"], platform.auth(key))
        finally:
            await sim.delete("/_sim/faults")
    assert task["status"] == "failed"
    assert task["error"]["type"] == "upstream_rejected"
    assert "moderation_blocked" in task["error"]["message"]
    assert (await balance(platform, key))["balance"] == 100


@pytest.mark.parametrize(
    ("headers", "body", "status", "code"),
    [
        ({}, {"model": "gpt-image-2", "prompt": "x"}, 401, 10001),
        (
            {"Authorization": "Bearer pr_live_" + "x" * 32},
            {"model": "gpt-image-2", "prompt": "x"},
            401,
            10002,
        ),
        ({"Authorization": "Basic abc"}, {"model": "gpt-image-2", "prompt": "x"}, 401, 10001),
        (None, {"model": "gpt-image-2"}, 400, 20002),
        (None, {"prompt": "x"}, 400, 20002),
        (None, {"model": "gpt-image-2", "prompt": "x", "colour": "red"}, 400, 20004),
        (None, {"model": "gpt-image-2", "prompt": 5}, 400, 20003),
        (None, {"model": "gpt-image-3", "prompt": "x"}, 400, 20003),
        (None, {"model": "gpt-image-2", "prompt": "x", "quality": "high"}, 400, 20005),
        (None, {"model": "gpt-image-2", "prompt": "x", "resolution": "4k"}, 400, 20003),
        (None, [1, 2], 400, 20001),
    ],
)
async def test_bad_requests_get_stable_errors_and_queue_nothing(
    platform: Platform, headers, body, status, code
) -> None:
    before = await balance(platform)
    response = await platform.http.post(
        "/api/v1/images/generations",
        json=body,
        headers=platform.auth() if headers is None else headers,
    )
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code
    assert error["request_id"].startswith("req_")
    assert response.headers["x-request-id"] == error["request_id"]
    assert await balance(platform) == before


async def test_malformed_json_is_400(platform: Platform) -> None:
    response = await platform.http.post(
        "/api/v1/images/generations",
        content=b'{"model": "gpt-image-2", "prompt": ',
        headers={**platform.auth(), "Content-Type": "application/json"},
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == 20001


@pytest.mark.parametrize(
    ("content_type", "status"),
    [
        ("application/json; charset=utf-8", 200),  # the direct submit route
        (None, 400),  # not declared as JSON: refused, as FastAPI always did
        ("application/merge-patch+json", 200),
        ("text/plain", 400),
    ],
)
async def test_submit_content_types(platform: Platform, content_type, status) -> None:
    headers = platform.auth()
    if content_type:
        headers["Content-Type"] = content_type
    response = await platform.http.post(
        "/api/v1/images/generations",
        content=b'{"model": "gpt-image-2", "prompt": "typed"}',
        headers=headers,
    )
    assert response.status_code == status, response.text
    if status == 400:
        assert response.json()["error"]["code"] == 20001


async def test_hot_routes_keep_routing_and_metrics(platform: Platform) -> None:
    task = await platform.http.post(
        "/api/v1/images/generations",
        headers=platform.auth(),
        json={"model": "gpt-image-2", "prompt": "metrics"},
    )
    polled = await platform.http.get(f"/api/v1/tasks/{task.json()['id']}", headers=platform.auth())
    assert polled.status_code == 200
    stray = await platform.http.get(
        f"/api/v1/tasks/{task.json()['id']}/extra", headers=platform.auth()
    )
    assert stray.status_code == 404 and stray.json()["error"]["code"] == 40004
    wrong_method = await platform.http.put("/api/v1/images/generations", headers=platform.auth())
    assert wrong_method.status_code == 405
    _, metrics_port = platform.config.service_ports()["gateway"]
    async with httpx.AsyncClient() as scraper:
        metrics = (await scraper.get(f"http://127.0.0.1:{metrics_port}/metrics")).text
    assert 'route="/api/v1/tasks/{task_id}",status="200"' in metrics
    assert 'route="/api/v1/images/generations",status="200"' in metrics


async def test_oversized_body_is_413(platform: Platform) -> None:
    response = await platform.http.post(
        "/api/v1/images/generations",
        headers=platform.auth(),
        json={"model": "gpt-image-2", "prompt": "x" * (2 * 1024 * 1024)},
    )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == 20006


async def test_oversized_body_without_a_length_is_413(platform: Platform) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"model": "gpt-image-2", "prompt": "'
        for _ in range(40):
            yield b"x" * 65536
        yield b'"}'

    response = await platform.http.post(
        "/api/v1/images/generations",
        headers={**platform.auth(), "Content-Type": "application/json"},
        content=chunks(),
    )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == 20006


async def test_insufficient_credits_is_402_and_nothing_is_queued(platform: Platform) -> None:
    key = await new_account(platform, 6)
    response = await platform.http.post(
        "/api/v1/images/generations",
        headers=platform.auth(key),
        json={"model": "gpt-image-2", "prompt": "too expensive"},
    )
    assert response.status_code == 402
    assert response.json()["error"]["code"] == 30001
    listing = await platform.http.get("/api/v1/tasks", headers=platform.auth(key))
    assert listing.json()["data"] == []
    assert (await balance(platform, key))["balance"] == 6


async def test_unknown_and_foreign_tasks_are_404(platform: Platform) -> None:
    submitted = await platform.http.post(
        "/api/v1/images/generations",
        headers=platform.auth(),
        json={"model": "gpt-image-2", "prompt": "mine"},
    )
    other = await new_account(platform, 10)
    for task_id, key in (("task_doesnotexist", None), (submitted.json()["id"], other)):
        response = await platform.http.get(f"/api/v1/tasks/{task_id}", headers=platform.auth(key))
        assert response.status_code == 404
        assert response.json()["error"]["code"] == 40001


async def test_grpc_public_api_is_the_same_api(platform: Platform) -> None:
    """An internal client over gRPC: same auth, same rules, same tasks as REST."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{platform.config.grpc_port}") as channel:
        stub = public_api_pb2_grpc.PublicApiStub(channel)
        meta = (("authorization", f"Bearer {platform.api_key}"),)
        task = await stub.CreateGeneration(
            public_api_pb2.CreateGenerationRequest(model="gpt-image-2", prompt="over grpc"),
            metadata=meta,
        )
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.CreateGeneration(
                public_api_pb2.CreateGenerationRequest(model="gpt-image-2", prompt="no key")
            )
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.CreateGeneration(
                public_api_pb2.CreateGenerationRequest(model="gpt-image-2"), metadata=meta
            )
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert dict(caught.value.trailing_metadata())["pixelrelay-error-code"] == "20002"
    done = await poll_until_done(platform.http, task.id, platform.auth())
    assert done["status"] == "completed"


async def test_list_tasks_newest_first_with_cursor(platform: Platform) -> None:
    key = await new_account(platform, 100)
    ids = []
    for i in range(3):
        response = await platform.http.post(
            "/api/v1/images/generations",
            headers=platform.auth(key),
            json={"model": "gpt-image-2", "prompt": f"list {i}"},
        )
        ids.append(response.json()["id"])
    first = (await platform.http.get("/api/v1/tasks?limit=2", headers=platform.auth(key))).json()
    assert [t["id"] for t in first["data"]] == ids[::-1][:2]
    second = (
        await platform.http.get(
            f"/api/v1/tasks?limit=2&cursor={first['next_cursor']}", headers=platform.auth(key)
        )
    ).json()
    assert [t["id"] for t in second["data"]] == ids[:1]
    assert second["next_cursor"] is None


async def test_list_tasks_filters_by_status(platform: Platform) -> None:
    key = await new_account(platform, 100)
    async with httpx.AsyncClient(base_url=platform.config.sim_url) as sim:
        await sim.put(
            "/_sim/faults", json=[{"kind": "status", "status": 500, "match": "LIST-FAIL"}]
        )
        try:
            ids = {}
            for prompt in ("LIST-FAIL one", "fine two"):
                response = await platform.http.post(
                    "/api/v1/images/generations",
                    headers=platform.auth(key),
                    json={"model": "gpt-image-2", "prompt": prompt},
                )
                ids[prompt] = response.json()["id"]
                await poll_until_done(platform.http, ids[prompt], platform.auth(key))
        finally:
            await sim.delete("/_sim/faults")
    for status, prompt in (("failed", "LIST-FAIL one"), ("completed", "fine two")):
        page = (
            await platform.http.get(f"/api/v1/tasks?status={status}", headers=platform.auth(key))
        ).json()
        assert [t["id"] for t in page["data"]] == [ids[prompt]]
    bad = await platform.http.get("/api/v1/tasks?status=done", headers=platform.auth(key))
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "status"
    bad_cursor = await platform.http.get("/api/v1/tasks?cursor=zzz", headers=platform.auth(key))
    assert bad_cursor.status_code == 400 and bad_cursor.json()["error"]["param"] == "cursor"


async def test_estimate_prices_without_submitting(platform: Platform) -> None:
    before = await balance(platform)
    response = await platform.http.post(
        "/api/v1/images/estimate",
        headers=platform.auth(),
        json={"model": "gpt-image-2-official", "prompt": "x", "quality": "high", "n": 4},
    )
    assert response.status_code == 200, response.text
    assert response.json()["credits"] == 744
    assert await balance(platform) == before


async def test_task_state_survives_a_gateway_restart(platform: Platform) -> None:
    submitted = await platform.http.post(
        "/api/v1/images/generations",
        headers=platform.auth(),
        json={"model": "gpt-image-2", "prompt": "before restart"},
    )
    task = await poll_until_done(platform.http, submitted.json()["id"], platform.auth())
    await platform.stack.restart("gateway")
    await platform.stack.wait_ready("gateway")
    again = await platform.http.get(f"/api/v1/tasks/{task['id']}", headers=platform.auth())
    assert again.status_code == 200
    assert again.json()["status"] == "completed"
    assert again.json()["output"] == task["output"]


async def test_every_service_has_health_and_metrics(platform: Platform) -> None:
    async with httpx.AsyncClient() as scraper:
        for name, (grpc_port, metrics_port) in platform.config.service_ports().items():
            assert await check_health(f"127.0.0.1:{grpc_port}"), name
            metrics = await scraper.get(f"http://127.0.0.1:{metrics_port}/metrics")
            assert metrics.status_code == 200, name
            assert "pixelrelay_" in metrics.text, name


async def test_sigterm_lets_the_dispatcher_finish_its_job(platform: Platform) -> None:
    prompt = f"SLOW job {uuid.uuid4().hex[:8]}"
    async with httpx.AsyncClient(base_url=platform.config.sim_url) as sim:
        await sim.put("/_sim/faults", json=[{"kind": "latency", "seconds": 2, "match": prompt}])
        try:
            submitted = await platform.http.post(
                "/api/v1/images/generations",
                headers=platform.auth(),
                json={"model": "gpt-image-2", "prompt": prompt},
            )
            task_id = submitted.json()["id"]
            await eventually(
                lambda: upstream_requests(platform, prompt), "the upstream call started"
            )
            assert await platform.stack.restart("dispatcher") == 0
        finally:
            await sim.delete("/_sim/faults")
    task = await poll_until_done(platform.http, task_id, platform.auth())
    await platform.stack.wait_ready("dispatcher")
    assert task["status"] == "completed"
    assert task["credits"]["charged"] == 7
    # Finished by the old process inside its grace period: one call, one attempt, where a
    # redelivery to the new process would have called the upstream again.
    assert await upstream_requests(platform, prompt) == 1
    assert len(task["attempts"]) == 1


async def test_admin_cli_provisions_a_working_key(platform: Platform) -> None:
    env = {
        **os.environ,
        "BILLING_ADDR": f"127.0.0.1:{platform.config.billing_port}",
        "PIXELRELAY_ADMIN_TOKEN": platform.config.admin_token,
    }

    def admin(*args: str, token: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "pixelrelay_cli", "admin", *args],
            env=env if token is None else {**env, "PIXELRELAY_ADMIN_TOKEN": token},
            capture_output=True,
            text=True,
            timeout=30,
        )

    def ok(*args: str) -> dict[str, Any]:
        done = admin(*args)
        assert done.returncode == 0, done.stderr
        return dict(json.loads(done.stdout))

    account = ok("create-account", "cli-test", "--grant", "42")
    key = ok("create-key", account["id"])["api_key"]
    assert await balance(platform, key) == {"account_id": account["id"], "balance": 42, "held": 0}
    assert ok("ledger-check")["ok"] is True

    for token in ("", "pxs_not-the-admin-credential-at-all"):
        refused = admin("top-up", account["id"], "1000000", "--reason", "x", token=token)
        assert refused.returncode == 1 and "10004 invalid_service_credential" in refused.stderr
    gateway = admin(
        "top-up",
        account["id"],
        "1000000",
        "--reason",
        "x",
        token=platform.config.credentials["gateway"],
    )
    assert gateway.returncode == 1 and "10005 caller_not_allowed" in gateway.stderr
    assert (await balance(platform, key))["balance"] == 42


async def test_gateway_serves_the_spec_in_docs_and_the_web_ui(platform: Platform) -> None:
    spec = await platform.http.get("/openapi.json")
    assert spec.json() == json.loads(
        (Path(__file__).parents[2] / "docs" / "openapi.json").read_text()
    )
    page = await platform.http.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "/api/v1/images/generations" in page.text


async def test_zz_ledger_balances_and_logs_hold_no_secrets(platform: Platform) -> None:
    """Runs last in this module: after everything above, the books and the logs are clean."""
    billing = platform.stack.billing()
    try:
        check = await billing.check_ledger()
    finally:
        await billing.close()
    assert check.ok, list(check.problems)
    for log_file in platform.stack.logs.glob("*.log"):
        text = log_file.read_text(errors="replace")
        assert SECRET_PROMPT not in text, log_file
        assert platform.api_key not in text, log_file
