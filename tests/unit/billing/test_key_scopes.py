"""Keys made by keys: never more than their maker (scopes, expiry, rate and credit limits),
never able to revoke a wider key or their maker, and revocable with everything they made."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from pixelrelay import scopes
from pixelrelay.db import Database
from pixelrelay.errors import ApiError, E, ErrorKind
from pixelrelay.v1 import common_pb2
from pixelrelay_billing.ledger import Ledger
from pixelrelay_billing.prices import PriceList

BASIC_1K = common_pb2.PriceItem(model="gpt-image-2", resolution="1k", n=1)  # 7 credits
# Far enough ahead to outlive the suite: it is computed once, when the tests are collected.
SOON = datetime.now(UTC) + timedelta(days=1)


@pytest.fixture
def ledger(database: Database) -> Ledger:
    return Ledger(database.engine, PriceList.load(), signup_grant=2000)


def refused(call: object, **kwargs: object) -> ApiError:
    with pytest.raises(ApiError) as caught:
        call(**kwargs)  # type: ignore[operator]
    return caught.value


def kind_and_param(err: ApiError) -> tuple[ErrorKind, str | None]:
    return err.kind, err.param


def test_operator_keys_have_every_scope_or_the_ones_asked(ledger: Ledger) -> None:
    account = ledger.create_account(name="a")
    assert ledger.create_api_key(account_id=account.id).key.scopes.split() == list(scopes.ALL)
    read = ledger.create_api_key(account_id=account.id, scopes=["read"])
    assert read.key.scopes == "read"
    bad = refused(ledger.create_api_key, account_id=account.id, scopes=["admin"])
    assert kind_and_param(bad) == (E.INVALID_PARAMETER, "scopes")


def test_a_limited_key_cannot_make_an_unlimited_one(ledger: Ledger) -> None:
    """The escalation a security sweep found: limits 10 credits, 5/min, 10 minutes."""
    account = ledger.create_account(name="a")
    parent = ledger.create_api_key(
        account_id=account.id, credit_limit=10, rate_limit=5, expires_at=SOON
    ).key
    make = ledger.create_api_key
    # No limit asked: refused (400, the parameter is missing), not silently the whole budget.
    err = refused(make, account_id=account.id, parent_key_id=parent.id)
    assert kind_and_param(err) == (E.INVALID_PARAMETER, "credit_limit")
    cases: list[tuple[dict[str, Any], str]] = [
        ({"credit_limit": 11}, "credit_limit"),
        ({"credit_limit": 5, "rate_limit": 6}, "rate_limit"),
        ({"credit_limit": 5, "expires_at": SOON + timedelta(seconds=1)}, "expires_at"),
    ]
    for extra, param in cases:
        err = refused(make, account_id=account.id, parent_key_id=parent.id, **extra)
        assert kind_and_param(err) == (E.INSUFFICIENT_SCOPE, param), extra
    child = make(account_id=account.id, parent_key_id=parent.id, credit_limit=6).key
    assert (child.rate_limit, child.parent_id, child.scopes) == (5, parent.id, parent.scopes)
    assert child.expires_at is not None
    assert abs(child.expires_at.replace(tzinfo=UTC) - SOON) < timedelta(seconds=1)
    # 6 of the 10 are the child's now: a second child gets at most 4.
    err = refused(make, account_id=account.id, parent_key_id=parent.id, credit_limit=5)
    assert kind_and_param(err) == (E.INSUFFICIENT_SCOPE, "credit_limit")
    make(account_id=account.id, parent_key_id=parent.id, credit_limit=4)
    assert ledger.check().problems == []


def test_the_credits_of_a_key_and_its_children_stay_within_its_limit(ledger: Ledger) -> None:
    account = ledger.create_account(name="a")
    parent = ledger.create_api_key(account_id=account.id, credit_limit=14).key
    child = ledger.create_api_key(account_id=account.id, parent_key_id=parent.id, credit_limit=7)
    ledger.reserve(
        task_id="c1", account_id=account.id, item=BASIC_1K, expires_at=0, key_id=child.key.id
    )
    ledger.reserve(
        task_id="p1", account_id=account.id, item=BASIC_1K, expires_at=0, key_id=parent.id
    )
    for task, key in (("c2", child.key.id), ("p2", parent.id)):
        err = refused(
            ledger.reserve,
            task_id=task,
            account_id=account.id,
            item=BASIC_1K,
            expires_at=0,
            key_id=key,
        )
        assert err.kind is E.KEY_CREDIT_LIMIT
    assert ledger.get_account(account_id=account.id).held == 14  # 7 + 7, never more
    assert ledger.check().problems == []


def test_a_key_grants_only_scopes_it_has_and_needs_keys_manage(ledger: Ledger) -> None:
    account = ledger.create_account(name="a")
    reader = ledger.create_api_key(account_id=account.id, scopes=["read", "keys:manage"]).key
    err = refused(
        ledger.create_api_key, account_id=account.id, parent_key_id=reader.id, scopes=["generate"]
    )
    assert kind_and_param(err) == (E.INSUFFICIENT_SCOPE, "scopes")
    child = ledger.create_api_key(account_id=account.id, parent_key_id=reader.id, scopes=["read"])
    assert child.key.scopes == "read"
    err = refused(ledger.create_api_key, account_id=account.id, parent_key_id=child.key.id)
    assert err.kind is E.INSUFFICIENT_SCOPE  # no keys:manage, no keys
    other = ledger.create_account(name="b")
    err = refused(ledger.create_api_key, account_id=other.id, parent_key_id=reader.id)
    assert err.kind is E.INVALID_API_KEY  # someone else's key makes nothing here


def test_revocation_respects_scope_and_lineage_and_can_cascade(ledger: Ledger) -> None:
    account = ledger.create_account(name="a")
    root = ledger.create_api_key(account_id=account.id).key
    child = ledger.create_api_key(account_id=account.id, parent_key_id=root.id).key
    grandchild = ledger.create_api_key(account_id=account.id, parent_key_id=child.id).key
    narrow = ledger.create_api_key(
        account_id=account.id, parent_key_id=root.id, scopes=["read", "keys:manage"]
    ).key
    limited = ledger.create_api_key(account_id=account.id, credit_limit=10).key
    revoke = ledger.revoke_api_key
    for target, by in (
        (root.id, child.id),  # its maker
        (root.id, grandchild.id),
        (child.id, narrow.id),  # wider scopes
        (root.id, limited.id),  # an unlimited key, by a limited one
    ):
        err = refused(revoke, key_id=target, account_id=account.id, by_key_id=by)
        assert err.kind is E.INSUFFICIENT_SCOPE, (target, by)
    revoke(key_id=child.id, account_id=account.id, by_key_id=root.id, cascade=True)
    keys = {k.id: k for k in ledger.list_api_keys(account_id=account.id)}
    assert keys[child.id].revoked_at is not None and keys[grandchild.id].revoked_at is not None
    assert keys[narrow.id].revoked_at is None and keys[root.id].revoked_at is None


def test_revoking_without_cascade_leaves_the_children(ledger: Ledger) -> None:
    account = ledger.create_account(name="a")
    root = ledger.create_api_key(account_id=account.id).key
    child = ledger.create_api_key(account_id=account.id, parent_key_id=root.id)
    ledger.revoke_api_key(key_id=root.id)
    assert ledger.authenticate(api_key=child.secret).id == child.key.id
