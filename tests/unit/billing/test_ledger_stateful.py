"""Random sequences of ledger operations against a reference model (Hypothesis).

After every step: the database agrees with the model, and the ledger's own check
(every transaction sums to zero, every balance recomputes from its entries) passes.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from billing.ledger import Ledger
from billing.prices import PriceList
from billing.settings import DEFAULT_PRICES
from pixelrelay.db import Database
from pixelrelay.errors import ApiError, E
from pixelrelay.v1 import common_pb2

PRICES = PriceList.load(DEFAULT_PRICES)
ITEMS = [
    common_pb2.PriceItem(model="gpt-image-2", resolution="1k", n=1),
    common_pb2.PriceItem(model="gpt-image-2", resolution="4k", n=1),
    common_pb2.PriceItem(model="gpt-image-2-official", resolution="1k", quality="low", n=4),
    common_pb2.PriceItem(model="gpt-image-2-official", resolution="2k", quality="auto", n=2),
]
QUALITIES = ["", "low", "medium", "high"]


@dataclass
class ModelHold:
    amount: int
    units: int
    unit: int
    item: common_pb2.PriceItem
    state: str = "pending"
    captured: int = 0


@dataclass
class Model:
    balance: int
    held: int = 0
    holds: dict[str, ModelHold] = field(default_factory=dict)


class LedgerMachine(RuleBasedStateMachine):
    @initialize(grant=st.integers(0, 3000))
    def start(self, grant: int) -> None:
        self.dir = tempfile.TemporaryDirectory()
        self.db = Database(f"sqlite:///{Path(self.dir.name) / 'ledger.db'}")
        self.db.create_all()
        self.ledger = Ledger(self.db.engine, PRICES, signup_grant=grant)
        self.account = self.ledger.create_account(name="prop").id
        self.model = Model(balance=grant)
        self.next_task = 0

    def teardown(self) -> None:
        self.db.close()
        self.dir.cleanup()

    def _task_ids(self) -> list[str]:
        return sorted(self.model.holds)

    @rule(item=st.sampled_from(ITEMS))
    def reserve(self, item: common_pb2.PriceItem) -> None:
        task_id = f"t{self.next_task}"
        self.next_task += 1
        quote = PRICES.quote(item)
        try:
            hold = self.ledger.reserve(
                task_id=task_id, account_id=self.account, item=item, expires_at=0
            )
        except ApiError as err:
            assert err.kind is E.INSUFFICIENT_CREDITS
            assert self.model.balance < quote.credits
            return
        assert hold.amount == quote.credits <= self.model.balance
        self.model.balance -= hold.amount
        self.model.held += hold.amount
        self.model.holds[task_id] = ModelHold(hold.amount, quote.units, quote.unit_credits, item)

    @rule(data=st.data(), quality=st.sampled_from(QUALITIES))
    def capture(self, data: st.DataObject, quality: str) -> None:
        if not self.model.holds:
            return
        task_id = data.draw(st.sampled_from(self._task_ids()))
        hold = self.model.holds[task_id]
        delivered = data.draw(st.integers(0, hold.units + 1))
        try:
            result = self.ledger.capture(task_id=task_id, delivered=delivered, quality=quality)
        except ApiError as err:
            if delivered > hold.units:
                assert err.kind is E.INVALID_AMOUNT
            else:
                assert err.kind is E.HOLD_CONFLICT and hold.state != "pending"
            return
        assert delivered <= hold.units
        if hold.state == "captured":  # an idempotent retry: nothing moves
            assert result.captured == hold.captured
            return
        assert hold.state == "pending"
        assert result.captured <= hold.unit * delivered
        hold.state, hold.captured = "captured", result.captured
        self.model.held -= hold.amount
        self.model.balance += hold.amount - result.captured

    @rule(data=st.data())
    def release(self, data: st.DataObject) -> None:
        if not self.model.holds:
            return
        task_id = data.draw(st.sampled_from(self._task_ids()))
        hold = self.model.holds[task_id]
        try:
            self.ledger.release(task_id=task_id)
        except ApiError as err:
            assert err.kind is E.HOLD_CONFLICT and hold.state == "captured"
            return
        if hold.state == "pending":
            hold.state = "released"
            self.model.held -= hold.amount
            self.model.balance += hold.amount

    @rule(data=st.data())
    def retry_reserve(self, data: st.DataObject) -> None:
        """A retried reserve returns the original hold; a different amount is refused."""
        if not self.model.holds:
            return
        task_id = data.draw(st.sampled_from(self._task_ids()))
        hold = self.model.holds[task_id]
        item = data.draw(st.sampled_from(ITEMS))
        try:
            again = self.ledger.reserve(
                task_id=task_id, account_id=self.account, item=item, expires_at=0
            )
        except ApiError as err:
            assert err.kind is E.HOLD_CONFLICT
            assert PRICES.quote(item).credits != hold.amount
            return
        assert again.amount == hold.amount

    @rule(amount=st.integers(-500, 5000), reason=st.sampled_from(["promo", "refund", ""]))
    def move(self, amount: int, reason: str) -> None:
        try:
            if amount > 0 and reason == "promo":
                self.ledger.top_up(account_id=self.account, amount=amount, reason=reason)
            else:
                self.ledger.adjust(account_id=self.account, amount=amount, reason=reason)
        except ApiError as err:
            assert (err.kind is E.MISSING_PARAMETER and not reason) or (
                err.kind is E.INVALID_AMOUNT and (amount == 0 or self.model.balance + amount < 0)
            )
            return
        assert reason and amount != 0 and self.model.balance + amount >= 0
        self.model.balance += amount

    @invariant()
    def books_agree(self) -> None:
        if not hasattr(self, "ledger"):
            return
        account = self.ledger.get_account(account_id=self.account)
        assert (account.balance, account.held) == (self.model.balance, self.model.held)
        assert self.ledger.check().problems == []


LedgerMachine.TestCase.settings = settings(
    max_examples=40,
    stateful_step_count=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestLedgerStateful = LedgerMachine.TestCase
