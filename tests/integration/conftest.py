"""Real servers on free ports, in this process's event loop."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import httpx
import pytest
from moto.server import ThreadedMotoServer

from tests.utils.servers import serving
from upstream_sim.app import create_app
from upstream_sim.settings import SimSettings


@dataclass
class Simulator:
    url: str
    control: httpx.AsyncClient

    async def faults(self, *rules: dict[str, object]) -> None:
        (await self.control.put("/_sim/faults", json=list(rules))).raise_for_status()

    async def requests(self) -> list[dict[str, object]]:
        return list((await self.control.get("/_sim/requests")).json())


@contextlib.asynccontextmanager
async def running_simulator() -> AsyncIterator[Simulator]:
    async with (
        serving(create_app(SimSettings())) as port,
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
