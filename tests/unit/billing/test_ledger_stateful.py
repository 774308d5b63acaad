"""Random sequences of ledger operations against a reference model (Hypothesis), on SQLite
and PostgreSQL.

The model computes every figure itself, from its own copy of the price table, never from
what the ledger answered: each hold's amount, each capture's charge (re-priced at the tier
the upstream reports), each key's spend against its limit, which holds a sweep finds
expired. Two accounts, keys with and without credit limits, single and batched reserves,
retries with the same and with different amounts, extensions of deadlines and sweeps.
After every step the database agrees with the model (balances, held, every key's spend)
and the ledger's own check passes.

LEDGER_MODEL_EXAMPLES sets the examples per database (CI raises it); steps are 50.
"""

from __future__ import annotations

import os
import tempfile
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from pixelrelay.db import Database
from pixelrelay.errors import ApiError, E, ErrorKind
from pixelrelay.v1 import common_pb2
from pixelrelay_billing.ledger import HoldRequest, Ledger
from pixelrelay_billing.prices import PriceList
from tests.utils.databases import POSTGRES_URL, open_database

EXAMPLES = int(os.environ.get("LEDGER_MODEL_EXAMPLES", "30"))

# The model's own price table (the catalog's, pixelrelay/catalog.yaml, written out again): credits
# per image by (model, resolution, quality); "auto" is quoted as "high". The basic model
# has one price per resolution whatever the quality.
BASIC = {"1k": 7, "2k": 14, "4k": 20}
STABLE = {
    ("1k", "low"): 6,
    ("2k", "low"): 6,
    ("1k", "medium"): 47,
    ("2k", "medium"): 47,
    ("1k", "high"): 186,
    ("2k", "high"): 186,
    ("4k", "high"): 1467,
}


def unit_price(model: str, resolution: str, quality: str) -> int | None:
    if model == "gpt-image-2":
        return BASIC.get(resolution)
    return STABLE.get((resolution, "high" if quality == "auto" else quality))


ITEMS = [
    common_pb2.PriceItem(model="gpt-image-2", resolution="1k", n=1),
    common_pb2.PriceItem(model="gpt-image-2", resolution="4k", n=1),
    common_pb2.PriceItem(model="gpt-image-2-official", resolution="1k", quality="low", n=4),
    common_pb2.PriceItem(model="gpt-image-2-official", resolution="2k", quality="auto", n=2),
    common_pb2.PriceItem(model="gpt-image-2-official", resolution="1k", quality="medium", n=1),
]
REPORTED_QUALITIES = ["", "auto", "low", "medium", "high"]
ACCOUNTS = 2


@dataclass
class ModelHold:
    account: int
    key: str | None
    item: common_pb2.PriceItem
    expires_at: int
    state: str = "pending"
    captured: int = 0

    @property
    def unit(self) -> int:
        price = unit_price(self.item.model, self.item.resolution, self.item.quality)
        assert price is not None
        return price

    @property
    def amount(self) -> int:
        return self.unit * self.item.n

    def charge(self, delivered: int, quality: str) -> int:
        """What a capture must charge: the reserved unit, or the reported tier if cheaper."""
        unit = self.unit
        if quality and quality != "auto":
            tier = unit_price(self.item.model, self.item.resolution, quality)
            if tier is not None:
                unit = min(unit, tier)
        return unit * delivered


@dataclass
class ModelKey:
    account: int
    limit: int | None
    spent: int = 0


@dataclass
class Model:
    balances: list[int]
    held: list[int] = field(default_factory=lambda: [0] * ACCOUNTS)
    holds: dict[str, ModelHold] = field(default_factory=dict)
    keys: dict[str, ModelKey] = field(default_factory=dict)

    def settle(self, hold: ModelHold, charge: int) -> None:
        """Capture (charge > 0 or 0) or release (charge 0): held → balance less the charge."""
        self.held[hold.account] -= hold.amount
        self.balances[hold.account] += hold.amount - charge
        if hold.key is not None:
            self.keys[hold.key].spent -= hold.amount - charge


