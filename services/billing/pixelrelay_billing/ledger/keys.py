"""API keys: issuing (with inherited scopes and limits), authenticating, listing and
revoking (with the rules on who may revoke whom). Only a key's hash is stored."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import bindparam
from sqlalchemy import select as select_core
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from pixelrelay import scopes as scope_rules
from pixelrelay.db import PreparedRead, quick
from pixelrelay.errors import ApiError, E
from pixelrelay.ids import new_id, random_token
from pixelrelay.limits import MAX_CREDITS, MAX_RATE_LIMIT
from pixelrelay_billing.models import Account, ApiKey, utcnow
from pixelrelay_billing.statements import KEYS

KEY_PREFIX = "pr_live_"
KEY_RANDOM_CHARS = 32  # 190 bits
KEY_PATTERN = re.compile(rf"^{KEY_PREFIX}[0-9A-Za-z]{{{KEY_RANDOM_CHARS}}}$")
SESSION_PREFIX = "pr_sess_"  # a signed-in person's session (logins.py): a kind of key
SESSION_RANDOM_CHARS = 40


def hash_key(secret: str) -> str:
    """What is stored of a secret (a key, a session, a link, an invite code) or of an email
    counted by the sign-in lock: its sha256, hex."""
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True)
class NewKey:
    key: ApiKey
    secret: str


def aware(moment: datetime) -> datetime:
    """SQLite hands datetimes back without a zone; they were stored as UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def insert_key(
    s: Session, account_id: str, name: str, kind: str = "api", expires_at: datetime | None = None
) -> NewKey:
    """A new key (or session) with every scope and no limits, added to ``s``."""
    prefix, size = (
        (SESSION_PREFIX, SESSION_RANDOM_CHARS)
        if kind == "session"
        else (KEY_PREFIX, KEY_RANDOM_CHARS)
    )
    secret = prefix + random_token(size)
    key = ApiKey(
        id=new_id("key"),
        account_id=account_id,
        name=name,
        prefix=secret[: len(prefix) + 4],
        last4=secret[-4:],
        key_hash=hash_key(secret),
        expires_at=expires_at,
        scopes=" ".join(scope_rules.ALL),
        kind=kind,
    )
    s.add(key)
    return NewKey(key=key, secret=secret)


def _same_key(key: ApiKey, wanted: ApiKey) -> bool:
    """``key`` is what an operator's repeated request for ``wanted`` (same secret) would
    have made: a provisioning script run again, the dev launcher restarted."""
    moments = [m and aware(m) for m in (key.expires_at, wanted.expires_at)]
    return (
        key.revoked_at is None
        and key.parent_id is None
        and moments[0] == moments[1]
        and (key.account_id, key.name, key.credit_limit, key.rate_limit, key.scopes)
        == (wanted.account_id, wanted.name, wanted.credit_limit, wanted.rate_limit, wanted.scopes)
    )


def _live_key(s: Session, key_id: str, account_id: str, *, lock: bool = False) -> ApiKey:
    """A usable key of ``account_id`` (the one making a request), or 10002."""
    key = s.get(ApiKey, key_id, with_for_update=lock)
    if key is None or key.account_id != account_id or key.revoked_at is not None:
        raise ApiError(E.INVALID_API_KEY)
    if key.expires_at is not None and aware(key.expires_at) <= utcnow():
        raise ApiError(E.INVALID_API_KEY, "the key has expired")
    return key


def _inherit(
    parent: ApiKey,
    scopes: tuple[str, ...],
    expires_at: datetime | None,
    credit_limit: int | None,
    rate_limit: int | None,
) -> tuple[tuple[str, ...], datetime | None, int | None]:
    """What a key made by ``parent`` may be: at most its scopes, expiry and rate limit
    (which it gets when it asks for none), and a credit limit out of what the parent has
    left. Anything more is refused, never narrowed silently."""
    have = tuple(parent.scopes.split())
    scope_rules.require(have, scope_rules.KEYS_MANAGE)

    def more(what: str, param: str) -> ApiError:
        return ApiError(E.INSUFFICIENT_SCOPE, f"{what} than the key creating it", param=param)

    if not scopes:
        scopes = have
    elif not set(scopes) <= set(have):
        raise more("more scopes", "scopes")
    if parent.expires_at is not None:
        limit = aware(parent.expires_at)
        if expires_at is None:
            expires_at = limit
        elif expires_at > limit:
            raise more("a later expiry", "expires_at")
    if parent.rate_limit is not None:
        if rate_limit is None:
            rate_limit = parent.rate_limit
        elif rate_limit > parent.rate_limit:
            raise more("a higher rate limit", "rate_limit")
    if parent.credit_limit is not None:
        left = parent.credit_limit - parent.spent - parent.delegated
        if credit_limit is None:  # a missing parameter, not a refused right
            raise ApiError(
                E.INVALID_PARAMETER,
                f"credit_limit is required: the key creating it has {left} credits left",
                param="credit_limit",
            )
        if credit_limit > left:
            raise ApiError(
                E.INSUFFICIENT_SCOPE,
                f"credit_limit above the {left} credits the key creating it has left",
                param="credit_limit",
            )
    return scopes, expires_at, rate_limit


