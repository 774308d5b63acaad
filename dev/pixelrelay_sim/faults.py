"""Fault injection: rules set over HTTP (PUT /_sim/faults) that the next requests obey."""

from __future__ import annotations

import threading
from typing import Literal

from pydantic import BaseModel, Field

FaultKind = Literal["status", "drop", "hang", "latency", "bad_base64", "wrong_size", "truncated"]


class FaultRule(BaseModel):
    kind: FaultKind
    # Applies only to requests whose prompt contains this text ("" = every request).
    match: str = ""
    # Applies only to requests to this provider's paths ("openai": /v1/..., "azure":
    # /openai/deployments/...), and to this Azure deployment; None = any.
    provider: Literal["openai", "azure"] | None = None
    deployment: str | None = None
    # How many requests it applies to; None = until cleared.
    times: int | None = Field(default=None, ge=1)
    status: int = 500
    code: str | None = None
    type: str = "server_error"
    message: str = "The server had an error while processing your request."
    retry_after: float | None = None
    seconds: float = 0.0  # for hang (default one hour) and latency


class FaultBook:
    def __init__(self) -> None:
        self._rules: list[FaultRule] = []
        self._lock = threading.Lock()

    def set(self, rules: list[FaultRule]) -> None:
        with self._lock:
            self._rules = list(rules)

    def rules(self) -> list[FaultRule]:
        with self._lock:
            return list(self._rules)

    def take(
        self, prompt: str, provider: str = "openai", deployment: str | None = None
    ) -> FaultRule | None:
        """The first rule matching this request, counting one use of it."""
        with self._lock:
            for rule in self._rules:
                if (
                    rule.match in prompt
                    and rule.provider in (None, provider)
                    and rule.deployment in (None, deployment)
                ):
                    if rule.times is not None:
                        rule.times -= 1
                        if rule.times == 0:
                            self._rules.remove(rule)
                    return rule
        return None
