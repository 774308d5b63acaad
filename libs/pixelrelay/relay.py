"""Images relayed from the dispatcher to the one request waiting for them (GenerateImages,
/v1): previews while the upstream works, then the finished images, so the answer need not
read them back from the object store. Over core NATS: no stream, nothing stored, nothing
redelivered. A lost preview is simply not seen; a lost or damaged finished image is read
from storage instead (the gateway uses relayed bytes only if their SHA-256 is the stored
image's).

Each gateway process holds one subscription for all its waiting requests (``RelayInbox``,
``pixelrelay.relay.<inbox>.*``: a subscription per request cost the bus a SUB and an UNSUB
each). A request takes a fresh subject under it before it queues the job and names it in
the job (GenerationJob.relay_subject); the dispatcher publishes there, splitting an image
larger than the server's max_payload into chunks (core NATS keeps one publisher's order).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from pixelrelay.bus import RELAY_PREFIX
from pixelrelay.hashing import sha256_hex
from pixelrelay.ids import new_id, random_token
from pixelrelay.v1 import jobs_pb2, public_api_pb2

log = logging.getLogger(__name__)

MAX_PARTIAL_IMAGES = 3  # OpenAI's limit
_SUBJECT = re.compile(rf"^{re.escape(RELAY_PREFIX)}\.rly_[0-9A-Za-z]{{22}}\.[0-9A-Za-z]{{22}}$")
_ENVELOPE_BYTES = 1024  # room for the chunk's other fields and the message headers


@dataclass(frozen=True)
class Relay:
    """What a job carries for its waiting request: how many previews, and where to."""

    partial_images: int = 0
    subject: str = ""


NO_RELAY = Relay()


def is_relay_subject(subject: str) -> bool:
    """Whether a job's subject is one a gateway made (the only place images may go)."""
    return bool(_SUBJECT.match(subject))


class RelaySender:
    """Dispatcher side, one job: at most ``previews`` previews, numbered in the order they
    came over every upstream attempt (a failover does not start again at 0), then the
    finished images."""

    def __init__(self, nc: NATS, subject: str, task_id: str, image_format: str, previews: int):
        self.nc = nc
        self.subject = subject
        self.task_id = task_id
        self.format = image_format
        self.previews = previews
        self.sent = 0

    async def send_preview(self, data: bytes) -> None:
        if self.sent >= self.previews:
            return
        self.sent += 1
        await self._send(self.sent - 1, data, self.format, final=False)

    async def send_final(self, index: int, data: bytes, image_format: str) -> None:
        await self._send(index, data, image_format, final=True)

    async def _send(self, index: int, data: bytes, image_format: str, *, final: bool) -> None:
        size = max(1, self.nc.max_payload - _ENVELOPE_BYTES)
        pieces = [data[i : i + size] for i in range(0, len(data), size)] or [b""]
        try:
            for number, piece in enumerate(pieces):
                chunk = jobs_pb2.RelayChunk(
                    task_id=self.task_id,
                    final=final,
                    index=index,
                    format=image_format,
                    chunk=number,
                    chunks=len(pieces),
                    data=piece,
                )
                await self.nc.publish(self.subject, chunk.SerializeToString())
        except Exception:  # a relayed image is a shortcut; it never costs the generation
            log.warning("image not relayed", extra={"task_id": self.task_id}, exc_info=True)


class RelayInbox:
    """Gateway side, one per process: one subscription, each message handed to the request
    whose subject it names (a message for a request gone is dropped)."""

    def __init__(self) -> None:
        self.prefix = f"{RELAY_PREFIX}.{new_id('rly')}"
        self._receivers: dict[str, RelayReceiver] = {}
        self._subscription: Subscription | None = None

    async def open(self, nc: NATS) -> RelayInbox:
        self._subscription = await nc.subscribe(f"{self.prefix}.*", cb=self._on_message)
        return self

    async def close(self) -> None:
        if self._subscription is not None:
            await self._subscription.unsubscribe()
            self._subscription = None

    def receiver(self) -> RelayReceiver:
        """A request's own subject, until it closes the receiver."""
        receiver = RelayReceiver(f"{self.prefix}.{random_token(22)}", self._receivers.pop)
        self._receivers[receiver.subject] = receiver
        return receiver

    async def _on_message(self, msg: Msg) -> None:  # nats-py wants a coroutine function
        receiver = self._receivers.get(msg.subject)
        if receiver is not None:
            receiver.take(msg.data)


class RelayReceiver:
    """Gateway side, one request: joins chunks into whole images."""

    def __init__(self, subject: str, on_close: Callable[[str], object] = lambda _: None):
        self.subject = subject
        self.task_id = ""  # known once the task is accepted; chunks of others are dropped
        self._on_close = on_close
        self._parts: dict[tuple[bool, int], list[bytes]] = {}
        self._previews: asyncio.Queue[public_api_pb2.PartialImage] = asyncio.Queue()
        self._finals: dict[int, bytes] = {}

    def close(self) -> None:
        self._on_close(self.subject)

    def take(self, payload: bytes) -> None:
        try:
            chunk = jobs_pb2.RelayChunk.FromString(payload)
        except Exception:
            return
        if self.task_id and chunk.task_id != self.task_id:
            return
        which = (chunk.final, chunk.index)
        parts = self._parts.setdefault(which, [])
        if chunk.chunk != len(parts):  # one went missing: this image cannot be whole
            self._parts.pop(which, None)
            return
        parts.append(chunk.data)
        if len(parts) < chunk.chunks:
            return
        del self._parts[which]
        data = b"".join(parts)
        if chunk.final:
            self._finals[chunk.index] = data
        else:
            self._previews.put_nowait(
                public_api_pb2.PartialImage(
                    partial_image_index=chunk.index, data=data, format=chunk.format
                )
            )

    async def previews(
        self, done: asyncio.Future[Any]
    ) -> AsyncIterator[public_api_pb2.PartialImage]:
        """Each whole preview as it arrives, until ``done`` (the task settled)."""
        while not done.done():
            ready = asyncio.ensure_future(self._previews.get())
            await asyncio.wait((ready, done), return_when=asyncio.FIRST_COMPLETED)
            if ready.done():
                yield ready.result()
            else:
                ready.cancel()

    async def final(self, index: int, sha256: str) -> bytes | None:
        """The finished image ``index`` if it came whole and is exactly what was stored."""
        data = self._finals.get(index)
        if data is None or await sha256_hex(data) != sha256:
            return None
        return data
