"""Secret keys named by id, for rotation: ``id:base64(32 bytes)``, comma-separated, the
current one first. JOB_KEYS (sealing.py) and TASK_CAPABILITY_KEYS (capabilities.py) are
such lists; a new key is made with ``pixelrelay admin new-job-key`` /
``new-capability-key``."""

from __future__ import annotations

import base64
import binascii
import os

from pixelrelay.ids import random_token

KEY_BYTES = 32


def new_key_entry() -> str:
    """One entry: a fresh id and 32 random bytes."""
    return f"k{random_token(8)}:{base64.b64encode(os.urandom(KEY_BYTES)).decode()}"


def parse_keyring(spec: str, setting: str, needed_for: str) -> tuple[str, dict[str, bytes]]:
    """(current key id, key bytes by id); a malformed or empty list stops the start, naming
    ``setting`` and why it is required (``needed_for``)."""
    keys: dict[str, bytes] = {}
    order: list[str] = []
    for item in filter(None, (part.strip() for part in spec.split(","))):
        key_id, _, encoded = item.partition(":")
        try:
            raw = base64.b64decode(encoded, validate=True)
        except binascii.Error:
            raw = b""
        if not key_id or len(raw) != KEY_BYTES:
            raise ValueError(f"{setting}: expected id:base64(32 bytes), got {key_id!r}")
        keys[key_id] = raw
        order.append(key_id)
    if not order:
        raise ValueError(f"{setting} is required ({needed_for})")
    return order[0], keys
