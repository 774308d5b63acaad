"""Queued tasks' holds get the task deadline late, in batches, and only if still needed."""

from __future__ import annotations

import pytest

from gateway.core.hold_extensions import HoldExtensions


class Billing:
    def __init__(self) -> None:
        self.extended: list[list[str]] = []
        self.down = False

    async def extend(self, task_ids: list[str]) -> None:
        if self.down:
            raise ConnectionError("billing is away")
        self.extended.append(task_ids)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def setup() -> tuple[HoldExtensions, Billing, Clock, set[str]]:
    billing, clock, settled = Billing(), Clock(), set[str]()

    async def unsettled(task_ids: list[str]) -> list[str]:
        return [t for t in task_ids if t not in settled]

    return HoldExtensions(billing.extend, unsettled, 30, clock=clock), billing, clock, settled


async def test_a_task_settled_before_its_turn_costs_billing_nothing(
    setup: tuple[HoldExtensions, Billing, Clock, set[str]],
) -> None:
    extensions, billing, clock, settled = setup
    assert (extensions.after, extensions.check_every) == (10, 5)
    for task_id in ("fast", "slow", "also-slow"):
        extensions.add(task_id)
    clock.now += 9.9
    await extensions.extend_due()
    assert billing.extended == [] and len(extensions) == 3  # not due yet
    settled.add("fast")
    clock.now += 0.1
    extensions.add("later")
    await extensions.extend_due()
    assert billing.extended == [["slow", "also-slow"]]  # one call for the batch
    assert len(extensions) == 1


async def test_a_failed_extension_is_tried_again_until_the_submit_deadline(
    setup: tuple[HoldExtensions, Billing, Clock, set[str]],
) -> None:
    extensions, billing, clock, _ = setup
    extensions.add("a")
    clock.now += 15
    extensions.add("b")
    billing.down = True
    clock.now += 10  # both due; a is 25 s old, b 10 s
    await extensions.extend_due()
    assert len(extensions) == 2
    clock.now += 6  # a's submit deadline (30 s) has passed: its hold is gone
    await extensions.extend_due()
    assert len(extensions) == 1
    billing.down = False
    await extensions.extend_due()
    assert billing.extended == [["b"]] and len(extensions) == 0


async def test_at_shutdown_every_waiting_task_gets_its_deadline(
    setup: tuple[HoldExtensions, Billing, Clock, set[str]],
) -> None:
    extensions, billing, _, settled = setup
    for task_id in ("a", "b", "c"):
        extensions.add(task_id)
    settled.add("b")
    await extensions.flush()
    assert billing.extended == [["a", "c"]] and len(extensions) == 0
