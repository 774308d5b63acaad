"""Upstream failures, by what the router should do next.

UpstreamError
├── RetryableError     the upstream did not take the work (refused, 429, 5xx): next channel
│   └── ChannelAuthError   our key was refused (401/403): next channel, this one is broken
├── AmbiguousError     the request was sent, the answer never came (timeout, cut): next channel
├── BadOutputError     an answer that is not the images asked for: next channel
└── PermanentError     the request itself is refused (400, moderation): fail, no failover
"""

from __future__ import annotations

from pixelrelay.errors import E, ErrorKind


class UpstreamError(Exception):
    kind: ErrorKind = E.UPSTREAM_FAILED
    failover = True

    def __init__(self, message: str, *, retry_after: float | None = None):
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after


class RetryableError(UpstreamError):
    pass


class ChannelAuthError(RetryableError):
    pass


class AmbiguousError(UpstreamError):
    pass


class BadOutputError(UpstreamError):
    kind = E.UPSTREAM_BAD_OUTPUT


class PermanentError(UpstreamError):
    kind = E.UPSTREAM_REJECTED
    failover = False
