"""Partial images (previews) relayed from the dispatcher to the one request waiting for
them, over core NATS: no stream, nothing stored, nothing redelivered (a lost preview is
simply not seen; the final image travels through storage as always).

The gateway subscribes to a fresh subject before it queues the job and names it in the
job (GenerationJob.partials_subject); the dispatcher publishes each preview there, split
into chunks when it is larger than the server's max_payload.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from pixelrelay.bus import PARTIALS_PREFIX
from pixelrelay.ids import new_id
from pixelrelay.v1 import jobs_pb2, public_api_pb2

log = logging.getLogger(__name__)

MAX_PARTIAL_IMAGES = 3  # OpenAI's limit
_SUBJECT = re.compile(rf"^{re.escape(PARTIALS_PREFIX)}\.prv_[0-9A-Za-z]{{22}}$")
_ENVELOPE_BYTES = 1024  # room for the chunk's other fields and the message headers


@dataclass(frozen=True)
class Previews:
    """What a job carries about previews: how many, and where they go."""

    count: int = 0
    subject: str = ""


NO_PREVIEWS = Previews()


def is_previews_subject(subject: str) -> bool:
    """Whether a job's subject is one a gateway made (the only place previews may go)."""
    return bool(_SUBJECT.match(subject))


class PreviewSender:
    """Dispatcher side: publishes at most ``limit`` previews of one task, numbered in the
    order they came, over every upstream attempt (a failover does not start again at 0)."""

    def __init__(self, nc: NATS, subject: str, task_id: str, image_format: str, limit: int):
        self.nc = nc
        self.subject = subject
        self.task_id = task_id
        self.format = image_format
        self.limit = limit
        self.sent = 0

    async def send(self, data: bytes) -> None:
        if self.sent >= self.limit:
            return
        index = self.sent
        self.sent += 1
        size = max(1, self.nc.max_payload - _ENVELOPE_BYTES)
        pieces = [data[i : i + size] for i in range(0, len(data), size)] or [b""]
        try:
            for number, piece in enumerate(pieces):
                chunk = jobs_pb2.PartialImageChunk(
                    task_id=self.task_id,
                    partial_image_index=index,
                    format=self.format,
                    chunk=number,
                    chunks=len(pieces),
                    data=piece,
                )
                await self.nc.publish(self.subject, chunk.SerializeToString())
        except Exception:  # a preview never costs the generation
            log.warning("preview not relayed", extra={"task_id": self.task_id}, exc_info=True)


class PreviewReceiver:
    """Gateway side: one request's subscription; joins chunks into whole previews."""

    def __init__(self) -> None:
        self.subject = f"{PARTIALS_PREFIX}.{new_id('prv')}"
        self.task_id = ""  # known once the task is accepted; chunks of others are dropped
        self._parts: dict[int, list[bytes]] = {}
        self._ready: asyncio.Queue[public_api_pb2.PartialImage] = asyncio.Queue()
        self._subscription: Subscription | None = None

    async def open(self, nc: NATS) -> PreviewReceiver:
        self._subscription = await nc.subscribe(self.subject, cb=self._on_message)
        return self

    async def close(self) -> None:
        if self._subscription is not None:
            await self._subscription.unsubscribe()
            self._subscription = None

    async def _on_message(self, msg: Msg) -> None:  # nats-py wants a coroutine function
        self.take(msg.data)

    def take(self, payload: bytes) -> None:
        try:
            chunk = jobs_pb2.PartialImageChunk.FromString(payload)
        except Exception:
            return
        if self.task_id and chunk.task_id != self.task_id:
            return
        parts = self._parts.setdefault(chunk.partial_image_index, [])
        if chunk.chunk != len(parts):  # one went missing: this preview cannot be whole
            self._parts.pop(chunk.partial_image_index, None)
            return
        parts.append(chunk.data)
        if len(parts) == chunk.chunks:
            del self._parts[chunk.partial_image_index]
            self._ready.put_nowait(
                public_api_pb2.PartialImage(
                    partial_image_index=chunk.partial_image_index,
                    data=b"".join(parts),
                    format=chunk.format,
                )
            )

    async def until(self, done: asyncio.Future[Any]) -> AsyncIterator[public_api_pb2.PartialImage]:
        """Each whole preview as it arrives, until ``done`` (the task settled)."""
        while not done.done():
            ready = asyncio.ensure_future(self._ready.get())
            await asyncio.wait((ready, done), return_when=asyncio.FIRST_COMPLETED)
            if ready.done():
                yield ready.result()
            else:
                ready.cancel()
