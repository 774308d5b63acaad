from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
from sqlmodel import Session, select

from pixelrelay.db import Database
from pixelrelay.errors import ApiError, E
from pixelrelay.v1 import common_pb2
from pixelrelay_billing.ledger import HoldRequest, Ledger, hash_key
from pixelrelay_billing.models import ApiKey, HoldState
from pixelrelay_billing.prices import PriceList

BASIC_1K = common_pb2.PriceItem(model="gpt-image-2", resolution="1k", n=1)


def stable(quality: str, n: int = 1, resolution: str = "1k") -> common_pb2.PriceItem:
    return common_pb2.PriceItem(
        model="gpt-image-2-official", resolution=resolution, quality=quality, n=n
    )


@pytest.fixture
def ledger(database: Database) -> Ledger:
    return Ledger(database.engine, PriceList.load(), signup_grant=2000)


def assert_sound(ledger: Ledger) -> None:
    assert ledger.check().problems == []


def test_signup_grant_is_a_balanced_movement(ledger: Ledger) -> None:
    account = ledger.create_account(name="a")
    assert (account.balance, account.held) == (2000, 0)
    assert ledger.check().entries == 2
    assert_sound(ledger)


def test_reserve_then_capture_charges_the_price(ledger: Ledger) -> None:
    account = ledger.create_account(name="a")
    hold = ledger.reserve(task_id="t1", account_id=account.id, item=BASIC_1K, expires_at=0)
    assert hold.amount == 7
    after_reserve = ledger.get_account(account_id=account.id)
    assert (after_reserve.balance, after_reserve.held) == (1993, 7)
    captured = ledger.capture(task_id="t1", delivered=1)
    assert captured.captured == 7
    final = ledger.get_account(account_id=account.id)
    assert (final.balance, final.held) == (1993, 0)
    assert_sound(ledger)


def test_capture_charges_only_delivered_images(ledger: Ledger) -> None:
    account = ledger.create_account(name="a")
    ledger.reserve(task_id="t", account_id=account.id, item=stable("low", n=4), expires_at=0)
    hold = ledger.capture(task_id="t", delivered=3)
    assert (hold.amount, hold.captured) == (24, 18)
    assert ledger.get_account(account_id=account.id).balance == 2000 - 18
    assert_sound(ledger)


def test_quality_auto_is_held_at_high_and_charged_at_reported_tier(ledger: Ledger) -> None:
    account = ledger.create_account(name="a")
    hold = ledger.reserve(task_id="t", account_id=account.id, item=stable("auto"), expires_at=0)
    assert hold.amount == 186
    captured = ledger.capture(task_id="t", delivered=1, quality="medium")
    assert (captured.captured, captured.price_id) == (47, "stable-medium")
    assert ledger.get_hold(task_id="t").price_id == "stable-medium"  # kept, not only answered
    entries, _ = ledger.entries(account_id=account.id)
    settled = sorted((e.kind, str(e.book), e.amount, e.memo) for e in entries if e.task_id)
    assert settled == [
        ("capture", "held", -47, "stable-medium"),
        ("refund", "available", 139, "stable-medium"),
        ("refund", "held", -139, "stable-medium"),
        ("reserve", "available", -186, None),
        ("reserve", "held", 186, None),
    ]
    assert_sound(ledger)


def test_a_full_charge_has_no_refund_and_nothing_delivered_no_capture(ledger: Ledger) -> None:
    account = ledger.create_account(name="a")
    ledger.reserve(task_id="full", account_id=account.id, item=BASIC_1K, expires_at=0)
    ledger.capture(task_id="full", delivered=1)
    ledger.reserve(task_id="none", account_id=account.id, item=BASIC_1K, expires_at=0)
    assert ledger.capture(task_id="none", delivered=0).price_id == "basic-1k"
    entries, _ = ledger.entries(account_id=account.id)
    assert sorted((e.task_id, e.kind, str(e.book), e.amount) for e in entries if e.task_id) == [
        ("full", "capture", "held", -7),
        ("full", "reserve", "available", -7),
        ("full", "reserve", "held", 7),
        ("none", "refund", "available", 7),
        ("none", "refund", "held", -7),
        ("none", "reserve", "available", -7),
        ("none", "reserve", "held", 7),
    ]
    assert_sound(ledger)


