from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from pixelrelay_gateway.inputs.decode_pool import DecodeWorkers


@pytest.fixture(scope="session")
async def decode_workers() -> AsyncIterator[DecodeWorkers]:
    """Real worker processes, as the gateway runs them, shared by the tests that decode."""
    workers = DecodeWorkers(2, timeout=10.0)
    yield workers
    await workers.close()
