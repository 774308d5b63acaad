"""CPU time of processes, from /proc: what a request costs each one, a figure that the
machine's other load moves far less than a latency does (Linux only; elsewhere empty)."""

from __future__ import annotations

import os
from collections.abc import Mapping

_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of ``pid`` so far, or None if it cannot be read."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / _TICK


def snapshot(pids: Mapping[str, list[int]]) -> dict[str, float]:
    """CPU seconds so far by name, replicas summed (names whose processes cannot be read
    are left out)."""
    totals: dict[str, float] = {}
    for name, of_name in pids.items():
        seconds = [s for s in map(cpu_seconds, of_name) if s is not None]
        if seconds:
            totals[name] = sum(seconds)
    return totals


def spent(before: Mapping[str, float], after: Mapping[str, float]) -> dict[str, float]:
    return {name: after[name] - before[name] for name in after if name in before}
