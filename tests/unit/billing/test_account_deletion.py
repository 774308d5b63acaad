"""Billing's part of deleting an account, on SQLite and PostgreSQL: keys revoked, pending
holds released, nothing new taken in, the ledger kept and balanced; idempotent."""

from __future__ import annotations

import pytest

from pixelrelay.db import Database
from pixelrelay.errors import ApiError, E
from pixelrelay.v1 import common_pb2
from pixelrelay_billing.ledger import Ledger
from pixelrelay_billing.models import HoldState
from pixelrelay_billing.prices import PriceList

BASIC_1K = common_pb2.PriceItem(model="gpt-image-2", resolution="1k", n=1)


@pytest.fixture
def ledger(database: Database) -> Ledger:
    return Ledger(database.engine, PriceList.load(), signup_grant=100)


def refused(kind: object, call: object, *args: object, **kwargs: object) -> None:
    with pytest.raises(ApiError) as caught:
        call(*args, **kwargs)  # type: ignore[operator]
    assert caught.value.kind is kind


def test_deletion_revokes_releases_refuses_and_keeps_the_books(ledger: Ledger) -> None:
    account = ledger.create_account(name="leaving")
    other = ledger.create_account(name="staying")
    key = ledger.create_api_key(account_id=account.id)
    child = ledger.create_api_key(account_id=account.id, parent_key_id=key.key.id, scopes=["read"])
    ledger.reserve(task_id="t_done", account_id=account.id, item=BASIC_1K, expires_at=0)
    ledger.capture(task_id="t_done", delivered=1)
    ledger.reserve(
        task_id="t_pending", account_id=account.id, item=BASIC_1K, expires_at=0, key_id=key.key.id
    )
    ledger.reserve(task_id="t_other", account_id=other.id, item=BASIC_1K, expires_at=0)
    entries_before = ledger.check().entries

    refused(E.MISSING_PARAMETER, ledger.delete_account, account_id=account.id, reason=" ")
    deleted = ledger.delete_account(account_id=account.id, reason="asked to")
    assert (deleted.keys_revoked, deleted.released_task_ids) == (2, ["t_pending"])
    assert (deleted.account.balance, deleted.account.held) == (93, 0)  # 100 - 7 charged
    assert deleted.account.deleted_at is not None and deleted.account.deleted_reason == "asked to"
    assert ledger.get_hold(task_id="t_pending").state == HoldState.RELEASED
    assert ledger.get_hold(task_id="t_other").state == HoldState.PENDING  # not its account
    assert ledger.check().entries == entries_before + 2  # the release, nothing removed
    assert ledger.check().problems == []

    for secret in (key.secret, child.secret):
        refused(E.INVALID_API_KEY, ledger.authenticate, api_key=secret)
    refused(
        E.ACCOUNT_DELETED,
        ledger.reserve,
        task_id="t_new",
        account_id=account.id,
        item=BASIC_1K,
        expires_at=0,
    )
    refused(E.ACCOUNT_DELETED, ledger.create_api_key, account_id=account.id)
    refused(E.ACCOUNT_DELETED, ledger.top_up, account_id=account.id, amount=5, reason="x")
    # The operator can still square the balance (a refund paid outside the platform).
    assert ledger.adjust(account_id=account.id, amount=-93, reason="refunded").balance == 0

    again = ledger.delete_account(account_id=account.id, reason="twice")
    assert (again.keys_revoked, again.released_task_ids) == (0, [])
    assert again.account.deleted_reason == "asked to"  # the first deletion's
    refused(E.ACCOUNT_NOT_FOUND, ledger.delete_account, account_id="acct_none", reason="x")
    assert ledger.check().problems == []
