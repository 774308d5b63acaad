"""Accounts: opening one (with the signup grant), reading it, top-ups and adjustments."""

from __future__ import annotations

from sqlalchemy import true, update
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

from billing.ledger.postings import post
from billing.models import PLATFORM, Account, Book
from pixelrelay.db import quick
from pixelrelay.errors import ApiError, E
from pixelrelay.ids import new_id
from pixelrelay.limits import MAX_CREDITS


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
