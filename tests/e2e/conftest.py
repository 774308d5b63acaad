"""One platform for the end-to-end tests: every process started for real on free ports."""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from pixelrelay_dev.config import StackConfig
from pixelrelay_dev.devstack import Stack
from tests.utils.databases import POSTGRES_URL, postgres_database
from tests.utils.servers import refusing_port


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

    def arm(self, crash_point: str) -> None:
        """The next process to reach ``crash_point`` dies there."""
        (self.stack.config.data_dir / "crash" / crash_point).touch()


SHARED_ACCOUNT_CREDITS = 100_000
_tests = itertools.count(1)
_client_address = ["198.18.0.0"]


@pytest.fixture(autouse=True)
def _an_address_per_test() -> None:
    """Each test is its own client to the failed-auth throttle (per address), so tests of
    refusals do not lock each other out. The gateways trust 127.0.0.1 as a proxy."""
    n = next(_tests)
    _client_address[0] = f"198.18.{n // 256 % 256}.{n % 256}"


def this_tests_address() -> str:
    """The client address the running test's requests claim (``X-Forwarded-For``)."""
    return _client_address[0]


async def _from_this_tests_address(request: httpx.Request) -> None:
    request.headers.setdefault("x-forwarded-for", this_tests_address())


@pytest.fixture(scope="session")
def stack_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    yield tmp_path_factory.mktemp("platform")


@contextlib.asynccontextmanager
async def running_platform(
    data_dir: Path,
    *,
    allow_private: bool,
    database_url: str = "",
    dispatchers: int = 1,
    gateways: int = 1,
    env: Mapping[str, str] | None = None,
    simulator_channels: Mapping[str, str] | None = None,
) -> AsyncIterator[Platform]:
    """``simulator_channels``: the channels (name → provider) pointed at the simulator,
    if not StackConfig's."""
    env = {
        "SWEEP_INTERVAL": "0.5",
        "FETCH_ALLOW_PRIVATE": str(allow_private).lower(),
        # Small enough for the security tests to reach in seconds; the suite runs under them.
        "HEADER_TIMEOUT": "2",
        "BODY_TIMEOUT": "2",
        "MAX_CONNECTIONS": "300",
        "MAX_CONNECTIONS_PER_CLIENT": "100",
        # Tests act as a proxy: X-Forwarded-For gives each test its own client address.
        "TRUSTED_PROXIES": "127.0.0.1",
        # Keepalive comments in every /v1 stream the tests read (the SDK must skip them).
        "STREAM_KEEPALIVE_SECONDS": "0.3",
        # Channel health snapshots each second: the operator's view follows within one.
        "CHANNEL_HEALTH_EVERY": "1",
        **(env or {}),
    }
    config = StackConfig.leased_ports(
        data_dir,
        dispatchers=dispatchers,
        gateways=gateways,
        sim_latency_ms=50,
        extra_env=env,
        database_url=database_url,
    )
    if simulator_channels is not None:
        config.simulator_channels = dict(simulator_channels)
    stack = Stack(config)
    await stack.start()
    try:
        account_id, api_key = await stack.dev_account("e2e")
        # Every module spends from this one account (the browser tests too): more than
        # the sign-up grant, so no test meets a 402 that is the suite's, not its own.
        operator = stack.billing()
        try:
            await operator.top_up(account_id, SHARED_ACCOUNT_CREDITS, "the e2e suite's budget")
        finally:
            await operator.close()
        async with httpx.AsyncClient(
            base_url=stack.config.base_url,
            timeout=30,
            event_hooks={"request": [_from_this_tests_address]},
        ) as http:
            yield Platform(stack, account_id, api_key, http)
    finally:
        await stack.stop()


@pytest.fixture(scope="session")
async def platform(stack_dir: Path) -> AsyncIterator[Platform]:
    """Shared by the tests that leave the platform as they found it. Reference URLs may
    point at this machine (the tests serve them from loopback)."""
    async with running_platform(stack_dir, allow_private=True) as running:
        yield running


# Fragile platforms' submit deadline: long enough to see a hold after a crashed component
# is back, short enough to watch it released.
SUBMIT_HOLD_SECONDS = 6


@pytest.fixture(scope="module")
async def fragile_platform(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Platform]:
    """A platform of its own for tests that break components: production fetch policy,
    crash points armed by creating files. Queued tasks' holds keep the default deadline (an
    hour), so a restarted billing never races the sweeper for a capture; a hold whose job
    was never queued expires after SUBMIT_HOLD_SECONDS."""
    data_dir = tmp_path_factory.mktemp("fragile")
    (data_dir / "crash").mkdir()
    async with running_platform(
        data_dir,
        allow_private=False,
        env={
            "PIXELRELAY_CRASH_DIR": str(data_dir / "crash"),
            "IDEMPOTENCY_IN_FLIGHT_SECONDS": "2",
            "SUBMIT_HOLD_SECONDS": str(SUBMIT_HOLD_SECONDS),
        },
    ) as running:
        yield running


