"""Holds: credits reserved at submit, then captured for what was delivered or released.
Every call is idempotent by task id."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy.engine import Connection, Engine
from sqlmodel import Session, col, select

from pixelrelay.db import DirectConnection, DirectSql, quick
from pixelrelay.errors import ApiError, E, insufficient_credits
from pixelrelay.v1 import common_pb2
from pixelrelay_billing import statements as sql
from pixelrelay_billing.ledger.postings import Sides, post, post_many
from pixelrelay_billing.models import PLATFORM, Book, Hold, HoldState, utcnow
from pixelrelay_billing.prices import PriceList

MAX_RELEASE_REASON = 64  # a word for the ledger memo, not a message


@dataclass(frozen=True)
class HoldRequest:
    task_id: str
    account_id: str
    item: common_pb2.PriceItem
    expires_at: int  # unix seconds; the sweeper releases the hold after it
    key_id: str = ""


@dataclass(frozen=True)
class Settle:
    """One task's settlement: capture ``delivered`` images, or (None) release."""

    task_id: str
    delivered: int | None
    quality: str = ""
    reason: str = ""  # the release's memo


def _spend_on_key(conn: Connection | DirectConnection, key_id: str, amount: int) -> None:
    """Count credits against a key's limit (negative gives them back)."""
    moved = conn.execute(sql.KEY_SPEND, {"k_id": key_id, "amount": amount})
    if moved.rowcount != 1 and amount > 0:
        raise ApiError(
            E.KEY_CREDIT_LIMIT, f"this request costs {amount} credits, over the key's credit limit"
        )


