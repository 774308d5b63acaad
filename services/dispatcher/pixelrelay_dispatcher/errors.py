"""Upstream failures, by what the router should do next.

UpstreamError                         (an attempt's outcome, as tasks and metrics show it)
├── RetryableError     the upstream did not take the work (refused, 429, 5xx): next channel
│   │                                 upstream_unavailable
│   ├── ChannelAuthError   our key was refused (401/403): next channel, this one is broken
│   │                                 upstream_auth_failed
│   └── ChannelNotFoundError   no such deployment, model or path here (404): next channel,
│                              this one is misconfigured      upstream_not_found
├── AmbiguousError     the request was sent, the answer never came (timeout, cut): next channel
│                                     upstream_no_answer
├── BadOutputError     an answer that is not the images asked for: next channel
│                                     upstream_bad_output
└── PermanentError     the request itself is refused (400, moderation): fail, no failover
                                      upstream_rejected
"""

from __future__ import annotations

from pixelrelay.errors import E, ErrorKind


class UpstreamError(Exception):
    kind: ErrorKind = E.UPSTREAM_FAILED
    failover = True
    # The attempt's outcome for people and dashboards: a public name, never a class name.
    outcome = "upstream_unavailable"

    def __init__(self, message: str, *, retry_after: float | None = None):
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after


class RetryableError(UpstreamError):
    pass


class ChannelAuthError(RetryableError):
    outcome = "upstream_auth_failed"


class ChannelNotFoundError(RetryableError):
    """The channel names what its upstream does not have: an Azure deployment that does not
    exist (or not yet), a wrong endpoint or api-version. The request is not at fault."""

    outcome = "upstream_not_found"


class AmbiguousError(UpstreamError):
    outcome = "upstream_no_answer"


class BadOutputError(UpstreamError):
    kind = E.UPSTREAM_BAD_OUTPUT
    outcome = E.UPSTREAM_BAD_OUTPUT.type


class PermanentError(UpstreamError):
    kind = E.UPSTREAM_REJECTED
    failover = False
    outcome = E.UPSTREAM_REJECTED.type
