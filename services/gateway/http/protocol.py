"""uvicorn's HTTP/1.1 protocol with the limits a public listener needs before any request
reaches the app: the size and count of a request's headers (431), the time its headers may
take to arrive (408: slowloris, and connections that never send), and the connections one
gateway holds at once (503).

A 100 MB header once took /healthz from 20 ms to 17.6 s and three of them took the gateway
from 248 to 624 MB. The parser buffers a header until it ends, so bytes are counted as they
arrive: a request whose head is still open past ``max_header_bytes`` is refused at the next
read (memory stays within the limit plus one read).
"""

from __future__ import annotations

import asyncio
from http import HTTPStatus
from typing import Any

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from gateway.http.translate import error_json
from pixelrelay.errors import ApiError, E
from pixelrelay.ids import random_token

LINGER_SECONDS = 2.0


class _Refused(Exception):
    """Raised from a parser callback to stop parsing a refused request."""


class GuardedHttpProtocol(HttpToolsProtocol):
    # Set by ``guarded_protocol``: one class per gateway, configured from its settings.
    max_header_bytes = 32 * 1024
    max_headers = 100
    header_timeout = 10.0
    max_connections = 2048

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._head_done = False
        self._head_bytes = 0
        self._header_count = 0
        self._head_timer: asyncio.TimerHandle | None = None
        self._refusal: ApiError | None = None
        self._discarding = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.max_connections:
            self._refuse(
                ApiError(E.UNAVAILABLE, "the gateway is at its connection limit", retry_after=1)
            )
            return
        self._arm_head_timer()  # a connection that never sends is closed too

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._discarding:  # refused: what the client still sends is dropped unread
            return
        if not self._head_done:
            if self._head_bytes > self.max_header_bytes:
                self._refuse(
                    ApiError(E.HEADERS_TOO_LARGE, f"headers over {self.max_header_bytes} bytes")
                )
                return
            self._head_bytes += len(data)
            if self._head_timer is None:
                self._arm_head_timer()
        super().data_received(data)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_count += 1
        if self._header_count > self.max_headers:
            self._refusal = ApiError(E.HEADERS_TOO_LARGE, f"more than {self.max_headers} headers")
            raise _Refused
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._head_done = True
        self._cancel_head_timer()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        # What arrives next is the next request's head.
        self._head_done = False
        self._head_bytes = 0
        self._header_count = 0

    def timeout_keep_alive_handler(self) -> None:
        self._cancel_head_timer()
        super().timeout_keep_alive_handler()

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to a parse error; ours when a callback refused the request."""
        self._refuse(self._refusal or ApiError(E.INVALID_HTTP))

    def _arm_head_timer(self) -> None:
        self._cancel_head_timer()
        self._head_timer = self.loop.call_later(self.header_timeout, self._head_timed_out)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if not self._head_done and (self.cycle is None or self.cycle.response_complete):
            self._refuse(
                ApiError(E.REQUEST_TIMEOUT, f"no complete headers in {self.header_timeout:g} s")
            )

    def _refuse(self, err: ApiError) -> None:
        """Answer with the error envelope, before any app code runs, and close the way
        nginx does (lingering close): our side ends at once, but what the client is still
        sending is read and dropped for a moment, because closing with unread input
        resets the connection and the client would lose the answer."""
        if self.transport.is_closing() or self._discarding:
            return
        self._discarding = True
        body = orjson.dumps(error_json(err, f"req_{random_token(16)}"))
        status = err.kind.http_status
        head = [
            f"HTTP/1.1 {status} {HTTPStatus(status).phrase}",
            "content-type: application/json",
            f"content-length: {len(body)}",
            "connection: close",
        ]
        if err.retry_after is not None:
            head.append(f"retry-after: {err.retry_after:g}")
        self.transport.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)
        self._cancel_head_timer()
        if self.transport.can_write_eof():
            self.transport.write_eof()
            self.loop.call_later(LINGER_SECONDS, self.transport.close)
        else:
            self.transport.close()


def guarded_protocol(
    *, max_header_bytes: int, max_headers: int, header_timeout: float, max_connections: int
) -> type[GuardedHttpProtocol]:
    return type(
        "GatewayHttpProtocol",
        (GuardedHttpProtocol,),
        {
            "max_header_bytes": max_header_bytes,
            "max_headers": max_headers,
            "header_timeout": header_timeout,
            "max_connections": max_connections,
        },
    )


__all__ = ["GuardedHttpProtocol", "guarded_protocol"]
