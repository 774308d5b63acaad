"""The object-key layout: what one service writes, the others parse back."""

from __future__ import annotations

import pytest

from pixelrelay import image_formats, objects


@pytest.mark.parametrize("fmt", image_formats.FORMATS)
def test_an_upload_key_is_found_again_in_its_url(fmt: str) -> None:
    key = objects.upload_key("acct_abc", "upl_123", fmt)
    assert image_formats.of_file_name(key) == fmt
    url_path = f"/pixelrelay-images/{key}"  # a bucket in the path, as S3 serves it
    assert objects.upload_in_path(url_path) == (key, "acct_abc")
    assert objects.is_input_key(key)


def test_task_inputs_may_be_read_back_and_nothing_else() -> None:
    assert objects.is_input_key(objects.input_key("task_1", "ref0", "jpeg"))
    assert objects.is_input_key(objects.input_key("task_1", "mask", "png"))
    for key in (
        objects.result_key("task_1", 0, "png"),
        "tasks/task_1/manifest.pb",
        "uploads/acct_a/../acct_b/upl_1.png",
        "uploads/acct_a/upl_1.gif",
        "tasks/task_1/inputs/../0.png",
    ):
        assert not objects.is_input_key(key), key


def test_chunks_rejoin_to_the_object() -> None:
    data = bytes(range(256)) * (objects.CHUNK_BYTES // 100)
    parts = objects.chunks(data)
    assert b"".join(parts) == data and max(map(len, parts)) == objects.CHUNK_BYTES
    assert objects.chunks(b"") == []
