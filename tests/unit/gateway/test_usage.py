"""A task's usage line (core/usage.py): what came back of its hold, by how it settled."""

from __future__ import annotations

import pytest

from pixelrelay.v1 import common_pb2, public_api_pb2
from pixelrelay_gateway.core.usage import task_usage


@pytest.mark.parametrize(
    ("status", "charged", "refunded"),
    [("completed", 94, 278), ("completed", 372, 0), ("failed", 0, 372), ("processing", 0, 0)],
)
def test_refunded_is_what_the_hold_gave_back(status: str, charged: int, refunded: int) -> None:
    """Once billing settled the task; before, nothing came back yet (below)."""
    task = public_api_pb2.Task(
        id="task_x",
        model="gpt-image-2-official",
        status=status,
        created_at=1_700_000_000,
        spec=common_pb2.ImageSpec(size="1:1", resolution="1k", n=2, quality="auto"),
        credits_reserved=372,
        credits_charged=charged,
        credits_settled=status != "processing",
        price_id="stable-medium",
    )
    line = task_usage(task)
    assert (line.reserved, line.charged, line.refunded, line.status) == (
        372,
        charged,
        refunded,
        status,
    )
    assert (line.model, line.size, line.resolution, line.n, line.quality) == (
        "gpt-image-2-official",
        "1:1",
        "1k",
        2,
        "auto",
    )


def test_nothing_is_refunded_before_billing_settles() -> None:
    task = public_api_pb2.Task(id="t", status="completed", credits_reserved=372)
    assert task_usage(task).refunded == 0
