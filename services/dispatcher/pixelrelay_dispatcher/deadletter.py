"""Jobs that used up their deliveries (the worker kept crashing or never answered).

JetStream publishes a MAX_DELIVERIES advisory into the dead-letter stream; this handler
fails the task (so billing releases the hold), keeps a copy of the job without its prompt
for inspection, and removes the job from the work queue.
"""

from __future__ import annotations

import contextlib
import logging

import nats.js.errors
import orjson
from google.protobuf.message import DecodeError
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from pixelrelay import bus, task_events
from pixelrelay.errors import E
from pixelrelay.v1 import jobs_pb2

log = logging.getLogger(__name__)


class DeadLetterHandler:
    def __init__(self, js: JetStreamContext):
        self.js = js

    async def __call__(self, msg: Msg) -> None:
        advisory = orjson.loads(msg.data)
        seq = int(advisory["stream_seq"])
        try:
            stored = await self.js.get_msg(bus.JOBS_STREAM, seq)
        except nats.js.errors.NotFoundError:
            await msg.ack()  # already handled by another dispatcher
            return
        try:
            job = jobs_pb2.GenerationJob.FromString(stored.data or b"")
        except DecodeError:
            log.error("undecodable job dropped", extra={"stream_seq": seq})
        else:
            await task_events.publish_event(
                self.js, task_events.failed(job.task_id, E.JOB_ABANDONED)
            )
            job.prompt = ""  # the dead-letter copy keeps no prompt, not even sealed
            job.sealed_prompt = b""
            await bus.publish(
                self.js,
                bus.DEADLETTER_SUBJECT,
                job.SerializeToString(),
                msg_id=f"{job.task_id}.dead",
            )
            log.warning(
                "job abandoned after its delivery limit",
                extra={"task_id": job.task_id, "deliveries": advisory.get("deliveries")},
            )
        with contextlib.suppress(nats.js.errors.NotFoundError):
            await self.js.delete_msg(bus.JOBS_STREAM, seq)
        await msg.ack()