def test_release_returns_everything(ledger: Ledger) -> None:
    account = ledger.create_account(name="a")
    ledger.reserve(task_id="t", account_id=account.id, item=BASIC_1K, expires_at=0)
    ledger.release(task_id="t", reason="upstream_failed")
    final = ledger.get_account(account_id=account.id)
    assert (final.balance, final.held) == (2000, 0)
    entries, _ = ledger.entries(account_id=account.id)
    released = [e for e in entries if e.kind == "release"]
    assert {e.memo for e in released} == {"upstream_failed"}  # why, for the statement
    assert_sound(ledger)


def test_operations_are_idempotent_by_task(ledger: Ledger) -> None:
    account = ledger.create_account(name="a")
    first = ledger.reserve(task_id="t", account_id=account.id, item=BASIC_1K, expires_at=0)
    again = ledger.reserve(task_id="t", account_id=account.id, item=BASIC_1K, expires_at=0)
    assert again.amount == first.amount
    ledger.capture(task_id="t", delivered=1)
    assert ledger.capture(task_id="t", delivered=1).captured == 7
    assert ledger.get_account(account_id=account.id).balance == 1993
    assert_sound(ledger)


@pytest.mark.parametrize(
    ("action", "kind"),
    [
        (
            lambda led, a: led.reserve(
                task_id="t", account_id=a, item=stable("high"), expires_at=0
            ),
            E.HOLD_CONFLICT,
        ),
        (lambda led, a: led.capture(task_id="t", delivered=2), E.INVALID_AMOUNT),
        (lambda led, a: led.capture(task_id="nope", delivered=1), E.HOLD_NOT_FOUND),
        (
            lambda led, a: led.reserve(
                task_id="u", account_id="acct_missing", item=BASIC_1K, expires_at=0
            ),
            E.ACCOUNT_NOT_FOUND,
        ),
    ],
)
def test_bad_operations_write_nothing(ledger: Ledger, action, kind) -> None:
    account = ledger.create_account(name="a")
    ledger.reserve(task_id="t", account_id=account.id, item=BASIC_1K, expires_at=0)
    entries = ledger.check().entries
    with pytest.raises(ApiError) as caught:
        action(ledger, account.id)
    assert caught.value.kind is kind
    assert ledger.check().entries == entries
    assert_sound(ledger)


def test_settled_holds_cannot_flip(ledger: Ledger) -> None:
    account = ledger.create_account(name="a")
    ledger.reserve(task_id="c", account_id=account.id, item=BASIC_1K, expires_at=0)
    ledger.capture(task_id="c", delivered=1)
    with pytest.raises(ApiError) as caught:
        ledger.release(task_id="c")
    assert caught.value.kind is E.HOLD_CONFLICT
    ledger.reserve(task_id="r", account_id=account.id, item=BASIC_1K, expires_at=0)
    ledger.release(task_id="r")
    with pytest.raises(ApiError) as caught:
        ledger.capture(task_id="r", delivered=1)
    assert caught.value.kind is E.HOLD_CONFLICT
    assert_sound(ledger)


def test_insufficient_credits_is_402_and_writes_nothing(ledger: Ledger) -> None:
    account = ledger.create_account(name="poor", grant=6)
    with pytest.raises(ApiError) as caught:
        ledger.reserve(task_id="t", account_id=account.id, item=BASIC_1K, expires_at=0)
    assert caught.value.kind is E.INSUFFICIENT_CREDITS
    # the price and the balance, as the gateway's own check before a fetch says them
    assert caught.value.message == "this request costs 7 credits; the balance is 6"
    assert ledger.get_account(account_id=account.id).balance == 6
    assert_sound(ledger)


def test_concurrent_reserves_never_overspend(ledger: Ledger) -> None:
    k, n = 5, 40
    account = ledger.create_account(name="a", grant=7 * k)

    def attempt(i: int) -> bool:
        try:
            ledger.reserve(task_id=f"t{i}", account_id=account.id, item=BASIC_1K, expires_at=0)
            return True
        except ApiError as err:
            assert err.kind is E.INSUFFICIENT_CREDITS
            return False

    with ThreadPoolExecutor(max_workers=8) as pool:
        accepted = sum(pool.map(attempt, range(n)))
    assert accepted == k
    final = ledger.get_account(account_id=account.id)
    assert (final.balance, final.held) == (0, 7 * k)
    assert_sound(ledger)


