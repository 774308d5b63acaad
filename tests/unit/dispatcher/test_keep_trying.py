"""A finished generation is stored with retries before its job is given up: a storage blip
must not make a redelivery pay the upstream again."""

from __future__ import annotations

from pixelrelay.errors import ApiError, E
from pixelrelay_dispatcher.worker import keep_trying


class Store:
    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0

    async def __call__(self) -> None:
        self.calls += 1
        if self.calls <= self.failures:
            raise ApiError(E.UNAVAILABLE)


async def test_a_blip_is_ridden_out() -> None:
    store = Store(failures=2)
    assert await keep_trying("task_1", store, delays=(0.0, 0.0, 0.0)) is None
    assert store.calls == 3


async def test_a_lasting_failure_is_returned_after_every_try() -> None:
    store = Store(failures=10)
    failure = await keep_trying("task_1", store, delays=(0.0, 0.0))
    assert failure is not None and failure.kind is E.UNAVAILABLE
    assert store.calls == 3


async def test_a_refusal_is_not_tried_again() -> None:
    """Not this task's capability, or results already stored: no retry changes that."""
    for kind in (E.TASK_CAPABILITY_INVALID, E.RESULTS_ALREADY_STORED):
        calls = 0

        async def refused() -> None:
            nonlocal calls
            calls += 1
            raise ApiError(kind)  # noqa: B023 (called within this iteration)

        failure = await keep_trying("task_1", refused, delays=(60.0,))
        assert failure is not None and failure.kind is kind and calls == 1
