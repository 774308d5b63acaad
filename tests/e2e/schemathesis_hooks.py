"""Loaded by schemathesis (SCHEMATHESIS_HOOKS) in test_schemathesis.py.

The fuzzer calls admin operations with an API key and sends broken credentials on
purpose; from one address those 401s would trip the failed-auth throttle within a
minute, and every later case would test the throttle instead of the operation. Each call
comes from an address of its own (the gateway trusts 127.0.0.1 as a proxy in tests).
"""

from __future__ import annotations

import itertools
from typing import Any

import schemathesis

_calls = itertools.count(1)


@schemathesis.hook
def before_call(context: Any, case: Any, kwargs: dict[str, Any]) -> None:
    n = next(_calls)
    case.headers = {**(case.headers or {}), "X-Forwarded-For": f"198.19.{n // 256 % 256}.{n % 256}"}