def test_keys_are_stored_only_as_hashes(ledger: Ledger) -> None:
    account = ledger.create_account(name="a")
    new = ledger.create_api_key(account_id=account.id, name="ci")
    assert new.secret.startswith("pr_live_") and len(new.secret) == 40
    assert ledger.authenticate(api_key=new.secret).account_id == account.id
    with Session(ledger.engine) as s:
        stored = s.exec(select(ApiKey)).one()
    assert stored.key_hash == hash_key(new.secret)
    assert new.secret not in {str(v) for v in stored.model_dump().values()}


@pytest.mark.parametrize("key", ["", "pr_live_nope", "sk-other", "pr_live_" + "A" * 32])
def test_unknown_keys_are_refused(ledger: Ledger, key: str) -> None:
    with pytest.raises(ApiError) as caught:
        ledger.authenticate(api_key=key)
    assert caught.value.kind is E.INVALID_API_KEY


def test_top_ups_and_adjustments_are_recorded_with_their_reason(ledger: Ledger) -> None:
    account = ledger.create_account(name="a", grant=10)
    assert ledger.top_up(account_id=account.id, amount=500, reason="invoice 42").balance == 510
    assert ledger.adjust(account_id=account.id, amount=-10, reason="goodwill undo").balance == 500
    memos = [e.memo for e in ledger.entries(account_id=account.id)[0] if e.memo]
    assert memos == ["goodwill undo", "invoice 42"]
    assert_sound(ledger)


@pytest.mark.parametrize(
    ("call", "kind"),
    [
        (lambda led, a: led.top_up(account_id=a, amount=0, reason="x"), E.INVALID_AMOUNT),
        (lambda led, a: led.top_up(account_id=a, amount=-5, reason="x"), E.INVALID_AMOUNT),
        (lambda led, a: led.top_up(account_id=a, amount=10**12, reason="x"), E.INVALID_AMOUNT),
        (lambda led, a: led.top_up(account_id=a, amount=5, reason=" "), E.MISSING_PARAMETER),
        (lambda led, a: led.adjust(account_id=a, amount=-11, reason="x"), E.INVALID_AMOUNT),
        (
            lambda led, a: led.top_up(account_id="acct_nope", amount=5, reason="x"),
            E.ACCOUNT_NOT_FOUND,
        ),
    ],
)
def test_bad_movements_write_nothing(ledger: Ledger, call, kind) -> None:
    account = ledger.create_account(name="a", grant=10)
    entries = ledger.check().entries
    with pytest.raises(ApiError) as caught:
        call(ledger, account.id)
    assert caught.value.kind is kind
    assert ledger.check().entries == entries
    assert ledger.get_account(account_id=account.id).balance == 10


def test_a_key_credit_limit_caps_what_it_can_hold_and_spend(ledger: Ledger) -> None:
    account = ledger.create_account(name="a")
    key = ledger.create_api_key(account_id=account.id, credit_limit=20).key
    for task in ("t1", "t2"):
        ledger.reserve(
            task_id=task, account_id=account.id, item=BASIC_1K, expires_at=0, key_id=key.id
        )
    with pytest.raises(ApiError) as caught:
        ledger.reserve(
            task_id="t3", account_id=account.id, item=BASIC_1K, expires_at=0, key_id=key.id
        )
    assert caught.value.kind is E.KEY_CREDIT_LIMIT
    assert ledger.get_account(account_id=account.id).balance == 2000 - 14
    ledger.release(task_id="t2")  # released credits count no more
    ledger.reserve(task_id="t3", account_id=account.id, item=BASIC_1K, expires_at=0, key_id=key.id)
    ledger.capture(task_id="t1", delivered=1)
    assert ledger.list_api_keys(account_id=account.id)[0].spent == 14
    assert_sound(ledger)


