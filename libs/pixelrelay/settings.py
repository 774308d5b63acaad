"""Settings shared by every service; each service extends ``ServiceSettings``.

Values come from the environment (names are the field names, upper-cased), are built
once in ``__main__`` and passed down, so tests can run several services in one process.
"""

from __future__ import annotations

from pydantic_settings import BaseSettings, SettingsConfigDict


class ServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="", extra="ignore", frozen=True)

    log_level: str = "info"
    # Prometheus scrape port; 0 picks a free one.
    metrics_port: int = 0
    nats_url: str = "nats://127.0.0.1:4333"
    # Seconds in-flight work gets to finish after SIGTERM.
    shutdown_grace: float = 10.0
