"""An open-loop HTTP/1.1 load generator on raw asyncio streams.

Request i is *scheduled* at start + i/rate whether or not earlier ones have finished, and
its latency is measured from that scheduled time: when the server falls behind, queueing
delay shows up in the figures instead of quietly lowering the offered rate (no coordinated
omission). Raw sockets keep the generator's own cost far below an HTTP client library's.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

RequestFactory = Callable[[int], bytes]


@dataclass(frozen=True)
class Sample:
    scheduled: float  # seconds since the run started
    latency: float  # seconds, from the scheduled time to the last byte of the answer
    status: int
    body: bytes


def http_request(
    method: str, path: str, host: str, headers: dict[str, str], body: bytes = b""
) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}", "Connection: keep-alive"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    if body or method in ("POST", "PUT"):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    return status, await reader.readexactly(length) if length else b""


# A request still waiting this long after its scheduled time is not sent; it counts as
# failed (status 0). This bounds a run that offers more than the server can take.
MAX_LAG = 5.0


async def open_loop(
    host: str,
    port: int,
    request: RequestFactory,
    *,
    rate: float,
    duration: float,
    connections: int = 64,
    keep_bodies: bool = False,
) -> list[Sample]:
    total = int(rate * duration)
    queue: asyncio.Queue[tuple[int, float] | None] = asyncio.Queue()
    samples: list[Sample] = []
    start = time.perf_counter()

    async def produce() -> None:
        for i in range(total):
            due = start + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            queue.put_nowait((i, due))
        for _ in range(connections):
            queue.put_nowait(None)

    async def work() -> None:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            while (item := await queue.get()) is not None:
                i, due = item
                if time.perf_counter() - due > MAX_LAG:
                    samples.append(Sample(due - start, MAX_LAG, 0, b""))
                    continue
                try:
                    writer.write(request(i))
                    status, body = await _read_response(reader)
                except (asyncio.IncompleteReadError, ConnectionError):
                    # The server closed an idle keep-alive connection: reconnect, resend.
                    writer.close()
                    reader, writer = await asyncio.open_connection(host, port)
                    writer.write(request(i))
                    status, body = await _read_response(reader)
                done = time.perf_counter()
                samples.append(
                    Sample(due - start, done - due, status, body if keep_bodies else b"")
                )
        finally:
            writer.close()

    await asyncio.gather(produce(), *(work() for _ in range(connections)))
    return samples


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]
