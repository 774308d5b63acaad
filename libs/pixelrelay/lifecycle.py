"""Process lifecycle: uvloop, a stop Event set by SIGTERM/SIGINT, and one entry point."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable

import uvloop

log = logging.getLogger(__name__)


def install_stop_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)


def run_until_signalled(main: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    """Run ``main(stop)`` on uvloop; ``stop`` is set on SIGTERM or SIGINT."""

    async def _run() -> None:
        stop = asyncio.Event()
        install_stop_signals(stop)
        await main(stop)
        log.info("stopped")

    uvloop.run(_run())
