"""Deleting an account (an operator's act, with a reason): its keys stop working, its
pending holds are released, and it takes no new holds, keys or top-ups. Nothing is
removed from the ledger: the account keeps its entries and its balance, so the books
still balance and can be audited."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import delete, update
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from pixelrelay.errors import ApiError, E
from pixelrelay_billing import statements as sql
from pixelrelay_billing.ledger.holds import release_pending
from pixelrelay_billing.models import Account, ApiKey, Hold, Login, LoginToken, utcnow

MAX_DELETION_REASON = 500
DELETED_NAME = "deleted account"


@dataclass(frozen=True)
class DeletedAccount:
    account: Account
    keys_revoked: int
    released_task_ids: list[str]
    released_credits: list[int]  # each released hold's, in the same order


class Deletion:
    engine: Engine

    def delete_account(self, *, account_id: str, reason: str) -> DeletedAccount:
        """One transaction; repeating it changes nothing more (a deletion interrupted after
        this step is finished by running it again)."""
        if not reason.strip():
            raise ApiError(E.MISSING_PARAMETER, "a reason is required", param="reason")
        with Session(self.engine, expire_on_commit=False) as s, s.begin():
            account = s.exec(
                select(Account).where(Account.id == account_id).with_for_update()
            ).first()
            if account is None:
                raise ApiError(E.ACCOUNT_NOT_FOUND)
            now = utcnow()
            revoked = s.execute(
                update(ApiKey)
                .where(col(ApiKey.account_id) == account_id, col(ApiKey.revoked_at).is_(None))
                .values(revoked_at=now)
            ).rowcount  # type: ignore[attr-defined]
            # its sessions went with the keys; the person's email and password go too, and
            # the email where it named the account (a self-service sign-up's name)
            login = s.exec(select(Login).where(Login.account_id == account_id)).first()
            if login is not None and account.name == login.email:
                account.name = DELETED_NAME
            s.execute(delete(LoginToken).where(col(LoginToken.account_id) == account_id))
            s.execute(delete(Login).where(col(Login.account_id) == account_id))
            # The account row is locked first, as a reserve does: a submit racing this waits,
            # then finds the account deleted. Holds as plain rows: released in Core.
            conn = s.connection()
            pending = [
                Hold(**row)
                for row in conn.execute(
                    sql.PENDING_HOLDS_OF_ACCOUNT, {"a_id": account_id}
                ).mappings()
            ]
            for hold in pending:
                release_pending(conn, hold, "account_deleted")
            if account.deleted_at is None:
                account.deleted_at = now
                account.deleted_reason = reason.strip()[:MAX_DELETION_REASON]
            s.flush()
            s.refresh(account)
            s.expunge(account)
            return DeletedAccount(
                account, int(revoked), [h.task_id for h in pending], [h.amount for h in pending]
            )
