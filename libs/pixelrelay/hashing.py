"""SHA-256 of image bytes without holding up the event loop."""

from __future__ import annotations

import asyncio
import hashlib

# Below this, hashing inline is cheaper than the hop to a thread and back (about 50 us);
# above it, the loop would stall for as long as the hash takes (a 20 MB image: ~10 ms).
INLINE_MAX_BYTES = 64 * 1024


def _hex(data: bytes | bytearray) -> str:
    return hashlib.sha256(data).hexdigest()


async def sha256_hex(data: bytes | bytearray) -> str:
    """``hashlib.sha256(data).hexdigest()``; a large buffer is hashed in a worker thread
    (hashlib lets go of the GIL while it hashes, so the loop really runs on meanwhile).
    The caller must not change ``data`` until this returns."""
    if len(data) <= INLINE_MAX_BYTES:
        return _hex(data)
    return await asyncio.to_thread(_hex, data)
