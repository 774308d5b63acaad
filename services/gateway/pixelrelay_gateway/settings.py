from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from pixelrelay.settings import DatabaseSettings
from pixelrelay_gateway.core.auth_throttle import parse_networks
from pixelrelay_gateway.core.sessions import SignUpMode


class GatewaySettings(DatabaseSettings):
    http_host: str = "0.0.0.0"
    http_port: int = 8080
    # Limits of the public HTTP listener, before any request reaches the app
    # (http/protocol.py): 431, 408, 429 and 503 answers.
    max_header_bytes: int = 32 * 1024
    max_headers: int = 100
    header_timeout: float = 10.0
    # A body has this long, plus one second per MIN_BODY_RATE bytes received.
    body_timeout: float = Field(default=10.0, gt=0)
    min_body_rate: int = Field(default=16 * 1024, gt=0)
    max_connections: int = 2048
    # Per client address (a trusted proxy's connections are not counted per address).
    max_connections_per_client: int = Field(default=256, gt=0)
    grpc_port: int = 50050  # the public API over gRPC
    billing_addr: str = "127.0.0.1:50051"
    storage_addr: str = "127.0.0.1:50052"
    # Task records; every gateway replica must point at the same database.
    database_url: str = "sqlite:///var/gateway.db"
    # How long a task's capability lasts (its storage calls): billing's HOLD_TTL_SECONDS,
    # the task's deadline, should be the same.
    hold_ttl_seconds: int = 3600
    max_body_bytes: int = 1024 * 1024
    # Uploads and fetched reference images, each.
    max_image_bytes: int = 20 * 1024 * 1024
    # A whole /v1/images/edits request (its images and mask together).
    max_edit_bytes: int = 64 * 1024 * 1024
    # Pixels decoded at once (images.DecodeBudget), in MB: at least one 40-MP image (160).
    decode_budget_mb: int = 256
    # Worker processes that decode input images (inputs/decode_pool.py), the seconds one
    # decode may take before its worker is killed (a 40-MP image takes about 1 s), and the
    # decodes one account may run at once: fewer than the workers, so that another
    # account's image never waits behind one tenant's queue.
    decode_workers: int = Field(default=2, ge=1)
    decode_timeout: float = Field(default=10.0, gt=0)
    decode_per_account: int = Field(default=1, ge=1)
    # Local development only: let reference URLs point at private or loopback hosts.
    fetch_allow_private: bool = False
    fetch_timeout: float = 20.0
    # Fetches one account may have in flight on one gateway, and the time all the
    # references of one request may take together.
    fetch_per_account: int = 8
    fetch_total_timeout: float = 30.0
    # Failed authentications (wrong key or admin token) one address may make per minute
    # before its credentialed requests get 429 for the rest of it; 0 = no limit.
    auth_failures_per_minute: int = 20
    # Proxies whose X-Forwarded-For names the client (auth_throttle.py): addresses or
    # CIDR blocks, comma-separated. Empty: the TCP peer is the client.
    trusted_proxies: str = ""
    # Requests per minute for keys without their own limit; 0 = unlimited.
    default_rate_limit: int = 0
    # Keys that seal prompts in the job queue (pixelrelay/sealing.py): id:base64,…
    job_keys: SecretStr = SecretStr("")
    # Keys that sign each task's capability (pixelrelay/capabilities.py): id:base64,…,
    # shared with billing and storage, never with the dispatchers.
    task_capability_keys: SecretStr = SecretStr("")
    # An Idempotency-Key whose first submit has not finished after this long is taken over
    # by a repeat (its first submit died); before, a repeat gets 409.
    idempotency_in_flight_seconds: float = 60.0
    # Task-event consumers in this process.
    event_concurrency: int = 32
    # An event not acked this long after delivery (its gateway died handling it) goes to
    # another gateway; handling is idempotent, so a slow first handler is harmless.
    events_ack_wait: float = 30.0

    # Longest a synchronous call (/v1/images/*, GenerateImages) waits for its task; then it
    # answers with the task still processing (its id in the answer, readable by polling).
    sync_wait_seconds: float = Field(default=300.0, gt=0)
    # A /v1 event stream silent this long gets a comment line: proxies cut idle streams
    # (nginx after 60 s), and a generation can take minutes.
    stream_keepalive_seconds: float = Field(default=15.0, gt=0)
    # Task records are deleted this long after the task was made (fractional days allowed);
    # the ledger keeps its entries, which name the task, for ever.
    task_retention_days: float = Field(default=90.0, gt=0)
    # Seconds between purges of task records past retention, expired upload records and
    # idempotency keys (any replica may run them; they are idempotent).
    record_sweep_interval: float = 3600.0
    # Seconds between object audits (core/object_audit.py: a task whose images were lost
    # before their time answers as expired); 0 = never. Each checks every live image.
    object_audit_interval: float = Field(default=0.0, ge=0)
    # Per account, over its uploads not yet deleted: how many (429 beyond) and how many
    # bytes (413 beyond); 0 = no limit.
    upload_quota_count: int = Field(default=1000, ge=0)
    upload_quota_bytes: int = Field(default=1024**3, ge=0)

    # Self-service sign-up (core/sessions.py): open, invite (an operator's code) or closed.
    signup_mode: SignUpMode = SignUpMode.OPEN
    # Sign-ups per client address per hour (per replica); 0 = no limit.
    signups_per_address_hour: int = Field(default=5, ge=0)
    # The session cookie's Secure flag: false only where the console is served over plain
    # HTTP on a developer's machine (`make run`).
    session_cookie_secure: bool = True
    # The mailer (core/mailer.py): with SMTP_HOST set, sign-up mails a verification link
    # (the grant follows it) and people can reset their password by mail; PUBLIC_URL is
    # where the links point (https://images.example.com).
    smtp_host: str = ""
    smtp_port: int = 587
    smtp_security: Literal["starttls", "tls", "none"] = "starttls"
    smtp_username: str = ""
    smtp_password: SecretStr = SecretStr("")
    mail_from: str = ""
    public_url: str = ""

    @model_validator(mode="after")
    def _mailer_complete(self) -> GatewaySettings:
        if self.smtp_host and not (self.mail_from and self.public_url):
            raise ValueError("SMTP_HOST needs MAIL_FROM and PUBLIC_URL (where links point)")
        return self

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: str) -> str:
        parse_networks(value)  # a typo fails the start, naming the setting
        return value
