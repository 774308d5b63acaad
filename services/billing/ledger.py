"""The ledger's rules. Every method is one database transaction and idempotent.

Balances live on ``Account`` (fast conditional updates); every change also appends
balanced ``LedgerEntry`` rows, from which ``check`` recomputes and verifies them.
"""

from __future__ import annotations

import hashlib
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import func, update
from sqlalchemy.engine import Connection, Engine
from sqlmodel import Session, col, select

from billing import statements as sql
from billing.models import PLATFORM, Account, ApiKey, Book, Hold, HoldState, LedgerEntry, utcnow
from billing.prices import PriceList
from pixelrelay import scopes as scope_rules
from pixelrelay.db import quick
from pixelrelay.errors import ApiError, E
from pixelrelay.ids import new_id, random_token
from pixelrelay.limits import MAX_CREDITS, MAX_RATE_LIMIT
from pixelrelay.v1 import common_pb2

KEY_PREFIX = "pr_live_"
KEY_RANDOM_CHARS = 32  # 190 bits
KEY_PATTERN = re.compile(rf"^{KEY_PREFIX}[0-9A-Za-z]{{{KEY_RANDOM_CHARS}}}$")
MAX_RELEASE_REASON = 64  # a word for the ledger memo, not a message


def hash_key(api_key: str) -> str:
    return hashlib.sha256(api_key.encode()).hexdigest()


@dataclass(frozen=True)
class HoldRequest:
    task_id: str
    account_id: str
    item: common_pb2.PriceItem
    expires_at: int  # unix seconds; the sweeper releases the hold after it
    key_id: str = ""


@dataclass(frozen=True)
class NewKey:
    key: ApiKey
    secret: str


@dataclass(frozen=True)
class CheckResult:
    problems: list[str]
    entries: int