def expiring_env(data_dir: Path) -> dict[str, str]:
    """Crash points, and holds that expire after 3 s: for the tests of the sweeper that
    releases the holds of submits that died before their job was queued, or whose upstream
    is slower than the hold."""
    (data_dir / "crash").mkdir()
    return {
        "PIXELRELAY_CRASH_DIR": str(data_dir / "crash"),
        "HOLD_TTL_SECONDS": "3",
        "SUBMIT_HOLD_SECONDS": "3",
        "IDEMPOTENCY_IN_FLIGHT_SECONDS": "2",
    }


@pytest.fixture(scope="module")
async def expiring_platform(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Platform]:
    data_dir = tmp_path_factory.mktemp("expiring")
    async with running_platform(
        data_dir, allow_private=False, env=expiring_env(data_dir)
    ) as running:
        yield running


@pytest.fixture(scope="module")
async def postgres_expiring_platform(
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Platform]:
    """expiring_platform on PostgreSQL."""
    data_dir = tmp_path_factory.mktemp("pg-expiring")
    with _postgres() as url:
        async with running_platform(
            data_dir, allow_private=False, database_url=url, env=expiring_env(data_dir)
        ) as running:
            yield running


@contextlib.contextmanager
def _postgres() -> Iterator[str]:
    """The URL of a schema of its own on the test PostgreSQL (skips without one)."""
    if not POSTGRES_URL:
        pytest.skip("PIXELRELAY_TEST_POSTGRES_URL is not set")
    with postgres_database() as database:
        yield database.url


@pytest.fixture(scope="module")
async def postgres_platform(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Platform]:
    """The platform on PostgreSQL (billing and gateway), in a schema of its own."""
    with _postgres() as url:
        async with running_platform(
            tmp_path_factory.mktemp("pg"), allow_private=False, database_url=url
        ) as running:
            yield running


DISPATCH_CHANNELS = """
channels:
  dead:
    base_url: http://127.0.0.1:{dead_port}/v1
    model: gpt-image-2
    connect_timeout: 1
    capabilities: {{max_n: 4, masks: true, transparency: true, formats: [png, jpeg, webp]}}
  simulator:
    base_url: http://127.0.0.1:8090/v1
    model: gpt-image-2
    capabilities: {{max_n: 4, masks: true, transparency: true, formats: [png, jpeg, webp]}}
routes:
  gpt-image-2: {{channels: [dead, simulator]}}
  gpt-image-2-official: {{channels: [dead, simulator]}}
"""


@contextlib.contextmanager
def dispatch_env(data_dir: Path) -> Iterator[dict[str, str]]:
    """Two dispatchers (the caller's), a first channel that refuses connections, crash
    points, and JetStream timings short enough to watch redelivery: AckWait 2 s,
    heartbeats every 0.5 s, 2 deliveries;
    the gateways' task events are redelivered after 2 s too."""
    (data_dir / "crash").mkdir()
    channels = data_dir / "channels.yaml"
    with refusing_port() as dead_port:
        channels.write_text(DISPATCH_CHANNELS.format(dead_port=dead_port))
        yield {
            "CHANNELS_FILE": str(channels),
            "ACK_WAIT": "2",
            "EVENTS_ACK_WAIT": "2",
            "HEARTBEAT_EVERY": "0.5",
            "MAX_DELIVER": "2",
            "PIXELRELAY_CRASH_DIR": str(data_dir / "crash"),
        }


@pytest.fixture(scope="module")
async def dispatch_platform(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Platform]:
    data_dir = tmp_path_factory.mktemp("dispatch")
    with dispatch_env(data_dir) as env:
        async with running_platform(data_dir, allow_private=False, dispatchers=2, env=env) as p:
            yield p


@pytest.fixture(scope="module")
async def postgres_dispatch_platform(
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Platform]:
    """dispatch_platform on PostgreSQL: for the crash races of settlement."""
    data_dir = tmp_path_factory.mktemp("pg-dispatch")
    with _postgres() as url, dispatch_env(data_dir) as env:
        async with running_platform(
            data_dir, allow_private=False, dispatchers=2, database_url=url, env=env
        ) as p:
            yield p


@pytest.fixture(scope="module")
async def replicated_platform(
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Platform]:
    """Two gateway replicas over one billing and one task database (PostgreSQL when the
    suite has one, as in production), for what must hold across replicas."""
    data_dir = tmp_path_factory.mktemp("replicas")
    with contextlib.ExitStack() as stack:
        url = stack.enter_context(_postgres()) if POSTGRES_URL else ""
        async with running_platform(
            data_dir, allow_private=False, gateways=2, database_url=url
        ) as p:
            yield p
