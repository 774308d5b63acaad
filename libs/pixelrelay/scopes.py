"""What an API key may do. A key issued by an operator has every scope; a key created by a
key has at most its creator's. Each public operation needs one scope (pixelrelay_gateway/core/api.py)."""

from __future__ import annotations

from collections.abc import Iterable

from pixelrelay.errors import ApiError, E

GENERATE = "generate"  # submit and price generations, upload reference images
READ = "read"  # read tasks
KEYS_MANAGE = "keys:manage"  # create, list and revoke keys
BILLING_READ = "billing:read"  # balance and usage
ALL = (GENERATE, READ, KEYS_MANAGE, BILLING_READ)


def parse(scopes: Iterable[str], param: str = "scopes") -> tuple[str, ...]:
    """Known scopes, deduplicated, in a stable order; an unknown one is the caller's error."""
    wanted = set(scopes)
    unknown = wanted - set(ALL)
    if unknown:
        raise ApiError(
            E.INVALID_PARAMETER,
            f"unknown scope {sorted(unknown)[0]!r}; scopes are {', '.join(ALL)}",
            param=param,
        )
    return tuple(s for s in ALL if s in wanted)


def require(granted: Iterable[str], needed: str) -> None:
    if needed not in granted:
        raise ApiError(E.INSUFFICIENT_SCOPE, f"this API key lacks the {needed!r} scope")
