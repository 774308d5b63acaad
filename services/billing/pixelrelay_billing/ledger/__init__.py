"""The ledger's rules. Every method is one database transaction and idempotent.

Balances live on ``Account`` (fast conditional updates); every change also appends
balanced ``LedgerEntry`` rows (postings.py), from which ``check`` recomputes and verifies
them. One module per job: accounts, keys, holds, audit, deletion, logins (people's sign-in),
invites; ``Ledger`` is all of them over
one engine.
"""

from __future__ import annotations

from sqlalchemy.engine import Engine

from pixelrelay.db import DirectSql
from pixelrelay_billing.ledger.accounts import Accounts
from pixelrelay_billing.ledger.audit import Audit, CheckResult
from pixelrelay_billing.ledger.deletion import DeletedAccount, Deletion
from pixelrelay_billing.ledger.holds import HoldRequest, Holds, Settle
from pixelrelay_billing.ledger.invites import Invites
from pixelrelay_billing.ledger.keys import Keys, NewKey, hash_key, key_by_hash
from pixelrelay_billing.ledger.logins import Logins
from pixelrelay_billing.prices import PriceList

__all__ = [
    "CheckResult",
    "DeletedAccount",
    "HoldRequest",
    "Ledger",
    "NewKey",
    "Settle",
    "hash_key",
]


class Ledger(Accounts, Keys, Holds, Audit, Deletion, Logins, Invites):
    def __init__(self, engine: Engine, prices: PriceList, signup_grant: int):
        self.engine = engine
        self.direct = DirectSql(engine)
        self.prices = prices
        self.signup_grant = signup_grant
        self._key_by_hash = key_by_hash(engine)
