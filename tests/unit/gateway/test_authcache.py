"""Who a key belongs to, remembered for the TTL only; failures never remembered."""

from __future__ import annotations

import pytest

from pixelrelay.errors import ApiError, E
from pixelrelay.v1 import billing_pb2
from pixelrelay_gateway.core.authcache import AuthCache

KEY = "pr_live_" + "a" * 32


class Billing:
    def __init__(self) -> None:
        self.calls = 0
        self.valid = True

    async def authenticate(self, api_key: str) -> billing_pb2.Principal:
        self.calls += 1
        if not self.valid:
            raise ApiError(E.INVALID_API_KEY)
        return billing_pb2.Principal(account_id="acct_1", key_id="key_1")


async def test_a_key_is_looked_up_once_per_ttl() -> None:
    now = [1000.0]
    billing = Billing()
    cache = AuthCache(billing.authenticate, ttl=0.5, clock=lambda: now[0])
    assert (await cache.principal(KEY)).account_id == "acct_1"
    await cache.principal(KEY)
    assert billing.calls == 1
    now[0] += 0.5  # the TTL has passed: a revocation is seen from here on
    billing.valid = False
    with pytest.raises(ApiError):
        await cache.principal(KEY)
    with pytest.raises(ApiError):
        await cache.principal(KEY)  # a failure is asked again, never cached
    assert billing.calls == 3


async def test_the_key_itself_is_not_kept() -> None:
    cache = AuthCache(Billing().authenticate)
    await cache.principal(KEY)
    assert all(KEY.encode() not in digest for digest in cache._entries)


class Outage(Billing):
    def __init__(self) -> None:
        super().__init__()
        self.down = False

    async def authenticate(self, api_key: str) -> billing_pb2.Principal:
        if self.down:
            raise ApiError(E.UNAVAILABLE)
        return await super().authenticate(api_key)


async def test_reads_go_on_through_a_billing_outage_for_a_while() -> None:
    now = [1000.0]
    billing = Outage()
    cache = AuthCache(billing.authenticate, ttl=0.5, clock=lambda: now[0], outage_grace=600)
    await cache.principal(KEY)
    billing.down = True
    now[0] += 60
    assert (await cache.principal(KEY, in_outage=True)).key_id == "key_1"  # a poll
    with pytest.raises(ApiError) as refused:
        await cache.principal(KEY)  # anything else: 503, as before
    assert refused.value.kind is E.UNAVAILABLE
    now[0] += 600  # past the grace: verified too long ago
    with pytest.raises(ApiError):
        await cache.principal(KEY, in_outage=True)


async def test_a_key_refused_before_the_outage_gets_no_grace() -> None:
    now = [1000.0]
    billing = Outage()
    cache = AuthCache(billing.authenticate, ttl=0.5, clock=lambda: now[0])
    await cache.principal(KEY)
    now[0] += 1
    billing.valid = False  # revoked
    with pytest.raises(ApiError):
        await cache.principal(KEY)
    billing.down = True
    with pytest.raises(ApiError) as refused:
        await cache.principal(KEY, in_outage=True)
    assert refused.value.kind is E.UNAVAILABLE


async def test_it_vouches_for_keys_billing_accepted_within_the_grace_only() -> None:
    clock = [0.0]
    accepted = {"good": billing_pb2.Principal(account_id="acct_a")}

    async def lookup(key: str) -> billing_pb2.Principal:
        if key not in accepted:
            raise ApiError(E.INVALID_API_KEY)
        return accepted[key]

    cache = AuthCache(lookup, clock=lambda: clock[0], outage_grace=600)
    assert not cache.vouches_for("good")  # not seen yet
    await cache.principal("good")
    assert cache.vouches_for("good") and not cache.vouches_for("guess")
    clock[0] = 601
    assert not cache.vouches_for("good")
    del accepted["good"]  # revoked: refused at the next lookup, no longer vouched for
    clock[0] = 0
    await cache.principal("good")
    clock[0] = 1
    with pytest.raises(ApiError):
        await cache.principal("good")
    assert not cache.vouches_for("good")
