"""Billing tables. Money columns are integer credits; the database enforces the floor."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum

from sqlalchemy import BigInteger, CheckConstraint, Column, UniqueConstraint
from sqlmodel import Field, SQLModel

from pixelrelay.scopes import ALL as ALL_SCOPES


def utcnow() -> datetime:
    return datetime.now(UTC)


class Account(SQLModel, table=True):
    __table_args__ = (
        CheckConstraint("balance >= 0", name="account_balance_non_negative"),
        CheckConstraint("held >= 0", name="account_held_non_negative"),
    )
    id: str = Field(primary_key=True)
    name: str
    balance: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    held: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    created_at: datetime = Field(default_factory=utcnow)
    # Set by an operator's account deletion: its keys are revoked, no new holds, keys or
    # top-ups; the ledger keeps its entries and its balance.
    deleted_at: datetime | None = None
    deleted_reason: str | None = None


class ApiKey(SQLModel, table=True):
    __table_args__ = (
        CheckConstraint(
            "credit_limit IS NULL OR spent + delegated <= credit_limit", name="key_within_limit"
        ),
        CheckConstraint("spent >= 0", name="key_spent_non_negative"),
    )
    id: str = Field(primary_key=True)
    account_id: str = Field(foreign_key="account.id", index=True)
    name: str = ""
    prefix: str
    last4: str
    # sha256 of the whole key; the key itself is never stored.
    key_hash: str = Field(unique=True, index=True)
    created_at: datetime = Field(default_factory=utcnow)
    revoked_at: datetime | None = None
    expires_at: datetime | None = None
    # Most credits this key may have held or charged at once over its life (None = no cap).
    credit_limit: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    # Requests per minute through this key (None = the platform default).
    rate_limit: int | None = None
    # Credits held or charged through this key so far.
    spent: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    # What the key may do: space-separated scopes (pixelrelay.scopes).
    scopes: str = Field(default=" ".join(ALL_SCOPES))
    # The key that created this one; None = issued by an operator.
    parent_id: str | None = Field(default=None, index=True)
    # Credit limit handed on to the keys it created (never returned): spent + delegated
    # stays within credit_limit, so no chain of keys can spend more than its root allows.
    delegated: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    # "api", or "session": a signed-in person's console session (logins.py), which acts as
    # the account's owner, is listed with no keys and ends at sign-out or its expiry.
    kind: str = Field(default="api")


class Login(SQLModel, table=True):
    """A person's way into an account: an email and an argon2id hash of a password. The
    account is the one billing already holds; there is no second store of people."""

    account_id: str = Field(primary_key=True, foreign_key="account.id")
    email: str = Field(unique=True, index=True)  # lower-cased
    password_hash: str
    created_at: datetime = Field(default_factory=utcnow)
    password_changed_at: datetime = Field(default_factory=utcnow)
    # None while a mailed verification link is unused (only when the platform mails)
    email_verified_at: datetime | None = None


class LoginToken(SQLModel, table=True):
    """A one-use link's secret (email verification, password reset), stored hashed."""

    __tablename__ = "login_token"
    token_hash: str = Field(primary_key=True)
    account_id: str = Field(foreign_key="account.id", index=True)
    purpose: str  # "verify" | "reset"
    expires_at: datetime
    used_at: datetime | None = None


class Invite(SQLModel, table=True):
    """An operator-issued sign-up code (SIGNUP_MODE=invite), stored hashed; one use."""

    id: str = Field(primary_key=True)
    code_hash: str = Field(unique=True, index=True)
    note: str = ""
    created_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime | None = None
    revoked_at: datetime | None = None
    used_at: datetime | None = None
    used_by: str | None = None  # the account it created


class SignInFailures(SQLModel, table=True):
    """Failed sign-ins per email (known or not, so a lock-out says nothing of which
    emails have accounts), counted in a fixed window shared by every gateway replica."""

    __tablename__ = "sign_in_failures"
    email_hash: str = Field(primary_key=True)
    window_started: int = Field(sa_column=Column(BigInteger, nullable=False))
    failures: int = 0


class HoldState(StrEnum):
    PENDING = "pending"
    CAPTURED = "captured"
    RELEASED = "released"


class Hold(SQLModel, table=True):
    """One per task: reserved at submit, resolved exactly once (captured or released)."""

    __table_args__ = (
        CheckConstraint("captured >= 0 AND captured <= amount", name="hold_capture_within_amount"),
    )
    task_id: str = Field(primary_key=True)
    account_id: str = Field(foreign_key="account.id", index=True)
    key_id: str | None = Field(default=None, index=True)
    price_id: str
    # What was priced, so a capture can re-price at the tier the upstream reports.
    model: str
    resolution: str
    quality: str = ""
    unit_credits: int
    units: int
    amount: int = Field(sa_column=Column(BigInteger, nullable=False))
    captured: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    state: HoldState = HoldState.PENDING
    created_at: datetime = Field(default_factory=utcnow)
    # unix seconds; 64-bit, as every time here (32 bits end in 2038)
    expires_at: int = Field(sa_column=Column(BigInteger, nullable=False, index=True))
    resolved_at: datetime | None = None


class Book(StrEnum):
    """The sides an entry can post to. User accounts have two; the platform has two."""

    AVAILABLE = "available"  # a user's spendable credits
    HELD = "held"  # a user's credits reserved by pending tasks
    FUNDING = "funding"  # platform: where grants and top-ups come from (goes negative)
    REVENUE = "revenue"  # platform: captured charges


PLATFORM = "platform"


class LedgerEntry(SQLModel, table=True):
    """Append-only. Every transaction's entries sum to zero (double entry)."""

    __table_args__ = (UniqueConstraint("txn_id", "account_id", "book", name="entry_once_per_txn"),)
    id: int | None = Field(default=None, primary_key=True)
    txn_id: str = Field(index=True)  # e.g. "capture:task_…": one capture per task
    kind: str
    account_id: str = Field(index=True)
    book: Book
    amount: int = Field(sa_column=Column(BigInteger, nullable=False))
    task_id: str | None = Field(default=None, index=True)
    # the reason an admin gave (top-ups, adjustments), why a hold was released, or the
    # price row a capture charged (on its capture and refund)
    memo: str | None = None
    created_at: datetime = Field(default_factory=utcnow, index=True)


class RateBucket(SQLModel, table=True):
    """A key's request budget (ratelimits.py): one row per limited key, shared by every
    gateway replica. One request is 60,000 units, so a limit of R per minute refills
    exactly R units per millisecond: integer arithmetic, no drift."""

    __tablename__ = "rate_bucket"
    key_id: str = Field(primary_key=True)
    per_minute: int
    units: int = Field(sa_column=Column(BigInteger, nullable=False))
    updated_ms: int = Field(sa_column=Column(BigInteger, nullable=False))
