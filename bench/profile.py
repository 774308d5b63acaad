"""Where the time goes: py-spy samples each service and we rank functions by own time."""

from __future__ import annotations

import asyncio
import shutil
import sys
from collections import Counter
from pathlib import Path


async def record(pids: dict[str, int], seconds: float, out: Path) -> dict[str, list[str]]:
    """Sample every process at once for ``seconds``; returns the top frames per service."""
    spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or "py-spy"
    out.mkdir(parents=True, exist_ok=True)
    procs = {
        name: await asyncio.create_subprocess_exec(
            spy,
            "record",
            "--pid",
            str(pid),
            "--duration",
            str(int(seconds)),
            "--rate",
            "100",
            "--format",
            "raw",
            "--output",
            str(out / f"{name}.txt"),
            "--nonblocking",
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        for name, pid in pids.items()
    }
    for proc in procs.values():
        await proc.wait()
    return {name: top_frames(out / f"{name}.txt") for name in pids}


def top_frames(path: Path, count: int = 8) -> list[str]:
    """``path`` holds py-spy's collapsed stacks ("a;b;c 12"): rank leaves by samples."""
    if not path.exists():
        return ["(no profile: py-spy could not attach)"]
    own: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, samples = line.rpartition(" ")
        if not samples.isdigit():
            continue
        leaf = stack.rsplit(";", 1)[-1]
        own[_short(leaf)] += int(samples)
        total += int(samples)
    return (
        [f"{100 * n / total:5.1f}%  {frame}" for frame, n in own.most_common(count)]
        if total
        else ["(no samples)"]
    )


def _short(frame: str) -> str:
    # "func (path/to/module.py:123)" → "func (module.py)"
    name, _, where = frame.partition(" (")
    file = where.rstrip(")").rsplit(":", 1)[0].rsplit("/", 1)[-1]
    return f"{name} ({file})" if file else name
