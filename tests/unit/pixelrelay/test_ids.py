from __future__ import annotations

from pixelrelay.ids import content_id, new_id
from pixelrelay.objects import is_input_key, upload_in_path, upload_key


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