def _outranks(by: ApiKey, key: ApiKey) -> bool:
    """``by`` can do everything ``key`` can: its scopes, and no tighter limit or expiry
    (a key's descendants always qualify)."""

    def within(mine: float | None, theirs: float | None) -> bool:
        return mine is None or (theirs is not None and theirs <= mine)

    def seconds(moment: datetime | None) -> float | None:
        return aware(moment).timestamp() if moment is not None else None

    return (
        set(key.scopes.split()) <= set(by.scopes.split())
        and within(by.credit_limit, key.credit_limit)
        and within(by.rate_limit, key.rate_limit)
        and within(seconds(by.expires_at), seconds(key.expires_at))
    )


def _ancestors(s: Session, key: ApiKey) -> set[str]:
    found: set[str] = set()
    parent_id = key.parent_id
    while parent_id and parent_id not in found:
        found.add(parent_id)
        parent = s.get(ApiKey, parent_id)
        parent_id = parent.parent_id if parent is not None else None
    return found


def _descendants(s: Session, key: ApiKey) -> list[ApiKey]:
    found: list[ApiKey] = []
    frontier = [key.id]
    while frontier:
        children = list(s.exec(select(ApiKey).where(col(ApiKey.parent_id).in_(frontier))))
        found += children
        frontier = [c.id for c in children]
    return found


def key_by_hash(engine: Engine) -> PreparedRead:
    """The authentication lookup, compiled once."""
    return PreparedRead(engine, select_core(KEYS).where(KEYS.c.key_hash == bindparam("key_hash")))


