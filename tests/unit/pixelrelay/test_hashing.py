from __future__ import annotations

import hashlib
import os
import threading
from unittest import mock

import pytest

from pixelrelay import hashing
from pixelrelay.hashing import INLINE_MAX_BYTES, sha256_hex


@pytest.mark.parametrize(
    "size", [0, 1, INLINE_MAX_BYTES, INLINE_MAX_BYTES + 1, 3 * 1024 * 1024 + 7]
)
async def test_the_same_digest_as_hashlib_inline_or_in_a_thread(size: int) -> None:
    data = os.urandom(size)
    expected = hashlib.sha256(data).hexdigest()
    assert await sha256_hex(data) == expected
    assert await sha256_hex(bytearray(data)) == expected


async def test_only_large_buffers_leave_the_event_loop() -> None:
    threads: list[threading.Thread] = []
    real = hashing._hex

    def recording(data: bytes | bytearray) -> str:
        threads.append(threading.current_thread())
        return real(data)

    with mock.patch.object(hashing, "_hex", recording):
        await sha256_hex(b"x" * INLINE_MAX_BYTES)
        await sha256_hex(b"x" * (INLINE_MAX_BYTES + 1))
    assert threads[0] is threading.current_thread()
    assert threads[1] is not threading.current_thread()
