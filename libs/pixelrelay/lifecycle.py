"""Process lifecycle: uvloop, a stop Event set by SIGTERM/SIGINT, and one entry point."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
from collections.abc import Awaitable, Callable
from typing import Any

import uvloop

from pixelrelay.startup import StopRequested

log = logging.getLogger(__name__)


async def finish(task: asyncio.Task[Any], stop: asyncio.Event) -> None:
    """Ask a background loop to stop (``stop``) and wait until it has."""
    stop.set()
    await task


async def repeat(
    what: str, job: Callable[[], Awaitable[Any]], every: float, stop: asyncio.Event
) -> None:
    """``job()`` now and every ``every`` seconds until ``stop``: the platform's sweepers.
    A failed run is logged and the next one tries again; it never ends the loop."""
    while not stop.is_set():
        try:
            await job()
        except Exception:
            log.exception("%s failed; will retry", what)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every)


def install_stop_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)


def run_until_signalled(main: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    """Run ``main(stop)`` on uvloop; ``stop`` is set on SIGTERM or SIGINT."""

    async def _run() -> None:
        # Everything imported so far lives as long as the process: move it out of the
        # collector's reach. Otherwise each full collection walks it all and stalls the
        # event loop 70-110 ms (measured in gateway and billing under load), which was the
        # submit p99 (docs/benchmarks.md).
        gc.freeze()
        stop = asyncio.Event()
        install_stop_signals(stop)
        try:
            await main(stop)
        except StopRequested as waiting_for:
            log.info("stopped before it was ready", extra={"waiting_for": str(waiting_for)})
            return
        log.info("stopped")

    uvloop.run(_run())