class Keys:
    engine: Engine
    _key_by_hash: PreparedRead

    @quick
    def create_api_key(
        self,
        *,
        account_id: str,
        name: str = "",
        secret: str = "",
        expires_at: datetime | None = None,
        credit_limit: int | None = None,
        rate_limit: int | None = None,
        scopes: Sequence[str] = (),
        parent_key_id: str = "",
    ) -> NewKey:
        """An operator's key (every scope unless ``scopes`` says less), or, with
        ``parent_key_id``, a key made by a key: never more than its parent can do.
        An operator's provided ``secret`` that exists already with these settings is
        answered with that key, nothing new made."""
        if secret and not KEY_PATTERN.match(secret):
            raise ApiError(
                E.INVALID_PARAMETER,
                f"a provided key must be {KEY_PREFIX} + {KEY_RANDOM_CHARS} letters/digits",
                param="secret",
            )
        # A provided secret asked for again with the same settings is the same key
        # (idempotent); with other settings, or another account's, it is refused.
        provided = bool(secret)
        secret = secret or KEY_PREFIX + random_token(KEY_RANDOM_CHARS)
        with Session(self.engine, expire_on_commit=False) as s, s.begin():
            account = s.get(Account, account_id)
            if account is None:
                raise ApiError(E.ACCOUNT_NOT_FOUND)
            if account.deleted_at is not None:
                raise ApiError(E.ACCOUNT_DELETED)
            if credit_limit is not None and not 0 < credit_limit <= MAX_CREDITS:
                raise ApiError(
                    E.INVALID_AMOUNT, f"credit_limit must be 1..{MAX_CREDITS}", param="credit_limit"
                )
            if rate_limit is not None and not 0 < rate_limit <= MAX_RATE_LIMIT:
                raise ApiError(
                    E.INVALID_PARAMETER,
                    f"rate_limit must be 1..{MAX_RATE_LIMIT} per minute",
                    param="rate_limit",
                )
            if expires_at is not None and expires_at <= utcnow():
                raise ApiError(E.INVALID_PARAMETER, "expires_at is in the past", param="expires_at")
            granted = scope_rules.parse(scopes)
            if parent_key_id and _live_key(s, parent_key_id, account_id).kind == "session":
                parent_key_id = ""  # the owner's key: it outlives the session making it
            if parent_key_id:
                parent = _live_key(s, parent_key_id, account_id, lock=True)
                granted, expires_at, rate_limit = _inherit(
                    parent, granted, expires_at, credit_limit, rate_limit
                )
                if parent.credit_limit is not None:
                    parent.delegated += credit_limit or 0
            key = ApiKey(
                id=new_id("key"),
                account_id=account_id,
                name=name[:100],
                prefix=secret[: len(KEY_PREFIX) + 4],
                last4=secret[-4:],
                key_hash=hash_key(secret),
                expires_at=expires_at,
                credit_limit=credit_limit,
                rate_limit=rate_limit,
                scopes=" ".join(granted or scope_rules.ALL),
                parent_id=parent_key_id or None,
            )
            if provided:
                existing = s.exec(select(ApiKey).where(ApiKey.key_hash == key.key_hash)).first()
                if existing is not None:
                    if parent_key_id or not _same_key(existing, key):
                        raise ApiError(
                            E.INVALID_PARAMETER,
                            "this key already exists, revoked or with other settings",
                            param="secret",
                        )
                    s.expunge(existing)
                    return NewKey(key=existing, secret=secret)
            s.add(key)
            s.flush()
            s.expunge(key)
        return NewKey(key=key, secret=secret)

    @quick
    def authenticate(self, *, api_key: str) -> ApiKey:
        if not api_key.startswith((KEY_PREFIX, SESSION_PREFIX)):
            raise ApiError(E.INVALID_API_KEY)
        # Outside any transaction: on SQLite a request authenticates even while a writer
        # (a long sweep, an operator's transaction) holds the database's write lock.
        row = self._key_by_hash.one(key_hash=hash_key(api_key))
        if row is None or row["revoked_at"] is not None:
            raise ApiError(E.INVALID_API_KEY)
        key = ApiKey(**row)
        if key.expires_at is not None and aware(key.expires_at) <= utcnow():
            raise ApiError(E.INVALID_API_KEY, "the key has expired")
        return key

    def list_api_keys(self, *, account_id: str) -> list[ApiKey]:
        with Session(self.engine, expire_on_commit=False) as s:
            if s.get(Account, account_id) is None:
                raise ApiError(E.ACCOUNT_NOT_FOUND)
            return list(
                s.exec(
                    select(ApiKey)
                    .where(ApiKey.account_id == account_id, ApiKey.kind == "api")
                    .order_by(col(ApiKey.created_at))
                )
            )

    @quick
    def revoke_api_key(
        self,
        *,
        key_id: str,
        account_id: str | None = None,
        by_key_id: str = "",
        cascade: bool = False,
    ) -> ApiKey:
        """Idempotent. With ``account_id``, only that account's key (a client's own). With
        ``by_key_id``, the key asking must be able to do all the other can (scopes, limits,
        expiry) and not descend from it. ``cascade`` revokes the keys made from it too, at any depth."""
        with Session(self.engine, expire_on_commit=False) as s, s.begin():
            key = s.get(ApiKey, key_id)
            if (
                key is None
                or key.kind != "api"  # a session ends at sign-out
                or (account_id is not None and key.account_id != account_id)
            ):
                raise ApiError(E.KEY_NOT_FOUND)
            if by_key_id and _live_key(s, by_key_id, key.account_id).kind == "session":
                by_key_id = ""  # the account's owner may revoke any of its keys
            if by_key_id:
                by = _live_key(s, by_key_id, key.account_id)
                have = by.scopes.split()
                scope_rules.require(have, scope_rules.KEYS_MANAGE)
                if not _outranks(by, key):
                    raise ApiError(
                        E.INSUFFICIENT_SCOPE,
                        "the key can do more than the revoking key (scopes or limits)",
                    )
                if key.id in _ancestors(s, by):
                    raise ApiError(
                        E.INSUFFICIENT_SCOPE, "a key cannot revoke the key it was made from"
                    )
            now = utcnow()
            for revoked in [key, *(_descendants(s, key) if cascade else [])]:
                if revoked.revoked_at is None:
                    revoked.revoked_at = now
            return key
