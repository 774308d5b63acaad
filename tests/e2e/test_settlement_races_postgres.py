"""The settlement races of test_billing and test_dispatch, with billing and the task store
on PostgreSQL: its row locks and isolation, not SQLite's single writer, decide them."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import Platform
from tests.e2e.test_billing import (
    gateway_dies_after_recording_the_settlement,
    hold_expires_while_its_job_runs,
)
from tests.e2e.test_dispatch import dispatcher_killed_after_storing

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]


async def test_a_hold_that_expires_while_its_job_runs_on_postgres(
    postgres_expiring_platform: Platform,
) -> None:
    await hold_expires_while_its_job_runs(postgres_expiring_platform)


async def test_gateway_dies_after_recording_the_settlement_on_postgres(
    postgres_dispatch_platform: Platform,
) -> None:
    await gateway_dies_after_recording_the_settlement(postgres_dispatch_platform)


async def test_a_dispatcher_killed_after_storing_on_postgres(
    postgres_dispatch_platform: Platform,
) -> None:
    await dispatcher_killed_after_storing(postgres_dispatch_platform)
