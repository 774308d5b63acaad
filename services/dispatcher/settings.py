from __future__ import annotations

from pydantic import SecretStr

from pixelrelay.settings import ServiceSettings


class DispatcherSettings(ServiceSettings):
    grpc_port: int = 50053  # health checking only
    storage_addr: str = "127.0.0.1:50052"
    # Upstream channels, tried in order (comma-separated base URLs sharing one key).
    upstream_base_urls: str = "http://127.0.0.1:8090/v1"
    upstream_api_key: SecretStr = SecretStr("sk-simulator")
    upstream_model: str = "gpt-image-2"
    upstream_timeout: float = 180.0
    # Jobs processed at once by this process.
    concurrency: int = 16
    # JetStream redelivers a job this long after its last sign of life.
    ack_wait: float = 30.0
    heartbeat_every: float = 5.0
    max_deliver: int = 5
    worker_name: str = "dispatcher"
