"""Joining a preview's chunks: whole previews only, of this task only."""

from __future__ import annotations

import asyncio

from pixelrelay.previews import PreviewReceiver, is_previews_subject
from pixelrelay.v1 import jobs_pb2


def chunk(index: int, number: int, of: int, data: bytes, task: str = "task_1") -> bytes:
    return jobs_pb2.PartialImageChunk(
        task_id=task, partial_image_index=index, format="png", chunk=number, chunks=of, data=data
    ).SerializeToString()


async def received(receiver: PreviewReceiver) -> list[tuple[int, bytes]]:
    done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    asyncio.get_running_loop().call_later(0.05, done.set_result, None)
    return [(p.partial_image_index, p.data) async for p in receiver.until(done)]


async def test_chunks_join_and_a_preview_missing_one_is_dropped() -> None:
    receiver = PreviewReceiver()
    receiver.task_id = "task_1"
    receiver.take(chunk(0, 0, 2, b"ab"))
    receiver.take(chunk(0, 1, 2, b"cd"))
    receiver.take(chunk(1, 0, 3, b"x"))
    receiver.take(chunk(1, 2, 3, b"z"))  # chunk 1 was lost: preview 1 cannot be whole
    receiver.take(chunk(1, 1, 3, b"y"))
    receiver.take(chunk(2, 0, 1, b"other", task="task_2"))  # not this request's task
    receiver.take(b"\xff not a chunk")
    receiver.take(chunk(2, 0, 1, b"last"))
    assert await received(receiver) == [(0, b"abcd"), (2, b"last")]


def test_only_a_gateway_made_subject_is_a_previews_subject() -> None:
    assert is_previews_subject(PreviewReceiver().subject)
    for subject in (
        "pixelrelay.partials.>",
        "pixelrelay.events.task.failed",
        "",
        "pixelrelay.partials.prv_x",
    ):
        assert not is_previews_subject(subject)