def test_the_check_finds_a_key_whose_spend_is_not_its_holds(ledger: Ledger) -> None:
    """A key's spend is its pending holds plus what its captured holds charged (a capture
    of fewer images charges less than was held; a release charges nothing)."""
    account = ledger.create_account(name="a")
    key = ledger.create_api_key(account_id=account.id).key
    for task, item in (("t1", stable("low", n=4)), ("t2", BASIC_1K), ("t3", BASIC_1K)):
        ledger.reserve(task_id=task, account_id=account.id, item=item, expires_at=0, key_id=key.id)
    ledger.capture(task_id="t1", delivered=3)  # held 24, charged 18
    ledger.release(task_id="t3")
    assert ledger.list_api_keys(account_id=account.id)[0].spent == 18 + 7
    assert_sound(ledger)
    with Session(ledger.engine) as s, s.begin():
        stored = s.get(ApiKey, key.id)
        assert stored is not None
        stored.spent += 1
    assert ledger.check().problems == [f"key {key.id}: spent 26, holds give 25"]


def test_a_batch_of_holds_gives_each_task_its_own_outcome(ledger: Ledger) -> None:
    rich = ledger.create_account(name="rich")
    poor = ledger.create_account(name="poor", grant=10)
    capped = ledger.create_api_key(account_id=rich.id, credit_limit=10).key
    results = ledger.reserve_many(
        [
            HoldRequest("ok-1", rich.id, BASIC_1K, 0),
            HoldRequest("poor-1", poor.id, BASIC_1K, 0),
            HoldRequest("poor-2", poor.id, BASIC_1K, 0),  # 7 + 7 > 10
            HoldRequest("cap-1", rich.id, BASIC_1K, 0, capped.id),
            HoldRequest("cap-2", rich.id, BASIC_1K, 0, capped.id),  # over the key's 10
            HoldRequest("ok-1", rich.id, BASIC_1K, 0),  # the same task again: same hold
            HoldRequest("ghost", "acct_missing", BASIC_1K, 0),
            HoldRequest("ok-2", rich.id, common_pb2.PriceItem(model="nope", n=1), 0),
        ]
    )
    outcomes = [r.kind if isinstance(r, ApiError) else r.amount for r in results]
    assert outcomes == [
        7,
        7,
        E.INSUFFICIENT_CREDITS,
        7,
        E.KEY_CREDIT_LIMIT,
        7,
        E.ACCOUNT_NOT_FOUND,
        E.INVALID_PARAMETER,
    ]
    assert results[0] is results[5]
    # Failed items left nothing behind: only the three holds moved credits.
    assert ledger.get_account(account_id=rich.id).balance == 2000 - 14
    assert ledger.get_account(account_id=poor.id).balance == 3
    assert ledger.list_api_keys(account_id=rich.id)[0].spent == 7
    assert ledger.check().entries == 2 * 2 + 3 * 2  # two signup grants, three holds
    assert_sound(ledger)


def test_revoked_and_expired_keys_stop_working(ledger: Ledger) -> None:
    account = ledger.create_account(name="a")
    revoked = ledger.create_api_key(account_id=account.id)
    ledger.revoke_api_key(key_id=revoked.key.id, account_id=account.id)
    ledger.revoke_api_key(key_id=revoked.key.id)  # idempotent
    expiring = ledger.create_api_key(
        account_id=account.id, expires_at=datetime.now(UTC) + timedelta(seconds=1)
    )
    assert ledger.authenticate(api_key=expiring.secret).id == expiring.key.id
    for key in (revoked, expiring):
        if key is expiring:
            time.sleep(1.1)
        with pytest.raises(ApiError) as caught:
            ledger.authenticate(api_key=key.secret)
        assert caught.value.kind is E.INVALID_API_KEY


def test_keys_are_listed_by_prefix_and_last4_and_scoped_to_their_account(ledger: Ledger) -> None:
    mine = ledger.create_account(name="mine")
    other = ledger.create_account(name="other")
    new = ledger.create_api_key(account_id=mine.id, name="ci", rate_limit=60)
    [listed] = ledger.list_api_keys(account_id=mine.id)
    assert (listed.prefix, listed.last4, listed.rate_limit) == (
        new.secret[:12],
        new.secret[-4:],
        60,
    )
    with pytest.raises(ApiError) as caught:
        ledger.revoke_api_key(key_id=new.key.id, account_id=other.id)
    assert caught.value.kind is E.KEY_NOT_FOUND


