"""Billing rows as their protobuf messages and back (times: unix seconds, 0 = none)."""

from __future__ import annotations

from datetime import UTC, datetime

from pixelrelay.limits import unix_seconds
from pixelrelay.v1 import billing_pb2
from pixelrelay_billing.models import ApiKey


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
    return datetime.fromtimestamp(seconds, UTC) if unix_seconds(seconds, param) else None
