"""Invite codes for SIGNUP_MODE=invite: issued by the operator, shown once, stored
hashed, each good for one sign-up (used in the sign-up's own transaction)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from pixelrelay.errors import ApiError, E
from pixelrelay.ids import new_id, random_token
from pixelrelay_billing.ledger.keys import aware, hash_key
from pixelrelay_billing.models import Invite, utcnow

CODE_PREFIX = "pr_inv_"


def use_invite(s: Session, code: str, account_id: str) -> None:
    invite = s.exec(
        select(Invite).where(Invite.code_hash == hash_key(code.strip())).with_for_update()
    ).first()
    if (
        not code
        or invite is None
        or invite.used_at is not None
        or invite.revoked_at is not None
        or (invite.expires_at is not None and aware(invite.expires_at) <= utcnow())
    ):
        raise ApiError(E.INVALID_INVITE, param="invite_code")
    invite.used_at, invite.used_by = utcnow(), account_id


class Invites:
    engine: Engine

    def create_invite(
        self, *, note: str = "", expires_at: datetime | None = None
    ) -> tuple[Invite, str]:
        if expires_at is not None and expires_at <= utcnow():
            raise ApiError(E.INVALID_PARAMETER, "expires_at is in the past", param="expires_at")
        code = CODE_PREFIX + random_token(24)
        with Session(self.engine, expire_on_commit=False) as s, s.begin():
            invite = Invite(
                id=new_id("inv"),
                code_hash=hash_key(code.strip()),
                note=note[:200],
                expires_at=expires_at,
            )
            s.add(invite)
        return invite, code

    def list_invites(self) -> list[Invite]:
        with Session(self.engine, expire_on_commit=False) as s:
            return list(s.exec(select(Invite).order_by(col(Invite.created_at).desc()).limit(500)))

    def revoke_invite(self, *, invite_id: str) -> Invite:
        with Session(self.engine, expire_on_commit=False) as s, s.begin():
            invite = s.get(Invite, invite_id)
            if invite is None:
                raise ApiError(E.NOT_FOUND, "no such invite", param="invite_id")
            if invite.revoked_at is None and invite.used_at is None:
                invite.revoked_at = utcnow()
            return invite