def _unix(moment: datetime) -> int:
    """A naive UTC datetime (SQLite's) or an aware one (PostgreSQL's), in unix seconds."""
    return int((moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp())


def _hold_row(conn: Connection | DirectConnection, task_id: str) -> Hold | None:
    row = conn.execute(sql.HOLD, {"t_id": task_id}).mappings()
    first = row.first()
    return Hold(**first) if first is not None else None


def _resolve(
    conn: Connection | DirectConnection, hold: Hold, state: HoldState, charge: int
) -> None:
    hold.state, hold.captured, hold.resolved_at = state, charge, utcnow()
    conn.execute(
        sql.RESOLVE_HOLD,
        {
            "t_id": hold.task_id,
            "new_state": state,
            "charged": charge,
            "at": hold.resolved_at,
            "price_id": hold.price_id,
        },
    )


def release_pending(conn: Connection | DirectConnection, hold: Hold, reason: str) -> None:
    """Return a pending (locked) hold's credits to the balance, and its key's spend."""
    conn.execute(
        sql.SETTLE_HELD,
        {"a_id": hold.account_id, "released": hold.amount, "refund": hold.amount},
    )
    if hold.key_id:
        _spend_on_key(conn, hold.key_id, -hold.amount)
    _resolve(conn, hold, HoldState.RELEASED, 0)
    post(
        conn,
        f"release:{hold.task_id}",
        "release",
        hold.task_id,
        [
            (hold.account_id, Book.HELD, -hold.amount),
            (hold.account_id, Book.AVAILABLE, hold.amount),
        ],
        memo=reason.strip()[:MAX_RELEASE_REASON] or None,
    )


class Holds:
    engine: Engine
    direct: DirectSql  # reserve and settle: the transactions every task makes
    prices: PriceList

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
        the batch, two conditional updates per hold. A task that cannot be held (no
        credits, key over its limit) leaves no trace and gets its error; the rest commit."""
        results: list[Hold | ApiError | None] = [None] * len(requests)
        with self.direct.begin() as conn:
            self._reserve_all(conn, requests, results)
        return [r for r in results if r is not None]

    def _reserve_all(
        self,
        conn: Connection | DirectConnection,
        requests: Sequence[HoldRequest],
        results: list[Hold | ApiError | None],
    ) -> None:
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
            post_many(
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

    def _reserve(
        self, conn: Connection | DirectConnection, r: HoldRequest, existing: Hold | None
    ) -> Hold:
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
            account = conn.execute(sql.ACCOUNT_STATE, {"a_id": r.account_id}).first()
            if account is None:
                raise ApiError(E.ACCOUNT_NOT_FOUND)
            if account.deleted_at is not None:
                raise ApiError(E.ACCOUNT_DELETED)
            raise insufficient_credits(amount, account.balance)
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
        """One task's capture (see ``settle_many``); its error is raised."""
        return self._settle_one(Settle(task_id, delivered, quality))

    @quick
    def release(self, *, task_id: str, reason: str = "") -> Hold:
        """One task's release (see ``settle_many``); its error is raised."""
        return self._settle_one(Settle(task_id, None, reason=reason))

    def _settle_one(self, request: Settle) -> Hold:
        (result,) = self.settle_many([request])
        if isinstance(result, ApiError):
            raise result
        return result

    @quick
    def settle_many(self, requests: Sequence[Settle]) -> list[Hold | ApiError]:
        """Capture or release each task's hold, all in one transaction (billing's settlement
        consumer batches the events that arrive together). Each task gets its hold as
        settled, or its own error (HOLD_CONFLICT: settled the other way already) with
        nothing written for it: every refusal comes before a write. Idempotent: a settled
        hold asked again the same way comes back as it is."""
        results: list[Hold | ApiError | None] = [None] * len(requests)
        with self.direct.begin() as conn:
            # One statement reads and locks them all; a hold settled here is updated in
            # place, so a task twice in one batch sees its first settlement.
            held = {
                row["task_id"]: Hold(**row)
                for row in conn.execute(
                    sql.HOLDS_LOCKED_BY_ACCOUNT, {"t_ids": [r.task_id for r in requests]}
                ).mappings()
            }

            def by_account(i: int) -> str:
                hold = held.get(requests[i].task_id)
                return hold.account_id if hold is not None else ""

            for i in sorted(range(len(requests)), key=by_account):
                r, hold = requests[i], held.get(requests[i].task_id)
                try:
                    if hold is None:
                        raise ApiError(E.HOLD_NOT_FOUND)
                    if r.delivered is None:
                        results[i] = self._release(conn, hold, r.reason)
                    else:
                        results[i] = self._capture(conn, hold, r.delivered, r.quality)
                except ApiError as err:
                    results[i] = err
        return [r for r in results if r is not None]

    def _capture(
        self, conn: Connection | DirectConnection, hold: Hold, delivered: int, quality: str
    ) -> Hold:
        task_id = hold.task_id
        charge, price_id = self._charge(hold, delivered, quality)
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
        hold.price_id = price_id  # the row charged: a cheaper reported tier's
        _resolve(conn, hold, HoldState.CAPTURED, charge)
        # What was charged and what came back are two movements, so the ledger reads
        # "capture 47" and "refund 139", never a capture that credits the balance.
        txns: list[tuple[str, str, str | None, Sides]] = []
        if charge:
            txns.append(
                (
                    f"capture:{task_id}",
                    "capture",
                    task_id,
                    [(hold.account_id, Book.HELD, -charge), (PLATFORM, Book.REVENUE, charge)],
                )
            )
        if refund:
            txns.append(
                (
                    f"refund:{task_id}",
                    "refund",
                    task_id,
                    [
                        (hold.account_id, Book.HELD, -refund),
                        (hold.account_id, Book.AVAILABLE, refund),
                    ],
                )
            )
        post_many(conn, txns, memo=price_id)
        return hold

    @quick
    def get_hold(self, *, task_id: str) -> Hold:
        with self.engine.connect() as conn:
            hold = _hold_row(conn, task_id)
        if hold is None:
            raise ApiError(E.HOLD_NOT_FOUND)
        return hold

    @quick
    def extend_holds(self, deadlines: Sequence[tuple[str, int]]) -> None:
        """Give each pending hold its new deadline (task id, unix seconds), in one
        transaction; a settled hold or a later deadline is left alone."""
        if not deadlines:
            return
        with self.engine.begin() as conn:
            conn.execute(sql.EXTEND_HOLD, [{"t_id": t, "until": until} for t, until in deadlines])

    def _release(self, conn: Connection | DirectConnection, hold: Hold, reason: str) -> Hold:
        if hold.state == HoldState.RELEASED:
            return hold
        if hold.state == HoldState.CAPTURED:
            raise ApiError(E.HOLD_CONFLICT, "task's hold was already captured")
        release_pending(conn, hold, reason)
        return hold

    def expired_holds(self, *, now: int, limit: int = 500) -> list[tuple[str, int]]:
        """Pending holds past their deadline, oldest first: (task id, when it was made, in
        unix seconds)."""
        with Session(self.engine) as s:
            query = (
                select(Hold.task_id, Hold.created_at)
                .where(Hold.state == HoldState.PENDING, col(Hold.expires_at) < now)
                .order_by(col(Hold.expires_at))
                .limit(limit)
            )
            return [(task_id, _unix(made)) for task_id, made in s.exec(query)]

    def _charge(self, hold: Hold, delivered: int, quality: str) -> tuple[int, str]:
        """The credits for ``delivered`` images and the price row they are charged at: the
        reserved one, or the cheaper tier the upstream reports (quality=auto is held at
        high)."""
        if delivered < 0 or delivered > hold.units:
            raise ApiError(
                E.INVALID_AMOUNT,
                f"delivered must be 0..{hold.units} for this hold",
                param="delivered",
            )
        unit, price_id = hold.unit_credits, hold.price_id
        if quality and quality != "auto":
            try:
                tier = self.prices.unit_price(hold.model, hold.resolution, quality)
            except ApiError:
                tier = None  # a tier we do not sell at this size: keep the reserved price
            if tier is not None and tier.credits < unit:
                unit, price_id = tier.credits, tier.id
        return unit * delivered, price_id
