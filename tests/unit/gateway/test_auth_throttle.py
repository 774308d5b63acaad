from __future__ import annotations

import pydantic
import pytest

from pixelrelay.errors import ApiError
from pixelrelay_gateway.core import auth_throttle
from pixelrelay_gateway.core.auth_throttle import AuthThrottle, parse_networks
from pixelrelay_gateway.settings import GatewaySettings


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_an_address_is_blocked_at_the_limit_until_its_window_ends() -> None:
    clock = Clock()
    throttle = AuthThrottle(3, window=60, clock=clock)
    for _ in range(2):
        throttle.failed("198.51.100.1")
    throttle.check("198.51.100.1")  # two failures: still allowed
    clock.now += 10
    throttle.failed("198.51.100.1")
    with pytest.raises(ApiError) as refused:
        throttle.check("198.51.100.1")
    assert refused.value.kind.code == 50002 and refused.value.retry_after == 50
    throttle.check("198.51.100.2")  # others are not affected
    clock.now += 50
    throttle.check("198.51.100.1")  # the window has ended
    assert not throttle.blocked


def test_failures_in_an_old_window_do_not_add_up() -> None:
    clock = Clock()
    throttle = AuthThrottle(3, window=60, clock=clock)
    for _ in range(2):
        throttle.failed("198.51.100.1")
        clock.now += 40
    throttle.failed("198.51.100.1")  # the second window's first failure
    throttle.check("198.51.100.1")


def test_a_zero_limit_never_blocks() -> None:
    throttle = AuthThrottle(0)
    for _ in range(100):
        throttle.failed("198.51.100.1")
    throttle.check("198.51.100.1")


def test_forwarded_for_is_believed_only_from_a_trusted_proxy() -> None:
    throttle = AuthThrottle(3, trusted_proxies=parse_networks("10.0.0.0/8, 127.0.0.1"))
    # untrusted peer: a spoofed header changes nothing
    assert throttle.client("198.51.100.1", "203.0.113.5") == "198.51.100.1"
    # trusted peer: the nearest untrusted hop, not a client-chosen first entry
    assert throttle.client("10.1.2.3", "203.0.113.5") == "203.0.113.5"
    assert throttle.client("10.1.2.3", "1.1.1.1, 203.0.113.5, 10.9.9.9") == "203.0.113.5"
    assert throttle.client("10.1.2.3", None) == "10.1.2.3"
    assert AuthThrottle(3).client("127.0.0.1", "203.0.113.5") == "127.0.0.1"


def test_memory_is_bounded_under_a_flood_of_addresses(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(auth_throttle, "MAX_TRACKED", 50)
    throttle = AuthThrottle(1)
    for i in range(500):
        throttle.failed(f"2001:db8::{i:x}")
    assert len(throttle._windows) <= 50 and len(throttle.blocked) <= 50
    with pytest.raises(ApiError):
        throttle.check("2001:db8::1f3")  # the newest are still blocked


def test_a_bad_trusted_proxies_setting_fails_the_start() -> None:
    with pytest.raises(pydantic.ValidationError, match="trusted_proxies"):
        GatewaySettings(trusted_proxies="10.0.0.0/33")


def test_a_vouched_credential_passes_a_blocked_address() -> None:
    """Guesses are throttled, not the valid keys that share the guesser's address."""
    throttle = AuthThrottle(1, vouched=lambda credential: credential == "Bearer good")
    throttle.failed("198.51.100.1")
    throttle.check("198.51.100.1", "Bearer good")
    for other in ("Bearer guess", ""):
        with pytest.raises(ApiError):
            throttle.check("198.51.100.1", other)
