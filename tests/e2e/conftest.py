"""One platform for the end-to-end tests: every process started for real on free ports."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from pixelrelay.devstack import Stack, StackConfig


@dataclass
class Platform:
    stack: Stack
    account_id: str
    api_key: str
    http: httpx.AsyncClient

    @property
    def config(self) -> StackConfig:
        return self.stack.config

    def auth(self, key: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {key or self.api_key}"}


@pytest.fixture(scope="session")
def stack_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    yield tmp_path_factory.mktemp("platform")


@contextlib.asynccontextmanager
async def running_platform(data_dir: Path, *, allow_private: bool) -> AsyncIterator[Platform]:
    env = {"SWEEP_INTERVAL": "0.5", "FETCH_ALLOW_PRIVATE": str(allow_private).lower()}
    config = StackConfig.free_ports(data_dir, sim_latency_ms=50, extra_env=env)
    stack = Stack(config)
    await stack.start()
    try:
        account_id, api_key = await stack.dev_account("e2e")
        async with httpx.AsyncClient(base_url=stack.config.base_url, timeout=30) as http:
            yield Platform(stack, account_id, api_key, http)
    finally:
        await stack.stop()


@pytest.fixture(scope="session")
async def platform(stack_dir: Path) -> AsyncIterator[Platform]:
    """Shared by the tests that leave the platform as they found it. Reference URLs may
    point at this machine (the tests serve them from loopback)."""
    async with running_platform(stack_dir, allow_private=True) as running:
        yield running


@pytest.fixture(scope="module")
async def fragile_platform(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Platform]:
    """A platform of its own for tests that break components; production fetch policy."""
    async with running_platform(tmp_path_factory.mktemp("fragile"), allow_private=False) as running:
        yield running
