from __future__ import annotations

import pytest

from pixelrelay.errors import ApiError, E
from pixelrelay.ids import checked_id, content_id, is_id, new_id
from pixelrelay.objects import input_task, is_input_key, upload_in_path, upload_key


def test_new_ids_are_random_and_well_formed() -> None:
    ids = {new_id("task") for _ in range(1000)}
    assert len(ids) == 1000
    assert all(i.startswith("task_") and len(i) == 27 and i[5:].isalnum() for i in ids)


def test_content_ids_depend_on_owner_and_content_only() -> None:
    a = content_id("upl", "acct_a", b"image bytes")
    assert a == content_id("upl", "acct_a", b"image bytes")
    assert a != content_id("upl", "acct_b", b"image bytes")
    assert a != content_id("upl", "acct_a", b"image bytes!")
    # No ambiguity where the owner ends and the content starts.
    assert content_id("upl", "acct_a", b"b") != content_id("upl", "acct_", b"ab")
    assert a.startswith("upl_") and len(a) == 26 and a[4:].isalnum()


def test_a_content_id_makes_a_valid_upload_key() -> None:
    upload_id = content_id("upl", "acct_x", b"png")
    key = upload_key("acct_x", upload_id, "png")
    assert upload_in_path(f"/bucket/{key}") == (key, "acct_x")
    assert is_input_key(key)


@pytest.mark.parametrize(
    "value",
    ["", "task_", "task_a/../task_b", "../task_a", "task_a\n", "task_a|x", "acct_a", "task_a b"],
)
def test_only_well_formed_ids_pass(value: str) -> None:
    with pytest.raises(ApiError) as caught:
        checked_id(value, "task", "task_id")
    assert caught.value.param == "task_id"
    assert caught.value.kind in (E.MISSING_PARAMETER, E.INVALID_PARAMETER)


def test_a_new_id_passes_and_names_its_prefix() -> None:
    task_id = new_id("task")
    assert checked_id(task_id, "task", "task_id") == task_id
    assert is_id(task_id, "task") and not is_id(task_id, "acct")


def test_keys_are_matched_whole() -> None:
    key = "tasks/task_a/inputs/ref0.png"
    assert input_task(key) == "task_a" and input_task("uploads/acct_a/upl_b.png") is None
    assert not is_input_key(key + "\n") and input_task(key + "\n") is None
    assert not is_input_key("tasks/task_a/../task_b/inputs/ref0.png")