class LedgerMachine(RuleBasedStateMachine):
    database = "sqlite"

    @initialize(grants=st.lists(st.integers(0, 3000), min_size=ACCOUNTS, max_size=ACCOUNTS))
    def start(self, grants: list[int]) -> None:
        self.resources = ExitStack()
        directory = Path(self.resources.enter_context(tempfile.TemporaryDirectory()))
        self.db: Database = self.resources.enter_context(
            open_database(self.database, directory, tables=True)
        )
        self.ledger = Ledger(self.db.engine, PriceList.load(), signup_grant=0)
        self.accounts = [
            self.ledger.create_account(name=f"a{i}", grant=grants[i]).id for i in range(ACCOUNTS)
        ]
        self.model = Model(balances=list(grants))
        self.next_task = 0

    def teardown(self) -> None:
        if hasattr(self, "resources"):
            self.resources.close()

    def _new_task(self) -> str:
        self.next_task += 1
        return f"t{self.next_task}"

    def _key_ids(self) -> list[str | None]:
        # In creation order: key ids are random, an order by id would not replay.
        return [None, *self.model.keys]

    # -- keys ---------------------------------------------------------------------------

    @rule(account=st.integers(0, ACCOUNTS - 1), limit=st.none() | st.integers(1, 400))
    def create_key(self, account: int, limit: int | None) -> None:
        key = self.ledger.create_api_key(account_id=self.accounts[account], credit_limit=limit)
        self.model.keys[key.key.id] = ModelKey(account, limit)

    # -- holds --------------------------------------------------------------------------

    def _expect_reserve(
        self, request: HoldRequest, account: int, key: str | None
    ) -> ModelHold | ErrorKind:
        """What reserving ``request`` must give, and the model after it: the existing hold,
        a new one, or the error (nothing moved)."""
        existing = self.model.holds.get(request.task_id)
        price = unit_price(request.item.model, request.item.resolution, request.item.quality)
        assert price is not None
        amount = price * request.item.n
        if existing is not None:
            if (existing.account, existing.amount) != (account, amount):
                return E.HOLD_CONFLICT
            return existing
        if self.model.balances[account] < amount:
            return E.INSUFFICIENT_CREDITS
        if key is not None:
            k = self.model.keys[key]
            if k.limit is not None and k.spent + amount > k.limit:
                return E.KEY_CREDIT_LIMIT
            k.spent += amount
        self.model.balances[account] -= amount
        self.model.held[account] += amount
        hold = ModelHold(account, key, request.item, request.expires_at)
        self.model.holds[request.task_id] = hold
        return hold

    def _request(self, data: st.DataObject, task_id: str) -> tuple[HoldRequest, int, str | None]:
        account = data.draw(st.integers(0, ACCOUNTS - 1))
        keys = [k for k in self._key_ids() if k is None or self.model.keys[k].account == account]
        key = data.draw(st.sampled_from(keys))
        item = data.draw(st.sampled_from(ITEMS))
        expires_at = data.draw(st.integers(0, 100))
        request = HoldRequest(task_id, self.accounts[account], item, expires_at, key or "")
        return request, account, key

    @rule(data=st.data(), size=st.integers(1, 5))
    def reserve_batch(self, data: st.DataObject, size: int) -> None:
        """New tasks, and now and then a retry of an existing one, in one batch. The ledger
        works through a batch by account; so does the model."""
        known = sorted(self.model.holds)
        requests = []
        for _ in range(size):
            retry = bool(known) and data.draw(st.booleans())
            task_id = data.draw(st.sampled_from(known)) if retry else self._new_task()
            requests.append(self._request(data, task_id))
        results = self.ledger.reserve_many([r for r, _, _ in requests])
        expected: list[ModelHold | ErrorKind | None] = [None] * size
        for i in sorted(range(size), key=lambda i: requests[i][0].account_id):
            request, account, key = requests[i]
            expected[i] = self._expect_reserve(request, account, key)
        for got, want in zip(results, expected, strict=True):
            if isinstance(want, ErrorKind):
                assert isinstance(got, ApiError) and got.kind is want, (got, want)
            else:
                assert isinstance(want, ModelHold) and not isinstance(got, ApiError)
                assert (got.amount, got.account_id) == (want.amount, self.accounts[want.account])

    @precondition(lambda self: bool(self.model.holds))
    @rule(data=st.data(), quality=st.sampled_from(REPORTED_QUALITIES))
    def capture(self, data: st.DataObject, quality: str) -> None:
        task_id = data.draw(st.sampled_from(sorted(self.model.holds)))
        hold = self.model.holds[task_id]
        delivered = data.draw(st.integers(0, hold.item.n + 1))
        charge = hold.charge(delivered, quality)
        try:
            result = self.ledger.capture(task_id=task_id, delivered=delivered, quality=quality)
        except ApiError as err:
            if delivered > hold.item.n:
                assert err.kind is E.INVALID_AMOUNT
            elif hold.state == "released":
                assert err.kind is E.HOLD_CONFLICT
            else:  # a retry for another amount is refused
                assert hold.state == "captured" and charge != hold.captured
                assert err.kind is E.HOLD_CONFLICT
            return
        assert delivered <= hold.item.n and hold.state != "released"
        assert result.captured == charge
        if hold.state == "captured":  # the same capture again: nothing moves
            assert charge == hold.captured
            return
        hold.state, hold.captured = "captured", charge
        self.model.settle(hold, charge)

    @precondition(lambda self: bool(self.model.holds))
    @rule(data=st.data())
    def release(self, data: st.DataObject) -> None:
        task_id = data.draw(st.sampled_from(sorted(self.model.holds)))
        hold = self.model.holds[task_id]
        try:
            self.ledger.release(task_id=task_id, reason="failed")
        except ApiError as err:
            assert err.kind is E.HOLD_CONFLICT and hold.state == "captured"
            return
        assert hold.state != "captured"
        if hold.state == "pending":
            hold.state = "released"
            self.model.settle(hold, 0)

    @precondition(lambda self: bool(self.model.holds))
    @rule(data=st.data(), until=st.integers(0, 150))
    def extend(self, data: st.DataObject, until: int) -> None:
        """Queued tasks' holds get a later deadline; settled ones and later ones stay."""
        task_ids = data.draw(st.lists(st.sampled_from(sorted(self.model.holds)), max_size=4))
        self.ledger.extend_holds([(t, until) for t in [*task_ids, "no-such-task"]])
        for task_id in task_ids:
            hold = self.model.holds[task_id]
            if hold.state == "pending" and hold.expires_at < until:
                hold.expires_at = until

    @rule(now=st.integers(0, 160))
    def sweep(self, now: int) -> None:
        """What billing's sweeper does: find the pending holds past their deadline, release."""
        expired = [task_id for task_id, _made in self.ledger.expired_holds(now=now)]
        want = {
            t for t, h in self.model.holds.items() if h.state == "pending" and h.expires_at < now
        }
        assert set(expired) == want
        for task_id in expired:
            self.ledger.release(task_id=task_id, reason="expired")
            hold = self.model.holds[task_id]
            hold.state = "released"
            self.model.settle(hold, 0)

    # -- credits ------------------------------------------------------------------------

    @rule(
        account=st.integers(0, ACCOUNTS - 1),
        amount=st.integers(-500, 5000),
        reason=st.sampled_from(["promo", "refund", ""]),
    )
    def move(self, account: int, amount: int, reason: str) -> None:
        account_id = self.accounts[account]
        try:
            if amount > 0 and reason == "promo":
                self.ledger.top_up(account_id=account_id, amount=amount, reason=reason)
            else:
                self.ledger.adjust(account_id=account_id, amount=amount, reason=reason)
        except ApiError as err:
            assert (err.kind is E.MISSING_PARAMETER and not reason) or (
                err.kind is E.INVALID_AMOUNT
                and (amount == 0 or self.model.balances[account] + amount < 0)
            )
            return
        assert reason and amount != 0 and self.model.balances[account] + amount >= 0
        self.model.balances[account] += amount

    @invariant()
    def books_agree(self) -> None:
        if not hasattr(self, "ledger"):
            return
        for i, account_id in enumerate(self.accounts):
            account = self.ledger.get_account(account_id=account_id)
            assert (account.balance, account.held) == (self.model.balances[i], self.model.held[i])
            spent = {k.id: k.spent for k in self.ledger.list_api_keys(account_id=account_id)}
            assert spent == {k: m.spent for k, m in self.model.keys.items() if m.account == i}
        assert self.ledger.check().problems == []


SETTINGS = settings(
    max_examples=EXAMPLES,
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
LedgerMachine.TestCase.settings = SETTINGS
TestLedgerModelOnSqlite = LedgerMachine.TestCase


class PostgresLedgerMachine(LedgerMachine):
    database = "postgres"


PostgresLedgerMachine.TestCase.settings = SETTINGS
TestLedgerModelOnPostgres = pytest.mark.postgres(
    pytest.mark.skipif(not POSTGRES_URL, reason="PIXELRELAY_TEST_POSTGRES_URL is not set")(
        PostgresLedgerMachine.TestCase
    )
)
