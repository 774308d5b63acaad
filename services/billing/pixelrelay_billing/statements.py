"""The ledger's hot-path SQL, built once.

Reserve, capture and release run these Core statements on a plain connection: no ORM
unit of work and no statement construction per call (6 ms → about 1 ms per reserve,
docs/benchmarks.md). Each is compiled once and reused from SQLAlchemy's cache.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Table, bindparam, insert, or_, select, update

from pixelrelay_billing.models import Account, ApiKey, Hold, HoldState, LedgerEntry

ACCOUNTS: Table = Account.__table__  # type: ignore[attr-defined]
KEYS: Table = ApiKey.__table__  # type: ignore[attr-defined]
HOLDS: Table = Hold.__table__  # type: ignore[attr-defined]
ENTRIES: Table = LedgerEntry.__table__  # type: ignore[attr-defined]

# One conditional write: the balance check and the debit cannot be split.
DEBIT_TO_HELD: Any = (
    update(ACCOUNTS)
    .where(
        ACCOUNTS.c.id == bindparam("a_id"),
        ACCOUNTS.c.balance >= bindparam("amount"),
        ACCOUNTS.c.deleted_at.is_(None),
    )
    .values(
        balance=ACCOUNTS.c.balance - bindparam("amount"), held=ACCOUNTS.c.held + bindparam("amount")
    )
)
# Settling a hold: it leaves "held"; what was not charged returns to the balance.
SETTLE_HELD: Any = (
    update(ACCOUNTS)
    .where(ACCOUNTS.c.id == bindparam("a_id"))
    .values(
        held=ACCOUNTS.c.held - bindparam("released"),
        balance=ACCOUNTS.c.balance + bindparam("refund"),
    )
)
ACCOUNT_STATE: Any = select(ACCOUNTS.c.deleted_at, ACCOUNTS.c.balance).where(
    ACCOUNTS.c.id == bindparam("a_id")
)
# A key's spend moves with its holds, within its credit limit (if it has one) less what
# it handed on to the keys it made.
KEY_SPEND: Any = (
    update(KEYS)
    .where(
        KEYS.c.id == bindparam("k_id"),
        or_(
            KEYS.c.credit_limit.is_(None),
            KEYS.c.spent + KEYS.c.delegated + bindparam("amount") <= KEYS.c.credit_limit,
        ),
    )
    .values(spent=KEYS.c.spent + bindparam("amount"))
)
HOLD: Any = select(HOLDS).where(HOLDS.c.task_id == bindparam("t_id"))
# A batch's holds, locked in account order (as reserve_many locks accounts): concurrent
# settlement batches on PostgreSQL cannot deadlock.
HOLDS_LOCKED_BY_ACCOUNT: Any = (
    select(HOLDS)
    .where(HOLDS.c.task_id.in_(bindparam("t_ids", expanding=True)))
    .order_by(HOLDS.c.account_id, HOLDS.c.task_id)
    .with_for_update()
)
PENDING_HOLDS_OF_ACCOUNT: Any = (
    select(HOLDS)
    .where(HOLDS.c.account_id == bindparam("a_id"), HOLDS.c.state == HoldState.PENDING)
    .order_by(HOLDS.c.task_id)  # one lock order
    .with_for_update()
)
HOLDS_OF: Any = select(HOLDS).where(HOLDS.c.task_id.in_(bindparam("t_ids", expanding=True)))
INSERT_HOLD: Any = insert(HOLDS)
# Queued tasks' holds get the task's deadline; a settled or later one is left alone.
EXTEND_HOLD: Any = (
    update(HOLDS)
    .where(
        HOLDS.c.task_id == bindparam("t_id"),
        HOLDS.c.state == "pending",
        HOLDS.c.expires_at < bindparam("until"),
    )
    .values(expires_at=bindparam("until"))
)
RESOLVE_HOLD: Any = (
    update(HOLDS)
    .where(HOLDS.c.task_id == bindparam("t_id"))
    .values(
        state=bindparam("new_state"),
        captured=bindparam("charged"),
        resolved_at=bindparam("at"),
        price_id=bindparam("price_id"),
    )
)
INSERT_ENTRIES: Any = insert(ENTRIES)
