"""Large allocations given back to the system when freed.

glibc's malloc serves a freed block again rather than return it, and raises its mmap
threshold each time a large block is freed (up to 32 MB), so a process that once held
large request bodies keeps their memory: 16 authenticated 19 MB gRPC uploads left a
gateway 600 MB larger after every one had been answered. With the threshold fixed, blocks
of ``threshold`` bytes and more are mapped on their own and unmapped when freed, and the
heap's free top is trimmed past ``4 × threshold``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

__all__ = ["give_back_large_allocations"]

log = logging.getLogger(__name__)

_M_TRIM_THRESHOLD = -1  # malloc.h
_M_MMAP_THRESHOLD = -3
DEFAULT_THRESHOLD = 1024 * 1024


def give_back_large_allocations(threshold: int = DEFAULT_THRESHOLD) -> bool:
    """Fix glibc's thresholds for this process; False where malloc is not glibc's."""
    name = ctypes.util.find_library("c")
    libc = ctypes.CDLL(name) if name else None
    mallopt = getattr(libc, "mallopt", None)
    if mallopt is None:
        log.info("mallopt unavailable: large allocations stay with the allocator")
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, threshold)) and bool(
        mallopt(_M_TRIM_THRESHOLD, 4 * threshold)
    )
