"""The launcher's readiness checks tell the child they wait for from whatever else holds
its port."""

from __future__ import annotations

import asyncio
import socket

import pytest

from pixelrelay_dev.children import wait_nats


async def test_a_listener_that_is_not_nats_is_not_ready() -> None:
    # Another program's socket on the NATS port: it accepts, but never says INFO.
    with socket.create_server(("127.0.0.1", 0)) as taken, pytest.raises(TimeoutError):
        await asyncio.wait_for(wait_nats(taken.getsockname()[1], "nats"), 2.5)


async def test_a_server_that_greets_like_nats_is_ready() -> None:
    async def greet(_r: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b'INFO {"server_id":"x"}\r\n')
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(greet, "127.0.0.1", 0)
    async with server:
        await asyncio.wait_for(wait_nats(server.sockets[0].getsockname()[1], "nats"), 5)
