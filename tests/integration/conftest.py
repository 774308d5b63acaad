"""Real servers on free ports, in this process's event loop."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
import uvicorn

from pixelrelay.metrics import free_port
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


class _QuietServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self):  # type: ignore[no-untyped-def]
        yield


@contextlib.asynccontextmanager
async def running_simulator() -> AsyncIterator[Simulator]:
    port = free_port()
    server = _QuietServer(
        uvicorn.Config(
            create_app(SimSettings()),
            host="127.0.0.1",
            port=port,
            log_config=None,
            access_log=False,
            lifespan="off",
        )
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as control:
        yield Simulator(f"http://127.0.0.1:{port}/v1", control)
    server.should_exit = True
    await task


@pytest.fixture
async def simulator() -> AsyncIterator[Simulator]:
    async with running_simulator() as sim:
        yield sim


@pytest.fixture
async def backup_simulator() -> AsyncIterator[Simulator]:
    """A second upstream, for failover."""
    async with running_simulator() as sim:
        yield sim
