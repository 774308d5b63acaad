"""The platform the benchmark and the soak run: the dev stack on leased ports with two
upstream channels on two providers' request shapes, as operators run them: a second
simulator on OpenAI's API ("sim-b", first in every route, where faults are injected)
failing over to the stack's own as an Azure OpenAI deployment ("simulator-azure": its
/openai/deployments/gpt-image-2/images/... paths, api-version, api-key header)."""

from __future__ import annotations

import contextlib
import hashlib
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from pixelrelay_dev.children import wait_http
from pixelrelay_dev.config import StackConfig
from pixelrelay_dev.devstack import Stack
from pixelrelay_dev.ports import lease_ports

CHANNELS = """
channels:
  sim-b:
    base_url: http://127.0.0.1:{primary}/v1
    model: gpt-image-2
    connect_timeout: 1
    timeout: {timeout}
    max_concurrency: 64
    capabilities: {{max_n: 4, masks: true, transparency: true, formats: [png, jpeg, webp]}}
  simulator-azure:
    provider: azure
    # The launcher points it at the stack's simulator (StackConfig.simulator_channels).
    base_url: http://127.0.0.1:8090
    deployment: gpt-image-2
    api_version: 2025-04-01-preview
    model: gpt-image-2
    max_concurrency: 64
    capabilities: {{max_n: 4, masks: true, transparency: true, formats: [png, jpeg, webp]}}
routes:
  gpt-image-2: {{channels: [sim-b, simulator-azure]}}
  gpt-image-2-official: {{channels: [sim-b, simulator-azure]}}
"""


@dataclass
class TwoChannels:
    stack: Stack
    primary_sim_url: str  # sim-b, the first channel

    @property
    def sim_urls(self) -> list[str]:
        return [self.primary_sim_url, self.stack.config.sim_url]


@contextlib.asynccontextmanager
async def two_channel_platform(
    work: Path,
    *,
    latency_ms: int,
    dispatchers: int = 2,
    primary_timeout: float = 180.0,
    env: dict[str, str] | None = None,
    topology: dict[str, Any] | None = None,
) -> AsyncIterator[TwoChannels]:
    """Start both simulators and the stack in ``work``; stop them all on the way out."""
    primary_lease = lease_ports(1)
    [primary_port] = primary_lease.ports
    (work / "channels.yaml").write_text(
        CHANNELS.format(primary=primary_port, timeout=primary_timeout)
    )
    primary = subprocess.Popen(
        [sys.executable, "-m", "pixelrelay_sim"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={
            **os.environ,
            "SIM_PORT": str(primary_port),
            "SIM_LATENCY_MS": str(latency_ms),
            "LOG_LEVEL": "warning",
        },
    )
    config = StackConfig.leased_ports(
        work,
        dispatchers=dispatchers,
        sim_latency_ms=latency_ms,
        **(topology or {}),
        extra_env={
            "CHANNELS_FILE": str(work / "channels.yaml"),
            "LOG_LEVEL": "warning",
            "SIM_LOG_LEVEL": "warning",
            **(env or {}),
        },
    )
    stack = Stack(config)
    try:
        primary_url = f"http://127.0.0.1:{primary_port}"
        await wait_http(f"{primary_url}/healthz", "second simulator")
        await stack.start()
        yield TwoChannels(stack, primary_url)
    finally:
        await stack.stop()
        primary.terminate()
        primary.wait()


async def set_faults(sim_url: str, *rules: dict[str, Any]) -> None:
    """Replace a simulator's fault rules (pixelrelay_sim/faults.py); none clears them."""
    async with httpx.AsyncClient(base_url=sim_url) as sim:
        (await sim.put("/_sim/faults", json=list(rules))).raise_for_status()


def prompt_digest(prompt: str) -> str:
    """How the simulators name a prompt in what they report (they keep no prompts)."""
    return hashlib.sha256(prompt.encode()).hexdigest()
