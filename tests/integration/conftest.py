"""Real servers on free ports, in this process's event loop."""

from __future__ import annotations

import contextlib
import socket
import subprocess
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import nats
import pytest
from moto.server import ThreadedMotoServer

from pixelrelay.bus import ensure_streams
from pixelrelay_dev.children import wait_nats
from pixelrelay_dev.config import nats_server_binary
from pixelrelay_sim.app import create_app
from pixelrelay_sim.settings import SimSettings
from tests.utils.servers import serving


@dataclass
class Simulator:
    url: str
    control: httpx.AsyncClient

    async def faults(self, *rules: dict[str, object]) -> None:
        (await self.control.put("/_sim/faults", json=list(rules))).raise_for_status()

    async def requests(self) -> list[dict[str, object]]:
        return list((await self.control.get("/_sim/requests")).json())

    @property
    def endpoint(self) -> str:
        """Its root, as an Azure resource's endpoint (https://NAME.openai.azure.com)."""
        return self.url.removesuffix("/v1")


@contextlib.asynccontextmanager
async def running_simulator(settings: SimSettings | None = None) -> AsyncIterator[Simulator]:
    async with (
        serving(create_app(settings or SimSettings())) as port,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as control,
    ):
        yield Simulator(f"http://127.0.0.1:{port}/v1", control)


@pytest.fixture
async def simulator() -> AsyncIterator[Simulator]:
    async with running_simulator() as sim:
        yield sim


@pytest.fixture
async def backup_simulator() -> AsyncIterator[Simulator]:
    """A second upstream, for failover."""
    async with running_simulator() as sim:
        yield sim


@pytest.fixture
def s3() -> Iterator[str]:
    """A fresh S3 API (moto's server) of its own: its endpoint URL."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@contextlib.asynccontextmanager
async def nats_on(port: int, store: Path) -> AsyncIterator[None]:
    """A JetStream server on ``port`` with the platform's streams (no users: open)."""
    server = subprocess.Popen(  # noqa: ASYNC220 - started once, like `make run` does
        [nats_server_binary(), "-js", "-sd", str(store), "-a", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        await wait_nats(port, "nats")
        nc = await nats.connect(f"nats://127.0.0.1:{port}")
        await ensure_streams(nc.jetstream())
        await nc.close()
        yield
    finally:
        server.terminate()
        server.wait(10)
