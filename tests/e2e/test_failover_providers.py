"""Failover across providers: an OpenAI channel and Azure OpenAI deployments on the
simulator (it answers both request shapes), over the whole platform.

The routes:
    gpt-image-2           [simulator (OpenAI), simulator-azure (Azure, deployed)]
    gpt-image-2-official  [azure-missing (a deployment the resource lacks: 404),
                           simulator-azure, simulator]
A refused key or a missing deployment holds its channel open for 5 minutes
(router.AUTH_FAILURE_COOLDOWN): the test that makes simulator-azure refuse its key runs
last here, as its module's platform is its own.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import Platform, running_platform
from tests.e2e.helpers import admin, faults, ledger_ok, new_account, poll_until_done
from tests.e2e.test_billing import wait_for_balance

pytestmark = pytest.mark.e2e

API_VERSION = "2025-04-01-preview"
CAPABILITIES = "{max_n: 4, masks: true, transparency: true, formats: [png, jpeg, webp]}"
# The launcher points each at the stack's simulator (StackConfig.simulator_channels).
CHANNELS = f"""
channels:
  simulator:
    base_url: http://127.0.0.1:8090/v1
    model: gpt-image-2
    capabilities: {CAPABILITIES}
  simulator-azure:
    provider: azure
    base_url: http://127.0.0.1:8090
    deployment: gpt-image-2
    api_version: {API_VERSION}
    api_key_env: AZURE_OPENAI_KEY
    model: gpt-image-2
    capabilities: {CAPABILITIES}
  azure-missing:
    provider: azure
    base_url: http://127.0.0.1:8090
    deployment: not-deployed
    api_version: {API_VERSION}
    api_key_env: AZURE_OPENAI_KEY
    model: gpt-image-2
    capabilities: {CAPABILITIES}
routes:
  gpt-image-2: {{channels: [simulator, simulator-azure]}}
  gpt-image-2-official: {{channels: [azure-missing, simulator-azure, simulator]}}
"""


@pytest.fixture(scope="module")
async def providers_platform(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Platform]:
    data_dir = tmp_path_factory.mktemp("providers")
    channels_file = data_dir / "channels.yaml"
    channels_file.write_text(CHANNELS)
    env = {"CHANNELS_FILE": str(channels_file), "AZURE_OPENAI_KEY": "azure-simulator-key"}
    async with running_platform(
        data_dir,
        allow_private=False,
        env=env,
        simulator_channels={
            "simulator": "openai",
            "simulator-azure": "azure",
            "azure-missing": "azure",
        },
    ) as p:
        yield p


async def submit(p: Platform, key: str, model: str, prompt: str) -> str:
    answer = await p.http.post(
        "/api/v1/images/generations",
        headers=p.auth(key),
        json={"model": model, "prompt": prompt},
    )
    assert answer.status_code == 200, answer.text
    return str(answer.json()["id"])


async def attempts(p: Platform, task_id: str) -> list[tuple[str, str]]:
    """The operator's view of the task's attempts: (channel, outcome)."""
    found = await p.http.get(f"/admin/v1/tasks/{task_id}", headers=admin(p))
    assert found.status_code == 200, found.text
    return [(a["channel"], a["outcome"]) for a in found.json()["attempts"]]


async def sim_requests(p: Platform, prompt: str) -> list[dict[str, Any]]:
    """What the simulator received for ``prompt``, in order (provider, deployment, ...)."""
    digest = hashlib.sha256(prompt.encode()).hexdigest()
    async with httpx.AsyncClient(base_url=p.config.sim_url) as sim:
        seen = (await sim.get("/_sim/requests")).json()
    return [r for r in seen if r["prompt_sha256"] == digest]


async def test_a_failing_openai_channel_fails_over_to_an_azure_deployment(
    providers_platform: Platform,
) -> None:
    p = providers_platform
    key = await new_account(p, 100)
    prompt = f"cross-provider {uuid.uuid4().hex[:8]}"
    await faults(p, {"kind": "status", "status": 500, "match": prompt, "provider": "openai"})
    try:
        task = await poll_until_done(
            p.http, await submit(p, key, "gpt-image-2", prompt), p.auth(key)
        )
    finally:
        await faults(p)
    assert task["status"] == "completed", task
    assert await attempts(p, task["id"]) == [
        ("simulator", "upstream_unavailable"),
        ("simulator-azure", "ok"),
    ]
    seen = await sim_requests(p, prompt)
    assert [(r["provider"], r["deployment"], r["key_header"]) for r in seen] == [
        ("openai", None, "authorization"),
        ("azure", "gpt-image-2", "api-key"),
    ]
    assert seen[1]["api_version"] == API_VERSION
    # Charged once, the price of the request, whichever provider made it.
    assert task["credits"]["charged"] == 7
    await wait_for_balance(p, key, {"balance": 93, "held": 0})
    await ledger_ok(p)


async def test_a_missing_deployment_fails_over_to_the_next_channel(
    providers_platform: Platform,
) -> None:
    p = providers_platform
    key = await new_account(p, 1000)
    prompt = f"missing deployment {uuid.uuid4().hex[:8]}"
    task_id = await submit(p, key, "gpt-image-2-official", prompt)
    task = await poll_until_done(p.http, task_id, p.auth(key))
    assert task["status"] == "completed", task
    # The first task of the module on this route: azure-missing is tried, and answers 404.
    # (Its breaker is then held open: later tasks skip it.)
    assert await attempts(p, task_id) == [
        ("azure-missing", "upstream_not_found"),
        ("simulator-azure", "ok"),
    ]
    assert [(r["provider"], r["deployment"]) for r in await sim_requests(p, prompt)] == [
        ("azure", "gpt-image-2")  # the 404 is answered before the request is read
    ]
    # The tier the deployment reports ("auto" made medium: 47, as in test_billing), once.
    assert task["credits"]["charged"] == 47
    await wait_for_balance(p, key, {"balance": 1000 - 47, "held": 0})
    await ledger_ok(p)


async def test_when_every_provider_fails_nothing_is_charged(
    providers_platform: Platform,
) -> None:
    """Last in this module: the refused key holds simulator-azure open for 5 minutes."""
    p = providers_platform
    key = await new_account(p, 1000)
    prompt = f"all fail {uuid.uuid4().hex[:8]}"
    await faults(
        p,
        {"kind": "status", "status": 401, "code": "401", "match": prompt, "provider": "azure"},
        {"kind": "status", "status": 503, "match": prompt, "provider": "openai"},
    )
    try:
        task = await poll_until_done(
            p.http, await submit(p, key, "gpt-image-2-official", prompt), p.auth(key)
        )
    finally:
        await faults(p)
    assert task["status"] == "failed", task
    tried = await attempts(p, task["id"])
    assert tried[0] in (
        ("azure-missing", "upstream_not_found"),
        ("azure-missing", "skipped_open"),
    )
    assert tried[1:] == [
        ("simulator-azure", "upstream_auth_failed"),
        ("simulator", "upstream_unavailable"),
    ]
    assert task["credits"]["charged"] == 0
    await wait_for_balance(p, key, {"balance": 1000, "held": 0})
    await ledger_ok(p)
