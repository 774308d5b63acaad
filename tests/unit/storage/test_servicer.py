"""What storage accepts from a StoreImages stream, and which keys a client may name."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator

import pytest

from pixelrelay import objects
from pixelrelay.errors import ApiError, E
from pixelrelay.v1 import storage_pb2
from pixelrelay_storage.servicer import check_input_key, receive_images

PNG = b"\x89PNG\r\n\x1a\n" + b"x" * 3000


def meta(index: int, data: bytes, fmt: str = "png") -> storage_pb2.ImageMeta:
    return storage_pb2.ImageMeta(
        index=index,
        format=fmt,
        width=1,
        height=1,
        bytes=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
    )


def header(*metas: storage_pb2.ImageMeta) -> storage_pb2.StoreImagesRequest:
    return storage_pb2.StoreImagesRequest(
        header=storage_pb2.StoreHeader(task_id="task_1", images=metas)
    )


def chunk(index: int, data: bytes) -> storage_pb2.StoreImagesRequest:
    return storage_pb2.StoreImagesRequest(chunk=storage_pb2.ImageChunk(index=index, data=data))


async def stream(
    *parts: storage_pb2.StoreImagesRequest,
) -> AsyncIterator[storage_pb2.StoreImagesRequest]:
    for part in parts:
        yield part


async def test_images_arrive_whole_in_chunks_of_any_size() -> None:
    second = PNG[::-1]
    received, buffers = await receive_images(
        stream(
            header(meta(0, PNG), meta(1, second)),
            chunk(1, second[:100]),
            chunk(0, PNG[:1000]),
            chunk(0, PNG[1000:]),
            chunk(1, second[100:]),
        )
    )
    assert received.task_id == "task_1"
    assert (bytes(buffers[0]), bytes(buffers[1])) == (PNG, second)


@pytest.mark.parametrize(
    ("parts", "says"),
    [
        ((), "no header"),
        ((chunk(0, PNG),), "chunk before header"),
        ((header(meta(0, PNG)), header(meta(0, PNG))), "second header"),
        ((header(meta(0, PNG)), chunk(3, PNG)), "unknown image 3"),
        ((header(meta(0, PNG)), chunk(0, PNG[:-1])), "arrived incomplete"),
        ((header(meta(0, PNG)), chunk(0, PNG[:-1] + b"!")), "arrived incomplete"),
        ((header(meta(0, PNG), meta(0, PNG)),), "duplicate image index"),
        ((header(meta(0, PNG, fmt="gif")),), "unsupported format"),
        ((header(),), "no images"),
    ],
)
async def test_a_broken_stream_is_refused_and_names_why(
    parts: tuple[storage_pb2.StoreImagesRequest, ...], says: str
) -> None:
    with pytest.raises(ApiError) as refused:
        await receive_images(stream(*parts))
    assert says in refused.value.message
    assert refused.value.kind in (E.INVALID_PARAMETER, E.MISSING_PARAMETER)


async def test_large_images_are_checked_the_same_way() -> None:
    """Past 64 KiB the hash runs in a thread; what passes and what is refused is the same."""
    big = PNG * 100  # ~300 KB
    _, buffers = await receive_images(stream(header(meta(0, big)), chunk(0, big)))
    assert bytes(buffers[0]) == big
    with pytest.raises(ApiError) as refused:
        await receive_images(stream(header(meta(0, big)), chunk(0, big[:-1] + b"!")))
    assert "image 0 arrived incomplete" in refused.value.message


def test_only_input_keys_may_be_named() -> None:
    check_input_key(objects.upload_key("acct_1", "upl_1", "png"))
    check_input_key(objects.input_key("task_1", "ref0", "webp"))
    for key in (objects.result_key("task_1", 0, "png"), "tasks/task_1/manifest.pb", "x"):
        with pytest.raises(ApiError) as refused:
            check_input_key(key)
        assert refused.value.param == "key"