def test_usage_pages_newest_first_and_filters_by_date(ledger: Ledger) -> None:
    account = ledger.create_account(name="a")
    for i in range(3):
        ledger.reserve(task_id=f"t{i}", account_id=account.id, item=BASIC_1K, expires_at=0)
    entries, end = ledger.entries(account_id=account.id)
    assert [e.task_id for e in entries[:2]] == ["t2", "t2"] and end == ""
    first, cursor = ledger.entries(account_id=account.id, limit=2)
    assert first == entries[:2] and cursor == str(entries[1].id)
    rest, end = ledger.entries(account_id=account.id, limit=100, cursor=cursor)
    assert rest[0].task_id == "t1" and first + rest == entries and end == ""
    future = datetime.now(UTC) + timedelta(hours=1)
    assert ledger.entries(account_id=account.id, since=future) == ([], "")
    assert len(ledger.entries(account_id=account.id, until=future)[0]) == len(entries)
    for forged in ("³", "-1", "9" * 19, "abc"):
        with pytest.raises(ApiError) as caught:
            ledger.entries(account_id=account.id, cursor=forged)
        assert caught.value.param == "cursor"


def test_extensions_move_only_pending_holds_and_only_later(ledger: Ledger) -> None:
    """The sweeper gives queued tasks' holds the task's deadline, in one transaction. Only
    a pending hold's deadline moves, and only later; an unknown task is ignored."""
    account = ledger.create_account(name="a")
    for task_id in ("queued", "released", "later", "new"):
        ledger.reserve(task_id=task_id, account_id=account.id, item=BASIC_1K, expires_at=100)
    ledger.release(task_id="released")
    ledger.extend_holds([("later", 10_000)])
    ledger.extend_holds(
        [("queued", 5_000), ("released", 5_000), ("later", 5_000), ("unknown", 5_000)]
    )

    def overdue(now: int) -> list[str]:
        return [task_id for task_id, _made in ledger.expired_holds(now=now)]

    assert overdue(4_999) == ["new"]
    assert overdue(5_001) == ["new", "queued"]
    assert overdue(10_001) == ["new", "queued", "later"]
    assert ledger.get_hold(task_id="released").state == HoldState.RELEASED
    made = dict(ledger.expired_holds(now=5_001))["queued"]
    assert abs(made - time.time()) < 60  # when it was made, in unix seconds
    assert_sound(ledger)


def test_capture_and_release_racing_on_one_hold_settle_it_once(ledger: Ledger) -> None:
    """The gateway's capture (images arrived) against a release (the sweeper, a failed
    event) on the same hold, from threads: exactly one wins each time, the other gets
    HOLD_CONFLICT, and the books balance."""
    account = ledger.create_account(name="a")
    outcomes = []
    for i in range(40):
        task_id = f"race{i}"
        ledger.reserve(task_id=task_id, account_id=account.id, item=BASIC_1K, expires_at=0)

        def capture(task_id: str = task_id) -> str:
            try:
                ledger.capture(task_id=task_id, delivered=1)
            except ApiError as err:
                assert err.kind is E.HOLD_CONFLICT
                return "lost"
            return "captured"

        def release(task_id: str = task_id) -> str:
            try:
                ledger.release(task_id=task_id, reason="expired")
            except ApiError as err:
                assert err.kind is E.HOLD_CONFLICT
                return "lost"
            return "released"

        with ThreadPoolExecutor(max_workers=2) as pool:
            results = sorted(f.result() for f in [pool.submit(capture), pool.submit(release)])
        assert results in (["captured", "lost"], ["lost", "released"]), results
        state = ledger.get_hold(task_id=task_id).state
        assert state == (HoldState.CAPTURED if "captured" in results else HoldState.RELEASED)
        outcomes.append(state)
    charged = 7 * outcomes.count(HoldState.CAPTURED)
    final = ledger.get_account(account_id=account.id)
    assert (final.balance, final.held) == (2000 - charged, 0)
    assert_sound(ledger)
