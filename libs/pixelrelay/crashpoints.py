"""Crash points: where the crash tests kill a process at an exact step.

Inert unless PIXELRELAY_CRASH_DIR is set. A test arms a point by creating the file
``$PIXELRELAY_CRASH_DIR/<name>``; the process that reaches it dies at once (no cleanup, like
SIGKILL). The file may hold a count (default 1): the point fires that many times.
"""

from __future__ import annotations

import os
from pathlib import Path


def crash_point(name: str) -> None:
    directory = os.environ.get("PIXELRELAY_CRASH_DIR")
    if not directory:
        return
    path = Path(directory) / name
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        return
    left = int(text) - 1 if text.isdigit() else 0
    if left > 0:
        path.write_text(str(left))
    else:
        path.unlink(missing_ok=True)
    os._exit(137)
