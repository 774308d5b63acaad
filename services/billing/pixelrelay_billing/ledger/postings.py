"""Double entry: every movement of credits is appended as balanced ``LedgerEntry`` rows
(one transaction's entries sum to zero), from which the audit recomputes every balance."""

from __future__ import annotations

from sqlalchemy.engine import Connection
from sqlmodel import Session

from pixelrelay.db import DirectConnection
from pixelrelay_billing import statements as sql
from pixelrelay_billing.models import Book, utcnow

Sides = list[tuple[str, Book, int]]  # (account, book, amount) per entry


def post(
    conn: Connection | Session | DirectConnection,
    txn_id: str,
    kind: str,
    task_id: str | None,
    sides: Sides,
    memo: str | None = None,
) -> None:
    post_many(conn, [(txn_id, kind, task_id, sides)], memo)


def post_many(
    conn: Connection | Session | DirectConnection,
    txns: list[tuple[str, str, str | None, Sides]],
    memo: str | None = None,
) -> None:
    """Append balanced transactions (txn id, kind, task, sides) with one insert."""
    now = utcnow()
    rows = []
    for txn_id, kind, task_id, sides in txns:
        assert sum(amount for _, _, amount in sides) == 0, "unbalanced transaction"
        rows += [
            {
                "txn_id": txn_id,
                "kind": kind,
                "account_id": account_id,
                "book": book,
                "amount": amount,
                "task_id": task_id,
                "memo": memo,
                "created_at": now,
            }
            for account_id, book, amount in sides
        ]
    conn.execute(sql.INSERT_ENTRIES, rows)
