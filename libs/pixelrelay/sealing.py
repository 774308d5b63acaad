"""Prompts sealed while they wait in the job queue: AES-256-GCM, the task id (and, for a
job, its capability and relay subject: ``job_binding``) as associated data, so a sealed
prompt cannot be moved to another task or job; keys named by id for rotation. Only the
gateways and dispatchers hold JOB_KEYS: a job whose prompt opens was made by a gateway.

JOB_KEYS lists ``id:base64key`` pairs, the current one first; the gateway seals with the
first, a dispatcher opens with whichever the job names. To rotate: put a new key first on
every dispatcher, then on the gateways; drop the old one once no job sealed with it can be
queued (a day: the jobs stream's max age).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from pixelrelay.keyrings import new_key_entry, parse_keyring
from pixelrelay.v1 import jobs_pb2

__all__ = ["PromptSealer", "SealError", "job_binding", "new_job_key"]

_NONCE_BYTES = 12


class SealError(Exception):
    """A sealed prompt that cannot be opened: unknown key id, or altered."""


def new_job_key() -> str:
    """A JOB_KEYS entry: a fresh id and 32 random bytes."""
    return new_key_entry()


@dataclass(frozen=True)
class PromptSealer:
    current: str
    keys: dict[str, AESGCM]

    @classmethod
    def parse(cls, spec: str) -> PromptSealer:
        current, keys = parse_keyring(
            spec,
            "JOB_KEYS",
            "prompts are sealed in the job queue; make one with `pixelrelay admin new-job-key`",
        )
        return cls(current, {key_id: AESGCM(raw) for key_id, raw in keys.items()})

    def seal(self, prompt: str, task_id: str, binding: bytes = b"") -> tuple[str, bytes]:
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self.keys[self.current].encrypt(
            nonce, prompt.encode(), _associated(task_id, binding)
        )
        return self.current, nonce + sealed

    def open(self, key_id: str, sealed: bytes, task_id: str, binding: bytes = b"") -> str:
        key = self.keys.get(key_id)
        if key is None:
            raise SealError(f"no key {key_id!r} in JOB_KEYS")
        try:
            plain = key.decrypt(
                sealed[:_NONCE_BYTES], sealed[_NONCE_BYTES:], _associated(task_id, binding)
            )
        except InvalidTag:
            raise SealError(
                "the sealed prompt does not open (altered, or another task's)"
            ) from None
        return plain.decode()


def _associated(task_id: str, binding: bytes) -> bytes:
    return task_id.encode() + (b"\0" + binding if binding else b"")


def job_binding(job: jobs_pb2.GenerationJob) -> bytes:
    """What else of a job its sealed prompt vouches for, besides the task id: its task
    capability (by its MAC) and its relay subject. A job is only as trusted as its prompt
    opens, so neither can be swapped into another job: a leaked gateway NATS password
    cannot redirect a task's images or pair its capability with another prompt."""
    return job.capability.mac.hex().encode() + b"\0" + job.relay_subject.encode()
