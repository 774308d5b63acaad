"""Joining relayed chunks: whole images of this task only; a finished image is used only
if it is exactly what was stored."""

from __future__ import annotations

import asyncio
import hashlib

from pixelrelay.relay import RelayInbox, RelayReceiver, is_relay_subject
from pixelrelay.v1 import jobs_pb2


def chunk(
    index: int, number: int, of: int, data: bytes, *, task: str = "task_1", final: bool = False
) -> bytes:
    return jobs_pb2.RelayChunk(
        task_id=task, final=final, index=index, format="png", chunk=number, chunks=of, data=data
    ).SerializeToString()


async def previews(receiver: RelayReceiver) -> list[tuple[int, bytes]]:
    done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    asyncio.get_running_loop().call_later(0.05, done.set_result, None)
    return [(p.partial_image_index, p.data) async for p in receiver.previews(done)]


async def test_chunks_join_and_an_image_missing_one_is_dropped() -> None:
    receiver = RelayInbox().receiver()
    receiver.task_id = "task_1"
    receiver.take(chunk(0, 0, 2, b"ab"))
    receiver.take(chunk(0, 1, 2, b"cd"))
    receiver.take(chunk(1, 0, 3, b"x"))
    receiver.take(chunk(1, 2, 3, b"z"))  # chunk 1 was lost: preview 1 cannot be whole
    receiver.take(chunk(1, 1, 3, b"y"))
    receiver.take(chunk(2, 0, 1, b"other", task="task_2"))  # not this request's task
    receiver.take(b"\xff not a chunk")
    receiver.take(chunk(2, 0, 1, b"last"))
    assert await previews(receiver) == [(0, b"abcd"), (2, b"last")]


async def test_a_finished_image_is_used_only_if_it_is_what_was_stored() -> None:
    receiver = RelayInbox().receiver()
    receiver.take(chunk(0, 0, 2, b"fin", final=True))
    receiver.take(chunk(0, 1, 2, b"al", final=True))
    receiver.take(chunk(1, 0, 1, b"tampered", final=True))
    assert await receiver.final(0, hashlib.sha256(b"final").hexdigest()) == b"final"
    assert await receiver.final(1, hashlib.sha256(b"stored").hexdigest()) is None
    assert await receiver.final(2, hashlib.sha256(b"").hexdigest()) is None  # never came


def test_only_a_gateway_made_subject_is_a_relay_subject() -> None:
    inbox = RelayInbox()
    assert is_relay_subject(inbox.receiver().subject)
    for subject in (
        inbox.prefix,  # the inbox itself, no request
        f"{inbox.prefix}.*",
        "pixelrelay.relay.>",
        "pixelrelay.events.task.failed",
        "",
        "pixelrelay.relay.rly_x",
    ):
        assert not is_relay_subject(subject)


async def test_the_inbox_hands_each_message_to_its_request_alone() -> None:
    """One subscription for every request of a gateway: a message reaches the request its
    subject names, and nothing once that request has closed."""

    class Delivered:
        def __init__(self, subject: str, data: bytes):
            self.subject, self.data = subject, data

    inbox = RelayInbox()
    first, second = inbox.receiver(), inbox.receiver()
    assert first.subject != second.subject
    await inbox._on_message(Delivered(first.subject, chunk(0, 0, 1, b"one")))  # type: ignore[arg-type]
    await inbox._on_message(Delivered(second.subject, chunk(0, 0, 1, b"two")))  # type: ignore[arg-type]
    second.close()
    await inbox._on_message(Delivered(second.subject, chunk(1, 0, 1, b"late")))  # type: ignore[arg-type]
    await inbox._on_message(Delivered(f"{inbox.prefix}.unknown", b"x"))  # type: ignore[arg-type]
    assert await previews(first) == [(0, b"one")]
    assert await previews(second) == [(0, b"two")]
