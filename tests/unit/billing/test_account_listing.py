"""Operators list accounts (Ledger.list_accounts, behind Billing.ListAccounts): newest
first, a search by part of the name or the whole id, and cursor pages that neither skip
nor repeat an account, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from pixelrelay.db import Database
from pixelrelay.errors import ApiError, E
from pixelrelay_billing.ledger import Ledger
from pixelrelay_billing.prices import PriceList


@pytest.fixture
def ledger(database: Database) -> Ledger:
    return Ledger(database.engine, PriceList.load(), signup_grant=100)


def test_pages_go_newest_first_without_gaps_or_repeats(ledger: Ledger) -> None:
    made = [ledger.create_account(name=f"acme {i}").id for i in range(7)]
    seen: list[str] = []
    cursor = ""
    while True:
        page, cursor = ledger.list_accounts(limit=3, cursor=cursor)
        assert len(page) <= 3
        seen += [a.id for a in page]
        if not cursor:
            break
    assert seen == made[::-1]


def test_a_page_ending_at_the_last_account_has_no_cursor(ledger: Ledger) -> None:
    for i in range(2):
        ledger.create_account(name=f"n{i}")
    page, cursor = ledger.list_accounts(limit=2)
    assert len(page) == 2 and cursor == ""


def test_search_matches_part_of_the_name_in_any_case_or_the_whole_id(ledger: Ledger) -> None:
    acme = ledger.create_account(name="ACME Corp")
    other = ledger.create_account(name="Globex")
    ledger.create_account(name="100% real_name")
    assert [a.id for a in ledger.list_accounts(search="acme")[0]] == [acme.id]
    assert [a.id for a in ledger.list_accounts(search=other.id)[0]] == [other.id]
    assert ledger.list_accounts(search=other.id[:10])[0] == []  # an id matches whole only
    # LIKE's wildcards are the characters themselves
    assert [a.name for a in ledger.list_accounts(search="0% r")[0]] == ["100% real_name"]
    assert ledger.list_accounts(search="_")[0][0].name == "100% real_name"
    assert len(ledger.list_accounts(search="_")[0]) == 1


def test_each_account_carries_balance_held_creation_and_deletion(ledger: Ledger) -> None:
    gone = ledger.create_account(name="gone", grant=5)
    ledger.delete_account(account_id=gone.id, reason="asked to")
    kept = ledger.create_account(name="kept")
    listed = {a.id: a for a in ledger.list_accounts()[0]}
    assert (listed[kept.id].balance, listed[kept.id].held) == (100, 0)
    assert listed[kept.id].created_at is not None and listed[kept.id].deleted_at is None
    assert listed[gone.id].deleted_at is not None and listed[gone.id].balance == 5


def test_a_malformed_cursor_is_the_callers_error(ledger: Ledger) -> None:
    with pytest.raises(ApiError) as caught:
        ledger.list_accounts(cursor="../etc")
    assert caught.value.kind == E.INVALID_PARAMETER and caught.value.param == "cursor"
