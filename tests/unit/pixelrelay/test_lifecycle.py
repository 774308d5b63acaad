from __future__ import annotations

import asyncio
import gc

from pixelrelay.lifecycle import run_until_signalled


def test_services_start_with_their_startup_objects_frozen() -> None:
    seen: list[int] = []

    async def main(stop: asyncio.Event) -> None:
        seen.append(gc.get_freeze_count())

    try:
        run_until_signalled(main)
    finally:
        gc.unfreeze()
    assert seen and seen[0] > 10_000  # the imported modules, out of the collector's scans
