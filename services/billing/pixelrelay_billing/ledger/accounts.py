"""Accounts: opening one (with the signup grant), reading and listing them, top-ups and
adjustments."""

from __future__ import annotations

from sqlalchemy import and_, func, or_, true, update
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from pixelrelay.db import quick
from pixelrelay.errors import ApiError, E
from pixelrelay.ids import checked_id, new_id
from pixelrelay.limits import MAX_CREDITS
from pixelrelay_billing.ledger.postings import post
from pixelrelay_billing.models import PLATFORM, Account, Book


def _check_amount(amount: int, *, positive: bool) -> None:
    if positive and not 0 < amount <= MAX_CREDITS:
        raise ApiError(E.INVALID_AMOUNT, f"amount must be 1..{MAX_CREDITS}", param="amount")
    if not positive and (amount == 0 or abs(amount) > MAX_CREDITS):
        raise ApiError(
            E.INVALID_AMOUNT, f"amount must be non-zero and within ±{MAX_CREDITS}", param="amount"
        )


class Accounts:
    engine: Engine
    signup_grant: int

    @quick
    def create_account(self, *, name: str, grant: int | None = None) -> Account:
        grant = self.signup_grant if grant is None else grant
        if grant < 0 or grant > MAX_CREDITS:
            raise ApiError(E.INVALID_AMOUNT, f"grant must be 0..{MAX_CREDITS}")
        with Session(self.engine, expire_on_commit=False) as s, s.begin():
            account = Account(id=new_id("acct"), name=name, balance=grant)
            s.add(account)
            s.flush()
            if grant:
                post(
                    s,
                    f"signup:{account.id}",
                    "signup_grant",
                    None,
                    [(PLATFORM, Book.FUNDING, -grant), (account.id, Book.AVAILABLE, grant)],
                )
            s.expunge(account)
            return account

    @quick
    def get_account(self, *, account_id: str) -> Account:
        with Session(self.engine, expire_on_commit=False) as s:
            account = s.get(Account, account_id)
            if account is None:
                raise ApiError(E.ACCOUNT_NOT_FOUND)
            s.expunge(account)
            return account

    def list_accounts(
        self, *, search: str = "", limit: int = 50, cursor: str = ""
    ) -> tuple[list[Account], str]:
        """A page of accounts, newest first, and the cursor of the next page ("" at the
        end). ``search`` matches part of the name in any case, or the whole id. The cursor
        is the last account's id: the page after it is found from that row, so no time
        travels through the cursor (SQLite and PostgreSQL keep times differently)."""
        query = select(Account)
        if search:
            query = query.where(
                or_(
                    func.lower(Account.name).contains(search.lower(), autoescape=True),
                    col(Account.id) == search,
                )
            )
        if cursor:
            after = checked_id(cursor, "acct", "cursor")
            created = select(Account.created_at).where(col(Account.id) == after)
            at = created.scalar_subquery()
            query = query.where(
                or_(
                    col(Account.created_at) < at,
                    and_(col(Account.created_at) == at, col(Account.id) < after),
                )
            )
        query = query.order_by(col(Account.created_at).desc(), col(Account.id).desc())
        with Session(self.engine, expire_on_commit=False) as s:
            rows = list(s.exec(query.limit(limit + 1)))
            for row in rows:
                s.expunge(row)
        page = rows[:limit]
        return page, (page[-1].id if len(rows) > limit else "")

    @quick
    def top_up(self, *, account_id: str, amount: int, reason: str) -> Account:
        """Credits bought or granted; always positive."""
        _check_amount(amount, positive=True)
        return self._move(account_id, amount, reason, kind="top_up")

    @quick
    def adjust(self, *, account_id: str, amount: int, reason: str) -> Account:
        """A correction either way; it may not take the balance below zero."""
        _check_amount(amount, positive=False)
        return self._move(account_id, amount, reason, kind="adjustment")

    def _move(self, account_id: str, amount: int, reason: str, *, kind: str) -> Account:
        """A deleted account takes no top-ups; an adjustment (say, zeroing what was
        refunded outside the platform) is still allowed."""
        if not reason.strip():
            raise ApiError(E.MISSING_PARAMETER, "a reason is required", param="reason")
        open_only = kind == "top_up"
        with Session(self.engine, expire_on_commit=False) as s, s.begin():
            moved = s.execute(
                update(Account)
                .where(
                    col(Account.id) == account_id,
                    col(Account.balance) + amount >= 0,
                    col(Account.deleted_at).is_(None) if open_only else true(),
                )
                .values(balance=Account.balance + amount)
            )
            if moved.rowcount != 1:  # type: ignore[attr-defined]
                account = s.get(Account, account_id)
                if account is None:
                    raise ApiError(E.ACCOUNT_NOT_FOUND)
                if open_only and account.deleted_at is not None:
                    raise ApiError(E.ACCOUNT_DELETED)
                raise ApiError(
                    E.INVALID_AMOUNT,
                    "the adjustment would make the balance negative",
                    param="amount",
                )
            post(
                s,
                f"{kind}:{new_id('txn')}",
                kind,
                None,
                [(PLATFORM, Book.FUNDING, -amount), (account_id, Book.AVAILABLE, amount)],
                memo=reason.strip()[:500],
            )
            account = s.get(Account, account_id)
            assert account is not None
            return account
