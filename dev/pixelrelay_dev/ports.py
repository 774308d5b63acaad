"""Ports for platforms started beside each other (tests, benchmarks): picked so they cannot
collide.

A port found free by binding and releasing it can be taken before the service binds it
again. Inside the OS's ephemeral range that happens on its own: every outgoing connection
takes a port from there (a CI run once lost its whole e2e suite to one). So ports come from
outside that range, and each is held by an advisory lock file while its ``PortLease`` lives,
so two launchers on one machine never pick the same one. What can still happen, a foreign
program binding the port explicitly in between, the launcher answers by starting again on
new ports (devstack).

Processes that bind in-process servers need none of this: bind port 0 and read the port.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import random
import socket
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

__all__ = ["PortLease", "ephemeral_range", "lease_ports", "safe_range"]

# Below this are the ports that well-known servers on a developer's machine use.
LOWEST = 15_000
HIGHEST = 65_535
LOCK_DIR = Path(tempfile.gettempdir()) / "pixelrelay-ports"


def ephemeral_range() -> tuple[int, int]:
    """The ports the kernel hands to outgoing connections (inclusive)."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32_768, 60_999  # Linux's default; macOS uses 49152-65535


def safe_range() -> range:
    """The larger stretch of [LOWEST, HIGHEST] that lies outside the ephemeral range."""
    low, high = ephemeral_range()
    below = range(LOWEST, max(LOWEST, low))
    above = range(min(HIGHEST + 1, max(LOWEST, high + 1)), HIGHEST + 1)
    chosen = max(below, above, key=len)
    if len(chosen) < 1_000:
        raise RuntimeError(f"no room outside the ephemeral port range {low}-{high}")
    return chosen


@dataclass
class PortLease:
    """Ports this process may bind (or pass to its children) until ``release``."""

    ports: list[int] = field(default_factory=list)
    _locks: list[IO[bytes]] = field(default_factory=list, repr=False)

    def release(self) -> None:
        for lock in self._locks:
            lock.close()  # closing the file drops its flock
        self._locks.clear()

    def __enter__(self) -> PortLease:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.release()


def lease_ports(*blocks: int, attempts: int = 500) -> PortLease:
    """One run of consecutive ports per size in ``blocks`` (``lease.ports`` holds the first
    of each): free now, outside the ephemeral range, locked against every other lease on
    this machine."""
    span = safe_range()
    lease = PortLease()
    try:
        for size in blocks:
            lease.ports.append(_lease_block(lease, span, size, attempts))
    except BaseException:
        lease.release()
        raise
    return lease


def _lease_block(lease: PortLease, span: range, block: int, attempts: int) -> int:
    for _ in range(attempts):
        first = random.randrange(span.start, span.stop - block)
        locks = []
        for port in range(first, first + block):
            lock = _lock(port)
            if lock is None or not _bindable(port):
                if lock is not None:
                    lock.close()
                break
            locks.append(lock)
        else:
            lease._locks.extend(locks)
            return first
        for lock in locks:
            lock.close()
    raise RuntimeError(f"no {block} consecutive free ports in {span.start}-{span.stop - 1}")


def _lock(port: int) -> IO[bytes] | None:
    LOCK_DIR.mkdir(mode=0o777, exist_ok=True)
    path = LOCK_DIR / f"{port}.lock"
    handle = path.open("ab")
    with contextlib.suppress(OSError):
        os.chmod(path, 0o666)  # another user's launcher may take it next
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        return None
    return handle


def _bindable(port: int) -> bool:
    """Free on every interface (services bind 0.0.0.0, which any listener blocks)."""
    with socket.socket() as s:
        try:
            s.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True
