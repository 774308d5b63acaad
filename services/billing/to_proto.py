"""Billing rows as their protobuf messages and back (times: unix seconds, 0 = none)."""

from __future__ import annotations

from datetime import UTC, datetime

from billing.models import ApiKey
from pixelrelay.errors import ApiError, E
from pixelrelay.limits import MAX_UNIX_SECONDS
from pixelrelay.v1 import billing_pb2


def seconds(moment: datetime | None) -> int:
    if moment is None:
        return 0
    return int((moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp())


def key_to_proto(key: ApiKey) -> billing_pb2.ApiKeyInfo:
    info = billing_pb2.ApiKeyInfo(
        id=key.id,
        account_id=key.account_id,
        name=key.name,
        prefix=key.prefix,
        last4=key.last4,
        created_at=seconds(key.created_at),
        revoked_at=seconds(key.revoked_at),
        expires_at=seconds(key.expires_at),
        spent=key.spent,
        scopes=key.scopes.split(),
        parent_id=key.parent_id or "",
        delegated=key.delegated,
    )
    if key.credit_limit is not None:
        info.credit_limit = key.credit_limit
    if key.rate_limit is not None:
        info.rate_limit = key.rate_limit
    return info


def moment(seconds: int, param: str) -> datetime | None:
    """Unix seconds as a moment; 0 = none. Out of range is the caller's error, not ours."""
    if not 0 <= seconds <= MAX_UNIX_SECONDS:
        raise ApiError(E.INVALID_PARAMETER, f"{param} must be 0..{MAX_UNIX_SECONDS}", param=param)
    return datetime.fromtimestamp(seconds, UTC) if seconds else None
