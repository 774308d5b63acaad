"""Crash points: where the crash tests kill a process at an exact step.

Inert unless PIXELRELAY_CRASH_DIR is set. A test arms a point by creating the file
``$PIXELRELAY_CRASH_DIR/<name>``; the process that reaches it deletes the file and dies at
once (no cleanup, like SIGKILL), so it fires once.
"""

from __future__ import annotations

import os
from pathlib import Path


def crash_point(name: str) -> None:
    directory = os.environ.get("PIXELRELAY_CRASH_DIR")
    if not directory:
        return
    try:
        (Path(directory) / name).unlink()
    except FileNotFoundError:
        return
    os._exit(137)
