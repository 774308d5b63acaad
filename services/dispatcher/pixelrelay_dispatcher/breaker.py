"""A circuit breaker per channel.

    closed ──(3 failures in a row, or ≥50% of ≥10 calls in 30 s failed)──► open
    open ──(cooldown passed: one probe allowed)──► half-open
    half-open ──probe succeeds──► closed        half-open ──probe fails──► open

While open the router skips the channel without trying it (no added latency). A 429 with
Retry-After, or our own key refused, holds it open for that long.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from enum import IntEnum


class State(IntEnum):  # the values are the metric's
    CLOSED = 0
    HALF_OPEN = 1
    OPEN = 2


class CircuitBreaker:
    def __init__(
        self,
        *,
        consecutive_failures: int = 3,
        failure_rate: float = 0.5,
        min_calls: int = 10,
        window: float = 30.0,
        cooldown: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.consecutive_failures = consecutive_failures
        self.failure_rate = failure_rate
        self.min_calls = min_calls
        self.window = window
        self.cooldown = cooldown
        self._clock = clock
        self._state = State.CLOSED
        self._open_until = 0.0
        self._failures_in_a_row = 0
        self._recent: deque[tuple[float, bool]] = deque()
        self._probing = False

    @property
    def state(self) -> State:
        if self._state is State.OPEN and self._clock() >= self._open_until:
            return State.HALF_OPEN
        return self._state

    def allow(self) -> bool:
        """Whether to try the channel now (in half-open, only one probe at a time)."""
        state = self.state
        if state is State.CLOSED:
            return True
        if state is State.HALF_OPEN and not self._probing:
            self._state, self._probing = State.HALF_OPEN, True
            return True
        return False

    def reopens_in(self) -> float:
        return max(0.0, self._open_until - self._clock())

    def record_success(self) -> None:
        self._remember(True)
        self._failures_in_a_row = 0
        self._state, self._probing = State.CLOSED, False

    def record_failure(self) -> None:
        self._remember(False)
        self._failures_in_a_row += 1
        if self._state is State.HALF_OPEN or self._tripped():
            self._open(self.cooldown)

    def hold_open(self, seconds: float) -> None:
        """Skip this channel for ``seconds`` (Retry-After, or a refused key)."""
        self._open(max(seconds, self.reopens_in()))

    def _open(self, seconds: float) -> None:
        self._state, self._probing = State.OPEN, False
        self._open_until = self._clock() + seconds

    def _remember(self, ok: bool) -> None:
        now = self._clock()
        self._recent.append((now, ok))
        while self._recent and self._recent[0][0] < now - self.window:
            self._recent.popleft()

    def _tripped(self) -> bool:
        if self._failures_in_a_row >= self.consecutive_failures:
            return True
        calls = len(self._recent)
        failed = sum(1 for _, ok in self._recent if not ok)
        return calls >= self.min_calls and failed / calls >= self.failure_rate
