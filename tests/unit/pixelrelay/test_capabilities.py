"""A task capability: issued by the gateway, verified by billing and storage, for one task."""

from __future__ import annotations

import pytest

from pixelrelay.capabilities import TaskCapabilities, TaskGrant, new_capability_key
from pixelrelay.errors import ApiError, E
from pixelrelay.v1 import common_pb2

GRANT = TaskGrant("task_victim", "acct_owner", 7, 2_000_000_000)


def refused(capabilities: TaskCapabilities, capability: common_pb2.TaskCapability) -> bool:
    with pytest.raises(ApiError) as caught:
        capabilities.verify(capability, GRANT.task_id)
    return caught.value.kind is E.TASK_CAPABILITY_INVALID


def test_a_capability_verifies_for_its_task_only() -> None:
    capabilities = TaskCapabilities.parse(new_capability_key())
    capability = capabilities.issue(GRANT)
    assert capabilities.verify(capability, "task_victim") == GRANT
    with pytest.raises(ApiError) as caught:
        capabilities.verify(capability, "task_other")
    assert caught.value.kind is E.TASK_CAPABILITY_INVALID


@pytest.mark.parametrize(
    "change",
    [
        {"task_id": "task_other"},
        {"account_id": "acct_thief"},
        {"credits": 8},
        {"deadline": 32_503_680_000},  # the year 3000
        {"key_id": "nokey"},
        {"mac": b""},
        {"mac": b"\0" * 32},
    ],
)
def test_any_change_to_a_capability_is_refused(change: dict[str, object]) -> None:
    capabilities = TaskCapabilities.parse(new_capability_key())
    capability = capabilities.issue(GRANT)
    for field, value in change.items():
        setattr(capability, field, value)
    # verify() is asked for the task the capability names, as storage and billing do
    with pytest.raises(ApiError) as caught:
        capabilities.verify(capability, capability.task_id)
    assert caught.value.kind is E.TASK_CAPABILITY_INVALID


def test_no_capability_and_another_keys_capability_are_refused() -> None:
    ours = TaskCapabilities.parse(new_capability_key())
    theirs = TaskCapabilities.parse(new_capability_key())
    assert refused(ours, common_pb2.TaskCapability())
    forged = theirs.issue(GRANT)
    forged.key_id = ours.current  # claims our key, was made with another
    assert refused(ours, forged)


def test_rotation_issues_with_the_first_key_and_verifies_with_any() -> None:
    old, new = new_capability_key(), new_capability_key()
    before = TaskCapabilities.parse(old).issue(GRANT)
    during = TaskCapabilities.parse(f"{new},{old}")
    assert during.issue(GRANT).key_id == new.split(":")[0]
    assert during.verify(before, GRANT.task_id) == GRANT
    assert refused(TaskCapabilities.parse(new), before)


def test_capabilities_are_issued_for_well_formed_ids_only() -> None:
    capabilities = TaskCapabilities.parse(new_capability_key())
    with pytest.raises(ValueError):
        capabilities.issue(TaskGrant("task_a\nacct_b", "acct_c", 1, 1))


@pytest.mark.parametrize("spec", ["", "k1", "k1:not-base64!", ":" + "A" * 44])
def test_bad_capability_keys_stop_the_start(spec: str) -> None:
    with pytest.raises(ValueError, match="TASK_CAPABILITY_KEYS"):
        TaskCapabilities.parse(spec)
