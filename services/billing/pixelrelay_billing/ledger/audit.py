"""Reading the ledger back: an account's entries, and the full check that recomputes every
balance from the entries."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import case, func
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from pixelrelay.errors import ApiError, E
from pixelrelay_billing.models import Account, ApiKey, Book, Hold, HoldState, LedgerEntry


@dataclass(frozen=True)
class CheckResult:
    problems: list[str]
    entries: int


class Audit:
    engine: Engine

    def entries(
        self,
        *,
        account_id: str,
        limit: int = 50,
        cursor: str = "",
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> tuple[list[LedgerEntry], str]:
        """A page of an account's movements, newest first, and the cursor of the next
        page ("" at the end)."""
        query = select(LedgerEntry).where(LedgerEntry.account_id == account_id)
        if since is not None:
            query = query.where(col(LedgerEntry.created_at) >= since)
        if until is not None:
            query = query.where(col(LedgerEntry.created_at) < until)
        if cursor:
            query = query.where(col(LedgerEntry.id) < _entry_id(cursor))
        with Session(self.engine, expire_on_commit=False) as s:
            if s.get(Account, account_id) is None:
                raise ApiError(E.ACCOUNT_NOT_FOUND)
            rows = list(s.exec(query.order_by(col(LedgerEntry.id).desc()).limit(limit + 1)))
        page = rows[:limit]
        return page, (str(page[-1].id) if len(rows) > limit and page else "")

    def check(self) -> CheckResult:
        """Recompute every balance from the entries and compare; empty problems = sound."""
        problems: list[str] = []
        with Session(self.engine, expire_on_commit=False) as s:
            entries = s.exec(select(func.count()).select_from(LedgerEntry)).one()
            for txn_id, total in s.execute(
                select(LedgerEntry.txn_id, func.sum(LedgerEntry.amount))
                .group_by(LedgerEntry.txn_id)
                .having(func.sum(LedgerEntry.amount) != 0)
            ):
                problems.append(f"transaction {txn_id} sums to {total}, not 0")
            sums: dict[tuple[str, str], int] = defaultdict(int)
            for account_id, book, total in s.execute(
                select(
                    LedgerEntry.account_id, LedgerEntry.book, func.sum(LedgerEntry.amount)
                ).group_by(LedgerEntry.account_id, LedgerEntry.book)
            ):
                sums[(account_id, str(book))] = int(total)
            pending: dict[str, int] = defaultdict(int)
            for account_id, total in s.execute(
                select(Hold.account_id, func.sum(Hold.amount))
                .where(Hold.state == HoldState.PENDING)
                .group_by(Hold.account_id)
            ):
                pending[account_id] = int(total)
            for account in s.exec(select(Account)):
                for book, stored in ((Book.AVAILABLE, account.balance), (Book.HELD, account.held)):
                    derived = sums.get((account.id, book.value), 0)
                    if derived != stored:
                        problems.append(
                            f"{account.id} {book.value}: stored {stored}, entries give {derived}"
                        )
                if pending[account.id] != account.held:
                    problems.append(
                        f"{account.id}: held {account.held}, pending holds {pending[account.id]}"
                    )
            # Summed by the database, not row by row here: this runs beside live traffic,
            # and a Python loop over every hold would hold the GIL that billing's calls need.
            live: dict[str, int] = defaultdict(int)
            for key_id, total in s.execute(
                select(
                    Hold.key_id,
                    func.sum(
                        case(
                            (col(Hold.state) == HoldState.PENDING, Hold.amount),
                            else_=Hold.captured,
                        )
                    ),
                )
                .where(col(Hold.key_id).is_not(None))
                .group_by(Hold.key_id)
            ):
                live[key_id] = int(total)
            for key in s.exec(select(ApiKey)):
                if key.spent != live[key.id]:
                    problems.append(f"key {key.id}: spent {key.spent}, holds give {live[key.id]}")
        return CheckResult(problems=problems, entries=int(entries))


def _entry_id(cursor: str) -> int:
    """A cursor is the id of the last entry shown: ASCII digits ("³".isdigit() is true)
    within int64."""
    if not (cursor.isascii() and cursor.isdigit() and len(cursor) <= 18):
        raise ApiError(E.INVALID_PARAMETER, "cursor is not one this API returned", param="cursor")
    return int(cursor)
