"""Bounds of the numbers clients and operators send, in one place: billing enforces them
for every channel (REST, gRPC, the admin CLI); the REST schemas show them in the spec."""

from __future__ import annotations

from pixelrelay.errors import ApiError, E

# Timestamps travel as int64 seconds; the year 9999 is far enough (and what datetime holds).
MAX_UNIX_SECONDS = 253_402_300_799
# Credits moved at once (grant, top-up, adjustment, a key's credit limit): $1M is a typo.
MAX_CREDITS = 1_000_000_000
# A key's rate limit, in requests per minute.
MAX_RATE_LIMIT = 1_000_000


def page_limit(requested: int, *, default: int, maximum: int) -> int:
    """A list call's ``limit``: 0 means the default; beyond 1..maximum is 422."""
    limit = requested or default
    if not 1 <= limit <= maximum:
        raise ApiError(E.INVALID_PARAMETER, f"limit must be 1-{maximum}", param="limit")
    return limit


def unix_seconds(value: int, param: str) -> int:
    """A period bound in unix seconds (0 = unbounded); out of range is the caller's error."""
    if not 0 <= value <= MAX_UNIX_SECONDS:
        raise ApiError(E.INVALID_PARAMETER, f"{param} must be 0..{MAX_UNIX_SECONDS}", param=param)
    return value


# A new password's least length (billing checks it; the sign-up page says it).
MIN_PASSWORD_LENGTH = 10
