"""Settings shared by every service; each service extends ``ServiceSettings``.

Values come from the environment (names are the field names, upper-cased), are built
once in ``__main__`` and passed down, so tests can run several services in one process.
"""

from __future__ import annotations

from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class ServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="", extra="ignore", frozen=True)

    log_level: str = "info"
    # Prometheus scrape port; 0 picks a free one.
    metrics_port: int = 0
    # Interfaces of the gRPC and metrics listeners (`make run`: 127.0.0.1 for both; the
    # k8s manifests: every interface for gRPC, the pod's IP for metrics).
    grpc_host: str = "0.0.0.0"
    metrics_host: str = "127.0.0.1"
    # This process's credential on its internal gRPC calls (callers.py).
    service_credential: SecretStr = SecretStr("")
    # Who may call this process's internal gRPC API: name:sha256hex,name:sha256hex.
    trusted_callers: str = ""
    nats_url: str = "nats://127.0.0.1:4333"
    # This service's NATS user and password (bus_access.py); empty: connect without.
    nats_user: str = ""
    nats_password: SecretStr = SecretStr("")
    # Seconds in-flight work gets to finish after SIGTERM.
    shutdown_grace: float = 10.0


class DatabaseSettings(ServiceSettings):
    """A service that owns tables (billing, the gateway)."""

    # Migrate the database at start (`make run`, one replica). In a cluster the migrations
    # Job does it before the services roll, and services wait, NOT_SERVING, until their
    # schema is current: replicas never race each other's migrations.
    migrate_on_start: bool = True
