from __future__ import annotations

from pydantic import SecretStr, field_validator

from pixelrelay.settings import ServiceSettings

_PLACEHOLDERS = {"changeme", "change-me", "admin", "secret", "password", "token", "test"}


class GatewaySettings(ServiceSettings):
    http_host: str = "0.0.0.0"
    http_port: int = 8080
    grpc_port: int = 50050  # the public API over gRPC
    billing_addr: str = "127.0.0.1:50051"
    storage_addr: str = "127.0.0.1:50052"
    # Task records; every gateway replica must point at the same database.
    database_url: str = "sqlite:///var/gateway.db"
    # A hold not resolved by then is released by billing's sweeper.
    hold_ttl_seconds: int = 3600
    max_body_bytes: int = 1024 * 1024
    # Uploads and fetched reference images, each.
    max_image_bytes: int = 20 * 1024 * 1024
    # Local development only: let reference URLs point at private or loopback hosts.
    fetch_allow_private: bool = False
    fetch_timeout: float = 20.0
    # Bearer token for /admin/v1; empty switches the admin API off.
    admin_token: SecretStr = SecretStr("")
    # Requests per minute for keys without their own limit; 0 = unlimited.
    default_rate_limit: int = 0
    # Task-event consumers in this process.
    event_concurrency: int = 32

    @field_validator("admin_token")
    @classmethod
    def _real_token(cls, token: SecretStr) -> SecretStr:
        value = token.get_secret_value()
        if value and (len(value) < 24 or value.lower() in _PLACEHOLDERS):
            raise ValueError("ADMIN_TOKEN must be at least 24 random characters (or empty)")
        return token
