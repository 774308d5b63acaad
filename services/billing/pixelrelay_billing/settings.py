from __future__ import annotations

from pixelrelay.settings import DatabaseSettings


class BillingSettings(DatabaseSettings):
    grpc_port: int = 50051
    database_url: str = "sqlite:///var/billing.db"
    # Credits granted to every new account (2,000 credits = $2).
    signup_grant: int = 2000
    # How often pending holds past their deadline are announced expired (then released).
    sweep_interval: float = 15.0
    # Task events settled at once (those that arrive together share one transaction), and
    # how long one may take before JetStream redelivers it.
    settlement_concurrency: int = 64
    settlement_ack_wait: float = 30.0
    # How often every balance is recomputed from the ledger's entries (the
    # pixelrelay_ledger_problems gauge); 0 turns it off. It reads every entry: on a large
    # ledger keep it in minutes.
    ledger_check_interval: float = 300.0
    # A hold's deadline until its job is known to be queued (a submit that died before
    # frees its credits within a minute), and the task's deadline from its submit, to which
    # the sweeper extends the hold of a job still queued or running; the gateways'
    # HOLD_TTL_SECONDS (their task capabilities' lifetime) should be the same.
    submit_hold_seconds: int = 30
    hold_ttl_seconds: int = 3600
    # A signed-in person's session lasts this long (the console's cookie as well).
    session_hours: float = 12.0
    # Failed sign-ins per email within the window before that email is locked until the
    # window ends (for every client: per-address limits are the gateways').
    sign_in_failures: int = 10
    sign_in_window_seconds: int = 900
    # Password hashes computed at once (argon2id: ~64 MiB and ~70 ms of CPU each).
    password_hash_parallel: int = 2
