"""Prompts sealed while they wait in the job queue: AES-256-GCM, the task id as associated
data (a sealed prompt cannot be moved to another task), keys named by id for rotation.

JOB_KEYS lists ``id:base64key`` pairs, the current one first; the gateway seals with the
first, a dispatcher opens with whichever the job names. To rotate: put a new key first on
every dispatcher, then on the gateways; drop the old one once no job sealed with it can be
queued (a day: the jobs stream's max age).
"""

from __future__ import annotations

import base64
import binascii
import os
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from pixelrelay.ids import random_token

__all__ = ["PromptSealer", "SealError", "new_job_key"]

_NONCE_BYTES = 12


class SealError(Exception):
    """A sealed prompt that cannot be opened: unknown key id, or altered."""


def new_job_key() -> str:
    """A JOB_KEYS entry: a fresh id and 32 random bytes."""
    return f"k{random_token(8)}:{base64.b64encode(os.urandom(32)).decode()}"


@dataclass(frozen=True)
class PromptSealer:
    current: str
    keys: dict[str, AESGCM]

    @classmethod
    def parse(cls, spec: str) -> PromptSealer:
        keys: dict[str, AESGCM] = {}
        order: list[str] = []
        for item in filter(None, (part.strip() for part in spec.split(","))):
            key_id, _, encoded = item.partition(":")
            try:
                raw = base64.b64decode(encoded, validate=True)
            except binascii.Error:
                raw = b""
            if not key_id or len(raw) != 32:
                raise ValueError(f"JOB_KEYS: expected id:base64(32 bytes), got {key_id!r}")
            keys[key_id] = AESGCM(raw)
            order.append(key_id)
        if not order:
            raise ValueError(
                "JOB_KEYS is required (prompts are sealed in the job queue); "
                "make one with `pixelrelay admin new-job-key`"
            )
        return cls(order[0], keys)

    def seal(self, prompt: str, task_id: str) -> tuple[str, bytes]:
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self.keys[self.current].encrypt(nonce, prompt.encode(), task_id.encode())
        return self.current, nonce + sealed

    def open(self, key_id: str, sealed: bytes, task_id: str) -> str:
        key = self.keys.get(key_id)
        if key is None:
            raise SealError(f"no key {key_id!r} in JOB_KEYS")
        try:
            plain = key.decrypt(sealed[:_NONCE_BYTES], sealed[_NONCE_BYTES:], task_id.encode())
        except InvalidTag:
            raise SealError(
                "the sealed prompt does not open (altered, or another task's)"
            ) from None
        return plain.decode()
