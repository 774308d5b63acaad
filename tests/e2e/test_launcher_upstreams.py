"""`make run` against a real upstream: OPENAI_API_KEY (and OPENAI_BASE_URL) or the
operator's own CHANNELS_FILE route prompts there, and not to the simulator. A second
simulator, which demands its own key as OpenAI does, stands in for the real host: no test
calls the internet."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from pixelrelay_dev.children import wait_http
from pixelrelay_dev.config import StackConfig
from pixelrelay_dev.devstack import Stack, _banner
from pixelrelay_dev.ports import lease_ports
from tests.e2e.helpers import poll_until_done

pytestmark = pytest.mark.e2e
STAND_IN_KEY = "sk-stand-in-" + "k" * 24


@pytest.fixture
def stand_in(tmp_path: Path) -> Iterator[str]:
    """An OpenAI-compatible host on this machine that answers only STAND_IN_KEY; → its /v1."""
    with lease_ports(1) as lease:
        (port,) = lease.ports
        log = (tmp_path / "stand-in.log").open("wb")
        process = subprocess.Popen(
            [sys.executable, "-m", "pixelrelay_sim"],
            env={"SIM_PORT": str(port), "SIM_API_KEY": STAND_IN_KEY, "SIM_LATENCY_MS": "20"},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            process.terminate()
            process.wait(10)
            log.close()


async def asked_for(host: str, prompt: str) -> int:
    digest = hashlib.sha256(prompt.encode()).hexdigest()
    async with httpx.AsyncClient(base_url=host) as sim:
        seen = (await sim.get("/_sim/requests")).json()
    return sum(1 for r in seen if r["prompt_sha256"] == digest)


async def generate_once(stack: Stack, prompt: str) -> dict[str, object]:
    _account, key = await stack.dev_account()
    auth = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=stack.config.base_url, timeout=30) as http:
        submitted = await http.post(
            "/api/v1/images/generations",
            headers=auth,
            json={"model": "gpt-image-2", "prompt": prompt, "resolution": "1k"},
        )
        assert submitted.status_code == 200, submitted.text
        return await poll_until_done(http, submitted.json()["id"], auth)


async def test_openai_api_key_routes_make_run_to_that_host(tmp_path: Path, stand_in: str) -> None:
    await wait_http(f"{stand_in}/healthz", "stand-in")
    config = StackConfig.leased_ports(
        tmp_path / "var",
        sim_latency_ms=20,
        openai_api_key=STAND_IN_KEY,
        openai_base_url=f"{stand_in}/v1",
    )
    stack = Stack(config)
    await stack.start()
    try:
        task = await generate_once(stack, "routed to the stand-in")
        assert task["status"] == "completed", task
        assert await asked_for(stand_in, "routed to the stand-in") == 1
        assert await asked_for(config.sim_url, "routed to the stand-in") == 0
        _account, key = await stack.dev_account()
        banner = _banner(stack, key, _account)
        assert f"openai → {stand_in}/v1" in banner and "simulator →" not in banner
    finally:
        await stack.stop()


async def test_a_channels_file_of_ones_own_is_honoured_with_its_keys(
    tmp_path: Path, stand_in: str
) -> None:
    """Its key variable comes from the operator's environment; the simulator stays out."""
    await wait_http(f"{stand_in}/healthz", "stand-in")
    channels = tmp_path / "mine.yaml"
    channels.write_text(
        f"""
channels:
  provider-a:
    base_url: {stand_in}/v1
    api_key_env: PROVIDER_A_KEY
    model: gpt-image-2
routes:
  gpt-image-2: {{channels: [provider-a]}}
  gpt-image-2-official: {{channels: [provider-a]}}
"""
    )
    config = StackConfig.leased_ports(
        tmp_path / "var",
        sim_latency_ms=20,
        channels_file=str(channels),
        # also set, and not used: a channel file of one's own comes first
        openai_api_key="sk-not-this-one",
        extra_env={"PROVIDER_A_KEY": STAND_IN_KEY},
    )
    stack = Stack(config)
    await stack.start()
    try:
        task = await generate_once(stack, "routed by my file")
        assert task["status"] == "completed", task
        assert await asked_for(stand_in, "routed by my file") == 1
        assert await asked_for(config.sim_url, "routed by my file") == 0
        assert stack.upstreams.live == [f"provider-a → {stand_in}/v1"]
    finally:
        await stack.stop()


async def test_the_simulator_is_a_fallback_only_when_asked(tmp_path: Path) -> None:
    """A real host that refuses the key: with PIXELRELAY_SIMULATOR_FALLBACK the task fails
    over to the simulator; the file written for OPENAI_API_KEY routes openai first."""
    config = StackConfig.leased_ports(
        tmp_path / "var",
        sim_latency_ms=20,
        openai_api_key=STAND_IN_KEY,
        openai_base_url="http://127.0.0.1:9/v1",  # discard: nothing answers
        simulator_fallback=True,
    )
    stack = Stack(config)
    assert [line.split(" → ")[0] for line in stack.upstreams.live] == ["openai", "simulator"]
    await stack.start()
    try:
        task = await generate_once(stack, "fell back")
        assert task["status"] == "completed", task
        assert await asked_for(config.sim_url, "fell back") == 1
    finally:
        await stack.stop()
