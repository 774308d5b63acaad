"""The whole platform on one machine, for real: `make run`, the end-to-end tests and `make bench`.

Starts NATS (JetStream, own port and store), an S3 server (rclone's, objects kept in
<data dir>/s3, unless S3_ENDPOINT is set), the upstream simulator and the four services as
child processes, waits until each answers its health check, and stops them in reverse order.

Configuration: config.py (`StackConfig.from_env`); the child processes: children.py. Long
because ``Stack`` is one object: what each of the seven processes needs (`_start_all`) and
what tests do to them (restart, kill, revive) belong together."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable

from nats.aio.client import Client as NATS

from pixelrelay.billing_client import BillingClient
from pixelrelay.bus import connect, ensure_streams
from pixelrelay.bus_access import ADMIN_USER, server_config
from pixelrelay.callers import ADMIN, DISPATCHER, GATEWAY, TrustedCallers
from pixelrelay.capabilities import new_capability_key
from pixelrelay.errors import ApiError
from pixelrelay.sealing import new_job_key
from pixelrelay.startup import Backoff, keep_trying
from pixelrelay.v1 import billing_pb2
from pixelrelay_dev import upstreams
from pixelrelay_dev.children import (
    START_ATTEMPTS,
    Child,
    ChildExited,
    ready,
    wait_exit,
    wait_grpc,
    wait_http,
    wait_nats,
)
from pixelrelay_dev.config import (
    StackConfig,
    kept_secret,
    load_credentials,
    load_nats_passwords,
    load_s3_keys,
    nats_server_binary,
    replica_name,
)
from pixelrelay_dev.orphan_guard import signal_me_when_my_parent_dies

log = logging.getLogger("devstack")


class Stack:
    def __init__(self, config: StackConfig):
        self.config = config
        self.children: list[Child] = []
        self.logs = config.data_dir / "logs"

    @property
    def upstreams(self) -> upstreams.Upstreams:
        """Where the dispatchers send prompts: chosen from the config on each start (a
        stack on leased ports may have moved the simulator)."""
        c = self.config
        return upstreams.choose(
            c.data_dir,
            c.sim_url,
            channels_file=c.channels_file,
            openai_api_key=c.openai_api_key,
            openai_base_url=c.openai_base_url,
            simulator_fallback=c.simulator_fallback,
        )

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

    def _service_env(self, name: str, nats_user: str, caller: str = "") -> dict[str, str]:
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
            "METRICS_PORT": str(c.service_ports()[name][1]) if c.metrics_port else "0",
            "BILLING_ADDR": c.billing_addr,
            "STORAGE_ADDR": c.storage_addr,
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
        c.task_capability_keys = kept_secret(
            c.data_dir / "secrets" / "task_capability.keys", new_capability_key
        )
        c.s3_access_key, c.s3_secret_key = load_s3_keys(c.data_dir / "secrets")
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
        routes = [f"nats://127.0.0.1:{c.nats_cluster_port + i}" for i in range(c.nats_nodes)]
        for i in range(c.nats_nodes):
            name = replica_name("nats", i)
            conf = c.data_dir / f"{name}.conf"
            conf.write_text(
                server_config(
                    c.nats_passwords,
                    host="127.0.0.1",
                    port=c.nats_port + i,
                    store_dir=c.data_dir / name,
                    cluster=(name, c.nats_cluster_port + i, routes) if c.nats_nodes > 1 else None,
                )
            )
            self._spawn(
                name,
                [nats_server_binary(), "-c", str(conf)],
                functools.partial(wait_nats, c.nats_port + i, name),
            )
        s3_env = {"S3_ENDPOINT": c.s3_endpoint or f"http://127.0.0.1:{c.s3_port}"}
        if not c.s3_endpoint:
            s3_env |= {"S3_ACCESS_KEY": c.s3_access_key, "S3_SECRET_KEY": c.s3_secret_key}
            if not (c.data_dir / "s3").exists() and (c.data_dir / "gateway.db").exists():
                # A var/ from when moto kept the objects in memory, or s3/ deleted alone.
                log.warning(
                    "%s has a task database but no s3/: its tasks' images are gone (URLs answer 404)",
                    c.data_dir,
                )
            self._spawn(
                "s3",
                self._python("pixelrelay_dev.s3_server")
                + ["-H", "127.0.0.1", "-p", str(c.s3_port), "-d", str(c.data_dir / "s3")],
                lambda: wait_http(f"{s3_env['S3_ENDPOINT']}/", "s3", any_status=True),
                s3_env,
            )
        self._spawn(
            "pixelrelay_sim",
            self._python("pixelrelay_sim"),
            lambda: wait_http(f"{c.sim_url}/healthz", "pixelrelay_sim"),
            {"SIM_PORT": str(c.sim_port), "SIM_LATENCY_MS": str(c.sim_latency_ms)},
        )
        await self._wait_all()
        # The connection too is bounded: the client itself would wait for NATS forever.
        await asyncio.wait_for(self._ensure_streams(), 60)
        db_url = c.database_url
        ports = c.service_ports()
        # One after the other: the first migrates the ledger, the others find it.
        for i in range(c.billings):
            name = replica_name("billing", i)
            self._spawn(
                name,
                self._python("pixelrelay_billing"),
                functools.partial(wait_grpc, ports[name][0], name),
                {
                    **self._service_env(name, "billing"),
                    "GRPC_PORT": str(ports[name][0]),
                    "DATABASE_URL": db_url or f"sqlite:///{c.data_dir / 'billing.db'}",
                    "TASK_CAPABILITY_KEYS": c.task_capability_keys,
                },
            )
            await self._wait_all()
        for i in range(c.storages):
            name = replica_name("storage", i)
            self._spawn(
                name,
                self._python("pixelrelay_storage"),
                functools.partial(wait_grpc, ports[name][0], name),
                {
                    # rclone takes no lifecycle rules (s3_server.py): storage's sweep alone.
                    **({} if c.s3_endpoint else {"S3_LIFECYCLE_RULES": "false"}),
                    **self._service_env(name, "storage"),
                    **s3_env,
                    "GRPC_PORT": str(ports[name][0]),
                    "TASK_CAPABILITY_KEYS": c.task_capability_keys,
                },
            )
        await self._wait_all()
        for i in range(c.dispatchers):
            name = replica_name("dispatcher", i)
            port = c.dispatcher_port + i
            self._spawn(
                name,
                self._python("pixelrelay_dispatcher"),
                functools.partial(wait_grpc, port, name),
                {
                    **self.upstreams.env,
                    "CHANNELS_ALLOW_LOOPBACK": "true",  # the simulator, a local test host
                    # the simulator channels a test's or benchmark's file may name
                    **c.simulator_channel_env(),
                    **self._service_env(name, "dispatcher", DISPATCHER),
                    "GRPC_PORT": str(port),
                    "WORKER_NAME": name,
                    "JOB_KEYS": c.job_keys,
                },
            )
        # One after the other: the first migrates the task tables, the others find them.
        for i in range(c.gateways):
            name = replica_name("gateway", i)
            self._spawn(
                name,
                self._python("pixelrelay_gateway"),
                functools.partial(self._gateway_ready, i),
                {
                    # the console over plain http on loopback: a Secure cookie would not stick
                    "SESSION_COOKIE_SECURE": "false",
                    # var/s3 deleted by hand: its tasks answer as expired, at start and after
                    "OBJECT_AUDIT_INTERVAL": "600",
                    **self._service_env(name, "gateway", GATEWAY),
                    "HTTP_HOST": "127.0.0.1",
                    "JOB_KEYS": c.job_keys,
                    "TASK_CAPABILITY_KEYS": c.task_capability_keys,
                    "HTTP_PORT": str(c.http_port + i),
                    "GRPC_PORT": str(c.grpc_port + i),
                    "DATABASE_URL": db_url or f"sqlite:///{c.data_dir / 'gateway.db'}",
                },
            )
            await self._wait_all()

    async def _ensure_streams(self) -> None:
        """The streams, as the bus administrator. A new cluster answers only once it has
        elected its meta leader (seconds)."""
        async with self.bus() as nc:
            await keep_trying(
                "the JetStream streams",
                lambda: ensure_streams(nc.jetstream(), replicas=min(3, self.config.nats_nodes)),
                asyncio.Event(),
                Backoff(first=0.2, cap=1.0),
            )

    async def _gateway_ready(self, i: int = 0) -> None:
        await asyncio.gather(
            wait_grpc(self.config.grpc_port + i, "gateway"),
            wait_http(f"{self.config.gateway_urls()[i]}/healthz", "gateway"),
        )

    async def _wait_all(self) -> None:
        waits = [asyncio.ensure_future(ready(child)) for child in self.children]
        try:
            await asyncio.gather(*waits)
        finally:
            for wait in waits:
                wait.cancel()

    async def wait_ready(self, name: str) -> None:
        await ready(self.child(name))

    def child(self, name: str) -> Child:
        return next(c for c in self.children if c.name == name)

    async def restart(self, name: str) -> int:
        """SIGTERM one child, start it again with the same command; returns its exit code."""
        old = self.child(name)
        old.process.send_signal(signal.SIGTERM)
        await wait_exit(old, 30.0)
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
        await wait_exit(child, within)
        self.children.remove(child)
        await self.revive(child)
        return int(child.process.returncode)

    async def revive(self, dead: Child) -> None:
        await ready(self._spawn(dead.name, dead.argv, dead.ready, dead.env))

    async def stop(self, grace: float = 15.0) -> None:
        """SIGTERM in reverse start order, so work drains toward the services it needs."""
        for child in reversed(self.children):
            if child.process.poll() is None:
                child.process.send_signal(signal.SIGTERM)
                await wait_exit(child, grace)
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
        return BillingClient(self.config.billing_addr, self.config.credentials[caller])

    async def dev_account(self, name: str = "dev") -> tuple[str, str]:
        """(account id, api key), the same on every start: the key is PIXELRELAY_DEV_API_KEY
        or one kept in <data_dir>/secrets; it is reused while billing knows it (asked as
        the gateway, the only caller that authenticates keys), else issued for the account
        named ``name`` (found through the listing, so a restart never adds another)."""
        kept = self.config.data_dir / "secrets" / "dev_api.key"
        key = self.config.dev_api_key or (kept.read_text().strip() if kept.exists() else "")
        gateway, operator = self.billing(GATEWAY), self.billing()
        try:
            if key:
                with contextlib.suppress(ApiError):
                    return (await gateway.authenticate(key)).account_id, key
            listed = await operator.list_accounts(
                billing_pb2.ListAccountsRequest(search=name, limit=200)
            )
            named = [a for a in listed.accounts if a.name == name and not a.deleted_at]
            account_id = named[-1].id if named else (await operator.create_account(name)).id
            # Idempotent in billing: a start that died after this call repeats it harmlessly.
            created = await operator.create_api_key(account_id, "dev", secret=key)
            if not self.config.dev_api_key:  # billing made it (its format is billing's)
                kept_secret(kept, lambda: created.api_key)
            return account_id, created.api_key
        finally:
            await gateway.close()
            await operator.close()


def _banner(stack: Stack, api_key: str, account_id: str) -> str:
    config = stack.config
    base = config.base_url
    routed = ("\n" + " " * 16).join(stack.upstreams.live)
    return f"""
PixelRelay is running.
  console       {base}/signup      (sign up; then {base}/dashboard, the playground at {base}/)
  operator      {base}/admin       (paste PIXELRELAY_ADMIN_TOKEN below)
  REST API      {base}/api/v1      (OpenAPI: {base}/openapi.json, docs: {base}/docs)
  gRPC API      127.0.0.1:{config.grpc_port}  (pixelrelay.v1.PublicApi, Sessions, Admin)
  upstreams     {routed}
                (from {stack.upstreams.channels_file})
  simulator     {config.sim_url}/v1  ({config.sim_latency_ms} ms per generation)
  logs          {config.data_dir / "logs"}
  dev account   {account_id}

  export PIXELRELAY_API_KEY={api_key}
  export PIXELRELAY_ADMIN_TOKEN={config.admin_token}
  # for `pixelrelay admin …` in another shell (it reads these):
  export PIXELRELAY_BILLING_PORT={config.billing_port} PIXELRELAY_GRPC_PORT={config.grpc_port}

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
        sys.stdout.write(_banner(stack, api_key, account_id))
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
