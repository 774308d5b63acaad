"""The platform's child processes: started, waited for until they answer, stopped."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import subprocess
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

from pixelrelay.grpc_server import check_health

log = logging.getLogger("devstack")


# How many times a stack on leased ports starts again after a child found its port taken.
START_ATTEMPTS = 3


# What nats-server, gRPC, uvicorn, rclone and prometheus say when a port is taken.
_PORT_TAKEN = re.compile(r"address already in use|failed to bind|in use by another program", re.I)


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    argv: list[str]
    env: dict[str, str]
    ready: Callable[[], Awaitable[None]]

    def log_tail(self, lines: int = 20) -> str:
        with self.log_path.open("rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - 64 * 1024))
            return b"\n".join(f.read().splitlines()[-lines:]).decode(errors="replace")


class ChildExited(RuntimeError):
    """A child process ended while its launcher was waiting for it to become ready."""

    def __init__(self, child: Child):
        self.name = child.name
        self.tail = child.log_tail()
        super().__init__(
            f"{child.name} exited with code {child.process.returncode} while starting; "
            f"the end of {child.log_path}:\n{self.tail}"
        )

    @property
    def port_taken(self) -> bool:
        return bool(_PORT_TAKEN.search(self.tail))


async def ready(child: Child) -> None:
    """Wait for ``child.ready()``; the moment the process ends instead, raise ChildExited."""
    ready = asyncio.ensure_future(child.ready())
    try:
        while not ready.done():
            if child.process.poll() is not None:
                raise ChildExited(child)
            await asyncio.wait([ready], timeout=0.05)
        ready.result()
    finally:
        ready.cancel()


async def wait_exit(child: Child, grace: float) -> None:
    try:
        await asyncio.to_thread(child.process.wait, grace)
    except subprocess.TimeoutExpired:
        log.warning("%s did not stop in %.0fs; killing it", child.name, grace)
        child.process.kill()
        child.process.wait()


async def until(check: object, what: str, limit: float = 60.0) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if await check():  # type: ignore[operator]
            return
        await asyncio.sleep(0.1)
    raise RuntimeError(f"{what} did not become ready in {limit:.0f}s")


async def wait_nats(port: int, what: str) -> None:
    """Ready once the port answers as a NATS server does, with its ``INFO`` line: an open
    port alone could be another program's listener (then nats-server exits, and the
    launcher must see that rather than wait on a bus that never speaks)."""

    async def check() -> bool:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            return False
        try:
            line = await asyncio.wait_for(reader.readline(), 1.0)
        except (OSError, TimeoutError):
            line = b""
        finally:
            writer.close()
        return line.startswith(b"INFO ")

    await until(check, what)


async def wait_http(url: str, what: str, any_status: bool = False) -> None:
    async def check() -> bool:
        try:
            async with httpx.AsyncClient(timeout=1.0) as client:
                response = await client.get(url)
        except httpx.HTTPError:
            return False
        return any_status or response.status_code == 200

    await until(check, what)


async def wait_grpc(port: int, what: str) -> None:
    await until(lambda: check_health(f"127.0.0.1:{port}"), what)
