"""The gateway's sign-up policy (core/sessions.py): a closed sign-up refuses before
anything reaches billing, sign-ups per address are counted, the CSRF token is bound to
its session."""

from __future__ import annotations

from typing import Any, cast

import pytest

from pixelrelay.billing_client import BillingClient
from pixelrelay.errors import ApiError, E
from pixelrelay.v1 import public_api_pb2
from pixelrelay_gateway.core.authcache import AuthCache
from pixelrelay_gateway.core.sessions import (
    Sessions,
    SignUpMode,
    SignUpsPerAddress,
    csrf_matches,
    csrf_token,
)


class NoBilling:
    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"billing was called: {name}")


def sessions(mode: SignUpMode, limit: int = 5) -> Sessions:
    return Sessions(
        billing=cast(BillingClient, NoBilling()),
        auth=cast(AuthCache, NoBilling()),  # a key's lookup asks billing
        mode=mode,
        links=None,
        signups=SignUpsPerAddress(limit),
    )


async def test_a_closed_sign_up_is_refused_before_billing_is_asked() -> None:
    with pytest.raises(ApiError) as caught:
        await sessions(SignUpMode.CLOSED).sign_up(
            public_api_pb2.SignUpRequest(email="a@example.com", password="x" * 12), "192.0.2.1"
        )
    assert caught.value.kind is E.SIGNUP_CLOSED
    options = sessions(SignUpMode.CLOSED).options()
    assert (options.signup_mode, options.email_verification) == ("closed", False)


def test_sign_ups_per_address_are_limited_and_counted_apart() -> None:
    limit = SignUpsPerAddress(2)
    limit.take("192.0.2.1")
    limit.take("192.0.2.1")
    with pytest.raises(ApiError) as caught:
        limit.take("192.0.2.1")
    assert caught.value.kind is E.AUTH_THROTTLED and caught.value.retry_after
    limit.take("192.0.2.2")  # another address has its own count


def test_the_csrf_token_belongs_to_its_session() -> None:
    token = csrf_token("pr_sess_one")
    assert csrf_matches("pr_sess_one", token)
    assert not csrf_matches("pr_sess_two", token)
    assert not csrf_matches("pr_sess_one", token[:-1] + ("A" if token[-1] != "A" else "B"))
    assert "pr_sess_one" not in token