class Ledger:
    def __init__(self, engine: Engine, prices: PriceList, signup_grant: int):
        self.engine = engine
        self.prices = prices
        self.signup_grant = signup_grant

    # -- accounts and keys -------------------------------------------------------------

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
                _post(
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
        if not reason.strip():
            raise ApiError(E.MISSING_PARAMETER, "a reason is required", param="reason")
        with Session(self.engine, expire_on_commit=False) as s, s.begin():
            moved = s.execute(
                update(Account)
                .where(col(Account.id) == account_id, col(Account.balance) + amount >= 0)
                .values(balance=Account.balance + amount)
            )
            if moved.rowcount != 1:  # type: ignore[attr-defined]
                if s.get(Account, account_id) is None:
                    raise ApiError(E.ACCOUNT_NOT_FOUND)
                raise ApiError(
                    E.INVALID_AMOUNT,
                    "the adjustment would make the balance negative",
                    param="amount",
                )
            _post(
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

    @quick
    def create_api_key(
        self,
        *,
        account_id: str,
        name: str = "",
        secret: str = "",
        expires_at: datetime | None = None,
        credit_limit: int | None = None,
        rate_limit: int | None = None,
        scopes: Sequence[str] = (),
        parent_key_id: str = "",
    ) -> NewKey:
        """An operator's key (every scope unless ``scopes`` says less), or, with
        ``parent_key_id``, a key made by a key: never more than its parent can do."""
        if secret and not KEY_PATTERN.match(secret):
            raise ApiError(
                E.INVALID_PARAMETER,
                f"a provided key must be {KEY_PREFIX} + {KEY_RANDOM_CHARS} letters/digits",
                param="secret",
            )
        secret = secret or KEY_PREFIX + random_token(KEY_RANDOM_CHARS)
        with Session(self.engine, expire_on_commit=False) as s, s.begin():
            if s.get(Account, account_id) is None:
                raise ApiError(E.ACCOUNT_NOT_FOUND)
            if credit_limit is not None and not 0 < credit_limit <= MAX_CREDITS:
                raise ApiError(
                    E.INVALID_AMOUNT, f"credit_limit must be 1..{MAX_CREDITS}", param="credit_limit"
                )
            if rate_limit is not None and not 0 < rate_limit <= MAX_RATE_LIMIT:
                raise ApiError(
                    E.INVALID_PARAMETER,
                    f"rate_limit must be 1..{MAX_RATE_LIMIT} per minute",
                    param="rate_limit",
                )
            if expires_at is not None and expires_at <= utcnow():
                raise ApiError(E.INVALID_PARAMETER, "expires_at is in the past", param="expires_at")
            granted = scope_rules.parse(scopes)
            if parent_key_id:
                parent = _live_key(s, parent_key_id, account_id, lock=True)
                granted, expires_at, rate_limit = _inherit(
                    parent, granted, expires_at, credit_limit, rate_limit
                )
                if parent.credit_limit is not None:
                    parent.delegated += credit_limit or 0
            key = ApiKey(
                id=new_id("key"),
                account_id=account_id,
                name=name[:100],
                prefix=secret[: len(KEY_PREFIX) + 4],
                last4=secret[-4:],
                key_hash=hash_key(secret),
                expires_at=expires_at,
                credit_limit=credit_limit,
                rate_limit=rate_limit,
                scopes=" ".join(granted or scope_rules.ALL),
                parent_id=parent_key_id or None,
            )
            s.add(key)
            s.flush()
            s.expunge(key)
        return NewKey(key=key, secret=secret)

    @quick
    def authenticate(self, *, api_key: str) -> ApiKey:
        if not api_key.startswith(KEY_PREFIX):
            raise ApiError(E.INVALID_API_KEY)
        with Session(self.engine, expire_on_commit=False) as s:
            key = s.exec(select(ApiKey).where(ApiKey.key_hash == hash_key(api_key))).first()
            if key is None or key.revoked_at is not None:
                raise ApiError(E.INVALID_API_KEY)
            if key.expires_at is not None and _aware(key.expires_at) <= utcnow():
                raise ApiError(E.INVALID_API_KEY, "the key has expired")
            s.expunge(key)
            return key

    def list_api_keys(self, *, account_id: str) -> list[ApiKey]:
        with Session(self.engine, expire_on_commit=False) as s:
            if s.get(Account, account_id) is None:
                raise ApiError(E.ACCOUNT_NOT_FOUND)
            return list(
                s.exec(
                    select(ApiKey)
                    .where(ApiKey.account_id == account_id)
                    .order_by(col(ApiKey.created_at))
                )
            )

    @quick
    def revoke_api_key(
        self,
        *,
        key_id: str,
        account_id: str | None = None,
        by_key_id: str = "",
        cascade: bool = False,
    ) -> ApiKey:
        """Idempotent. With ``account_id``, only that account's key (a client's own). With
        ``by_key_id``, the key asking must be able to do all the other can (scopes, limits,
        expiry) and not descend from it. ``cascade`` revokes the keys made from it too, at any depth."""
        with Session(self.engine, expire_on_commit=False) as s, s.begin():
            key = s.get(ApiKey, key_id)
            if key is None or (account_id is not None and key.account_id != account_id):
                raise ApiError(E.KEY_NOT_FOUND)
            if by_key_id:
                by = _live_key(s, by_key_id, key.account_id)
                have = by.scopes.split()
                scope_rules.require(have, scope_rules.KEYS_MANAGE)
                if not _outranks(by, key):
                    raise ApiError(
                        E.INSUFFICIENT_SCOPE,
                        "the key can do more than the revoking key (scopes or limits)",
                    )
                if key.id in _ancestors(s, by):
                    raise ApiError(
                        E.INSUFFICIENT_SCOPE, "a key cannot revoke the key it was made from"
                    )
            now = utcnow()
            for revoked in [key, *(_descendants(s, key) if cascade else [])]:
                if revoked.revoked_at is None:
                    revoked.revoked_at = now
            return key

    # -- holds ---------------------------------------------------------------------------

    @quick
    def reserve(
        self,
        *,
        task_id: str,
        account_id: str,
        item: common_pb2.PriceItem,
        expires_at: int,
        key_id: str = "",
    ) -> Hold:
        """One hold (see ``reserve_many``); its error is raised."""
        (result,) = self.reserve_many([HoldRequest(task_id, account_id, item, expires_at, key_id)])
        if isinstance(result, ApiError):
            raise result
        return result

    @quick
    def reserve_many(self, requests: Sequence[HoldRequest]) -> list[Hold | ApiError]:
        """Hold each task's price, all in one transaction: one commit and two inserts for
        the batch, two conditional updates per task. A task that cannot be held (no
        credits, key over its limit) leaves no trace and gets its error; the rest commit.
        """
        results: list[Hold | ApiError | None] = [None] * len(requests)
        with self.engine.begin() as conn:
            held = {
                row["task_id"]: Hold(**row)
                for row in conn.execute(
                    sql.HOLDS_OF, {"t_ids": [r.task_id for r in requests]}
                ).mappings()
            }
            new: list[Hold] = []
            # By account: concurrent batches (PostgreSQL, several replicas) then lock
            # account rows in one order and cannot deadlock.
            for i in sorted(range(len(requests)), key=lambda i: requests[i].account_id):
                request = requests[i]
                try:
                    hold = self._reserve(conn, request, held.get(request.task_id))
                except ApiError as err:
                    results[i] = err
                    continue
                if request.task_id not in held:
                    held[request.task_id] = hold
                    new.append(hold)
                results[i] = hold
            if new:
                conn.execute(sql.INSERT_HOLD, [hold.model_dump() for hold in new])
                _post_many(
                    conn,
                    [
                        (
                            f"reserve:{h.task_id}",
                            "reserve",
                            h.task_id,
                            [
                                (h.account_id, Book.AVAILABLE, -h.amount),
                                (h.account_id, Book.HELD, h.amount),
                            ],
                        )
                        for h in new
                    ],
                )
        return [r for r in results if r is not None]

    def _reserve(self, conn: Connection, r: HoldRequest, existing: Hold | None) -> Hold:
        """Move one task's price from available to held. Raises with nothing written:
        the account's debit is undone when the key is over its limit. (Account row
        first, then key, as capture and release do.)"""
        quote = self.prices.quote(r.item)
        amount = quote.credits
        if existing is not None:
            if (existing.account_id, existing.amount) != (r.account_id, amount):
                raise ApiError(E.HOLD_CONFLICT, "task already has a different hold")
            return existing
        moved = conn.execute(sql.DEBIT_TO_HELD, {"a_id": r.account_id, "amount": amount})
        if moved.rowcount != 1:
            if conn.execute(sql.ACCOUNT_EXISTS, {"a_id": r.account_id}).first() is None:
                raise ApiError(E.ACCOUNT_NOT_FOUND)
            raise ApiError(
                E.INSUFFICIENT_CREDITS,
                f"this request costs {amount} credits; the balance is lower",
            )
        if r.key_id:
            try:
                _spend_on_key(conn, r.key_id, amount)
            except ApiError:
                conn.execute(
                    sql.SETTLE_HELD, {"a_id": r.account_id, "released": amount, "refund": amount}
                )
                raise
        return Hold(
            task_id=r.task_id,
            account_id=r.account_id,
            price_id=quote.price_id,
            key_id=r.key_id or None,
            model=r.item.model,
            resolution=r.item.resolution,
            quality=r.item.quality,
            unit_credits=quote.unit_credits,
            units=quote.units,
            amount=amount,
            expires_at=r.expires_at,
            created_at=utcnow(),
        )

    @quick
    def capture(self, *, task_id: str, delivered: int, quality: str = "") -> Hold:
        with self.engine.begin() as conn:
            hold = _locked_hold(conn, task_id)
            charge = self._charge(hold, delivered, quality)
            if hold.state == HoldState.CAPTURED:
                if hold.captured != charge:
                    raise ApiError(E.HOLD_CONFLICT, "task was already captured for another amount")
                return hold
            if hold.state == HoldState.RELEASED:
                raise ApiError(E.HOLD_CONFLICT, "task's hold was already released")
            refund = hold.amount - charge
            conn.execute(
                sql.SETTLE_HELD,
                {"a_id": hold.account_id, "released": hold.amount, "refund": refund},
            )
            if hold.key_id:
                _spend_on_key(conn, hold.key_id, -refund)
            _resolve(conn, hold, HoldState.CAPTURED, charge)
            _post(
                conn,
                f"capture:{task_id}",
                "capture",
                task_id,
                [
                    (hold.account_id, Book.HELD, -hold.amount),
                    (PLATFORM, Book.REVENUE, charge),
                    (hold.account_id, Book.AVAILABLE, refund),
                ],
            )
            return hold

    @quick
    def release(self, *, task_id: str, reason: str = "") -> Hold:
        with self.engine.begin() as conn:
            hold = _locked_hold(conn, task_id)
            if hold.state == HoldState.RELEASED:
                return hold
            if hold.state == HoldState.CAPTURED:
                raise ApiError(E.HOLD_CONFLICT, "task's hold was already captured")
            conn.execute(
                sql.SETTLE_HELD,
                {"a_id": hold.account_id, "released": hold.amount, "refund": hold.amount},
            )
            if hold.key_id:
                _spend_on_key(conn, hold.key_id, -hold.amount)
            _resolve(conn, hold, HoldState.RELEASED, 0)
            _post(
                conn,
                f"release:{task_id}",
                "release",
                task_id,
                [
                    (hold.account_id, Book.HELD, -hold.amount),
                    (hold.account_id, Book.AVAILABLE, hold.amount),
                ],
                memo=reason.strip()[:MAX_RELEASE_REASON] or None,
            )
            return hold

    def entries(
        self,
        *,
        account_id: str,
        since: datetime | None = None,
        until: datetime | None = None,
        before_id: int | None = None,
        limit: int = 50,
    ) -> list[LedgerEntry]:
        """An account's movements, newest first (``before_id`` pages back)."""
        query = select(LedgerEntry).where(LedgerEntry.account_id == account_id)
        if since is not None:
            query = query.where(col(LedgerEntry.created_at) >= since)
        if until is not None:
            query = query.where(col(LedgerEntry.created_at) < until)
        if before_id is not None:
            query = query.where(col(LedgerEntry.id) < before_id)
        with Session(self.engine, expire_on_commit=False) as s:
            if s.get(Account, account_id) is None:
                raise ApiError(E.ACCOUNT_NOT_FOUND)
            return list(s.exec(query.order_by(col(LedgerEntry.id).desc()).limit(limit)))

    def expired_holds(self, *, now: int, limit: int = 500) -> list[str]:
        """Task ids of pending holds past their deadline, oldest first."""
        with Session(self.engine) as s:
            query = (
                select(Hold.task_id)
                .where(Hold.state == HoldState.PENDING, col(Hold.expires_at) < now)
                .order_by(col(Hold.expires_at))
                .limit(limit)
            )
            return list(s.exec(query))

    def _charge(self, hold: Hold, delivered: int, quality: str) -> int:
        if delivered < 0 or delivered > hold.units:
            raise ApiError(
                E.INVALID_AMOUNT,
                f"delivered must be 0..{hold.units} for this hold",
                param="delivered",
            )
        unit = hold.unit_credits
        if quality and quality != "auto":
            try:
                tier = self.prices.unit_price(hold.model, hold.resolution, quality)
                unit = min(unit, tier.credits)
            except ApiError:
                pass  # a tier we do not sell at this size: keep the reserved unit price
        return unit * delivered

    # -- verification --------------------------------------------------------------------

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
            live: dict[str, int] = defaultdict(int)
            for key_id, state, amount, captured in s.execute(
                select(Hold.key_id, Hold.state, Hold.amount, Hold.captured).where(
                    col(Hold.key_id).is_not(None)
                )
            ):
                live[key_id] += amount if state == HoldState.PENDING else captured
            for key in s.exec(select(ApiKey)):
                if key.spent != live[key.id]:
                    problems.append(f"key {key.id}: spent {key.spent}, holds give {live[key.id]}")
        return CheckResult(problems=problems, entries=int(entries))


Sides = list[tuple[str, Book, int]]  # (account, book, amount) per entry


def _post(
    conn: Connection | Session,
    txn_id: str,
    kind: str,
    task_id: str | None,
    sides: Sides,
    memo: str | None = None,
) -> None:
    _post_many(conn, [(txn_id, kind, task_id, sides)], memo)


def _post_many(
    conn: Connection | Session,
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


def _spend_on_key(conn: Connection, key_id: str, amount: int) -> None:
    """Count credits against a key's limit (negative gives them back)."""
    moved = conn.execute(sql.KEY_SPEND, {"k_id": key_id, "amount": amount})
    if moved.rowcount != 1 and amount > 0:
        raise ApiError(
            E.KEY_CREDIT_LIMIT, f"this request costs {amount} credits, over the key's credit limit"
        )


def _hold_row(conn: Connection, task_id: str, *, lock: bool = False) -> Hold | None:
    row = conn.execute(sql.HOLD_LOCKED if lock else sql.HOLD, {"t_id": task_id}).mappings()
    first = row.first()
    return Hold(**first) if first is not None else None


def _resolve(conn: Connection, hold: Hold, state: HoldState, charge: int) -> None:
    hold.state, hold.captured, hold.resolved_at = state, charge, utcnow()
    conn.execute(
        sql.RESOLVE_HOLD,
        {"t_id": hold.task_id, "new_state": state, "charged": charge, "at": hold.resolved_at},
    )


def _check_amount(amount: int, *, positive: bool) -> None:
    if positive and not 0 < amount <= MAX_CREDITS:
        raise ApiError(E.INVALID_AMOUNT, f"amount must be 1..{MAX_CREDITS}", param="amount")
    if not positive and (amount == 0 or abs(amount) > MAX_CREDITS):
        raise ApiError(
            E.INVALID_AMOUNT, f"amount must be non-zero and within ±{MAX_CREDITS}", param="amount"
        )


def _aware(moment: datetime) -> datetime:
    """SQLite hands datetimes back without a zone; they were stored as UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _locked_hold(conn: Connection, task_id: str) -> Hold:
    hold = _hold_row(conn, task_id, lock=True)
    if hold is None:
        raise ApiError(E.HOLD_NOT_FOUND)
    return hold


def _live_key(s: Session, key_id: str, account_id: str, *, lock: bool = False) -> ApiKey:
    """A usable key of ``account_id`` (the one making a request), or 10002."""
    key = s.get(ApiKey, key_id, with_for_update=lock)
    if key is None or key.account_id != account_id or key.revoked_at is not None:
        raise ApiError(E.INVALID_API_KEY)
    if key.expires_at is not None and _aware(key.expires_at) <= utcnow():
        raise ApiError(E.INVALID_API_KEY, "the key has expired")
    return key


def _inherit(
    parent: ApiKey,
    scopes: tuple[str, ...],
    expires_at: datetime | None,
    credit_limit: int | None,
    rate_limit: int | None,
) -> tuple[tuple[str, ...], datetime | None, int | None]:
    """What a key made by ``parent`` may be: at most its scopes, expiry and rate limit
    (which it gets when it asks for none), and a credit limit out of what the parent has
    left. Anything more is refused, never narrowed silently."""
    have = tuple(parent.scopes.split())
    scope_rules.require(have, scope_rules.KEYS_MANAGE)

    def more(what: str, param: str) -> ApiError:
        return ApiError(E.INSUFFICIENT_SCOPE, f"{what} than the key creating it", param=param)

    if not scopes:
        scopes = have
    elif not set(scopes) <= set(have):
        raise more("more scopes", "scopes")
    if parent.expires_at is not None:
        limit = _aware(parent.expires_at)
        if expires_at is None:
            expires_at = limit
        elif expires_at > limit:
            raise more("a later expiry", "expires_at")
    if parent.rate_limit is not None:
        if rate_limit is None:
            rate_limit = parent.rate_limit
        elif rate_limit > parent.rate_limit:
            raise more("a higher rate limit", "rate_limit")
    if parent.credit_limit is not None:
        left = parent.credit_limit - parent.spent - parent.delegated
        if credit_limit is None:
            raise ApiError(
                E.INSUFFICIENT_SCOPE,
                f"credit_limit is required: the key creating it has {left} credits left",
                param="credit_limit",
            )
        if credit_limit > left:
            raise ApiError(
                E.INSUFFICIENT_SCOPE,
                f"credit_limit above the {left} credits the key creating it has left",
                param="credit_limit",
            )
    return scopes, expires_at, rate_limit


def _outranks(by: ApiKey, key: ApiKey) -> bool:
    """``by`` can do everything ``key`` can: its scopes, and no tighter limit or expiry
    (a key's descendants always qualify)."""

    def within(mine: float | None, theirs: float | None) -> bool:
        return mine is None or (theirs is not None and theirs <= mine)

    def seconds(moment: datetime | None) -> float | None:
        return _aware(moment).timestamp() if moment is not None else None

    return (
        set(key.scopes.split()) <= set(by.scopes.split())
        and within(by.credit_limit, key.credit_limit)
        and within(by.rate_limit, key.rate_limit)
        and within(seconds(by.expires_at), seconds(key.expires_at))
    )


def _ancestors(s: Session, key: ApiKey) -> set[str]:
    found: set[str] = set()
    parent_id = key.parent_id
    while parent_id and parent_id not in found:
        found.add(parent_id)
        parent = s.get(ApiKey, parent_id)
        parent_id = parent.parent_id if parent is not None else None
    return found


def _descendants(s: Session, key: ApiKey) -> list[ApiKey]:
    found: list[ApiKey] = []
    frontier = [key.id]
    while frontier:
        children = list(s.exec(select(ApiKey).where(col(ApiKey.parent_id).in_(frontier))))
        found += children
        frontier = [c.id for c in children]
    return found
