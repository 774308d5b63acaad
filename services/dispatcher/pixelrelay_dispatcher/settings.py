from __future__ import annotations

from pathlib import Path

from pydantic import SecretStr

from pixelrelay.settings import ServiceSettings


class DispatcherSettings(ServiceSettings):
    grpc_port: int = 50053  # health checking only
    storage_addr: str = "127.0.0.1:50052"
    # Claims a job's hold (still pending? then it lasts the task's deadline) before the
    # upstream is paid for it.
    # Upstream channels and routes (docs/operations.md, "Channels"); keys come from the
    # environment. Required: without it the dispatcher refuses to start.
    channels_file: Path | None = None
    # Local development only: channels on this machine (the simulator of `make run`).
    channels_allow_loopback: bool = False
    # Jobs processed at once by this process.
    concurrency: int = 16
    # A job silent this long is redelivered (a crashed worker's jobs move on within
    # seconds); a working dispatcher sends in-progress heartbeats more often than that.
    ack_wait: float = 10.0
    heartbeat_every: float = 3.0
    # Deliveries before a job goes to the dead-letter stream and its task fails.
    max_deliver: int = 5
    worker_name: str = "dispatcher"
    # Keys that open the prompts sealed in jobs (pixelrelay/sealing.py): id:base64,…
    job_keys: SecretStr = SecretStr("")
    # Circuit breaker per channel (see breaker.py).
    breaker_consecutive_failures: int = 3
    breaker_failure_rate: float = 0.5
    breaker_min_calls: int = 10
    breaker_window: float = 30.0
    breaker_cooldown: float = 5.0
    # Seconds between this dispatcher's channel health snapshots on the bus (health.py).
    channel_health_every: float = 5.0
