"""An operator's provided secret (provisioning scripts, the dev launcher's kept key): asked
for again with the same settings it is the same key, never a UNIQUE error; with other
settings or for another account it is refused, and nothing is made."""

from __future__ import annotations

import pytest
from sqlmodel import Session, func, select

from pixelrelay.db import Database
from pixelrelay.errors import ApiError, E
from pixelrelay_billing.ledger import Ledger
from pixelrelay_billing.models import ApiKey
from pixelrelay_billing.prices import PriceList

SECRET = "pr_live_" + "A1" * 16


@pytest.fixture
def ledger(database: Database) -> Ledger:
    return Ledger(database.engine, PriceList.load(), signup_grant=100)


def _keys(ledger: Ledger) -> int:
    with Session(ledger.engine) as s:
        return s.exec(select(func.count()).select_from(ApiKey)).one()


def test_the_same_provided_key_twice_is_one_key(ledger: Ledger) -> None:
    account = ledger.create_account(name="dev")
    first = ledger.create_api_key(account_id=account.id, name="dev", secret=SECRET)
    again = ledger.create_api_key(account_id=account.id, name="dev", secret=SECRET)
    assert again.key.id == first.key.id and again.secret == SECRET
    assert ledger.authenticate(api_key=SECRET).account_id == account.id
    assert _keys(ledger) == 1


@pytest.mark.parametrize(
    "change",
    [
        {"name": "other"},
        {"credit_limit": 5},
        {"rate_limit": 5},
        {"scopes": ["read"]},
        {"account": "another"},
        {"revoked": True},
    ],
)
def test_the_same_secret_with_other_settings_is_refused(
    ledger: Ledger, change: dict[str, object]
) -> None:
    change = dict(change)  # shared by both databases' runs
    account = ledger.create_account(name="dev")
    first = ledger.create_api_key(account_id=account.id, name="dev", secret=SECRET)
    if change.pop("revoked", False):
        ledger.revoke_api_key(key_id=first.key.id)
    owner = ledger.create_account(name="x").id if change.pop("account", None) else account.id
    with pytest.raises(ApiError) as caught:
        ledger.create_api_key(
            account_id=owner,
            **{"name": "dev", **change},  # type: ignore[arg-type]
            secret=SECRET,
        )
    assert caught.value.kind == E.INVALID_PARAMETER and caught.value.param == "secret"
    assert _keys(ledger) == 1
