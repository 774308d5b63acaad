"""uvicorn's HTTP/1.1 protocol with the limits a public listener needs before any request
reaches the app: the size and count of a request's headers (431), the time its headers and
its body may take to arrive (408: slowloris, slow bodies, connections that never send), the
connections one client address may hold (429) and those one gateway holds at once (503).

A 100 MB header once took /healthz from 20 ms to 17.6 s and three of them took the gateway
from 248 to 624 MB. The parser buffers a header until it ends, so bytes are counted as they
arrive: a request whose head is still open past ``max_header_bytes`` is refused at the next
read (memory stays within the limit plus one read).

2,100 connections that each sent complete headers, ``Content-Length: 1000`` and one body
byte once held every route, /healthz included, at 503 for as long as they stayed open. Now
a body must arrive within ``body_timeout`` plus one second per ``min_body_rate`` bytes
received (Apache's mod_reqtimeout rule: a slow link is fine, a stalled one is not); one
address holds at most ``max_connections_per_client``; and a gateway at its limit makes room
for a new connection by closing the one that has waited longest on its client (a slow head
or body, an idle keep-alive), so health checks and clients with a request ready get in
while connections that send nothing are shed. Only when every connection is busy with a
request the app is working on does a new one get 503.
"""

from __future__ import annotations

import asyncio
from http import HTTPStatus
from typing import Any, ClassVar

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from pixelrelay.errors import ApiError, E
from pixelrelay.ids import random_token
from pixelrelay_gateway.core.auth_throttle import Network, in_networks
from pixelrelay_gateway.http.translate import error_json

LINGER_SECONDS = 2.0
# A connection waiting on its client at least this long may be closed to make room for a
# new one at the limit: a client with a request ready sends it in milliseconds.
EVICTABLE_AFTER_SECONDS = 1.0


class _Refused(Exception):
    """Raised from a parser callback to stop parsing a refused request."""


class GuardedHttpProtocol(HttpToolsProtocol):
    # Set by ``guarded_protocol``: one class per gateway, configured from its settings.
    max_header_bytes = 32 * 1024
    max_headers = 100
    header_timeout = 10.0
    body_timeout = 10.0
    min_body_rate = 16 * 1024
    max_connections = 2048
    max_connections_per_client = 256
    trusted_proxies: ClassVar[tuple[Network, ...]] = ()
    per_client: ClassVar[dict[str, int]] = {}  # open connections by client address

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._head_done = False
        self._head_bytes = 0
        self._header_count = 0
        self._head_timer: asyncio.TimerHandle | None = None
        self._body_timer: asyncio.TimerHandle | None = None
        self._body_base = 0.0  # the body's deadline before any byte of it arrived
        self._body_bytes = 0
        self._body_checked = 0.0
        self._refusal: ApiError | None = None
        self._discarding = False
        self._counted_as: str | None = None
        # Since when this connection waits on its client (a head, a body, the next
        # request); None while the app works on a request it has whole.
        self.waiting_since: float | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.waiting_since = self.loop.time()
        if len(self.connections) > self.max_connections and not self._make_room():
            self._refuse(
                ApiError(E.UNAVAILABLE, "the gateway is at its connection limit", retry_after=1)
            )
            return
        address = self.client[0] if self.client else ""
        if not in_networks(address, self.trusted_proxies):
            self._counted_as = address
            self.per_client[address] = self.per_client.get(address, 0) + 1
            if self.per_client[address] > self.max_connections_per_client:
                self._refuse(
                    ApiError(
                        E.TOO_MANY_CONNECTIONS,
                        f"at most {self.max_connections_per_client} connections per address",
                        retry_after=1,
                    )
                )
                return
        self._arm_head_timer()  # a connection that never sends is closed too

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        self._cancel_body_timer()
        if self._counted_as is not None:
            left = self.per_client.get(self._counted_as, 1) - 1
            if left > 0:
                self.per_client[self._counted_as] = left
            else:
                self.per_client.pop(self._counted_as, None)
            self._counted_as = None
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
        if self._has_body():
            now = self.loop.time()
            self._body_base = now + self.body_timeout
            self._body_bytes = 0
            self._body_checked = now
            self._body_timer = self.loop.call_at(self._body_base, self._check_body)

    def on_body(self, body: bytes) -> None:
        self._body_bytes += len(body)
        super().on_body(body)

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._cancel_body_timer()
        # The app has the whole request, unless it already answered (then we wait on the
        # client's next request). What arrives next is that request's head.
        answered = self.cycle is None or self.cycle.response_complete
        self.waiting_since = self.loop.time() if answered else None
        self._head_done = False
        self._head_bytes = 0
        self._header_count = 0

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self.waiting_since is None:
            self.waiting_since = self.loop.time()

    def timeout_keep_alive_handler(self) -> None:
        self._cancel_head_timer()
        super().timeout_keep_alive_handler()

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to a parse error; ours when a callback refused the request."""
        self._refuse(self._refusal or ApiError(E.INVALID_HTTP))

    def _has_body(self) -> bool:
        for name, value in self.headers:
            if name == b"content-length":
                return value.strip() not in (b"", b"0")
            if name == b"transfer-encoding":
                return True
        return False

    def _check_body(self) -> None:
        """The body's deadline moves one second later per ``min_body_rate`` bytes received;
        time while we stopped reading (the app not consuming) is not the client's."""
        self._body_timer = None
        now = self.loop.time()
        if self.flow.read_paused:
            self._body_base += now - self._body_checked
        self._body_checked = now
        deadline = self._body_base + self._body_bytes / self.min_body_rate
        if now < deadline:
            self._body_timer = self.loop.call_at(deadline, self._check_body)
            return
        self._refuse(
            ApiError(
                E.REQUEST_TIMEOUT,
                f"the body did not arrive in time ({self.body_timeout:g} s, then at least "
                f"{self.min_body_rate} bytes/s)",
            )
        )

    def _cancel_body_timer(self) -> None:
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None

    def _make_room(self) -> bool:
        """Close the connection that has waited longest on its client, if one has waited
        long enough; False if every connection is busy (or new)."""
        now = self.loop.time()
        open_ = 0
        oldest: GuardedHttpProtocol | None = None
        oldest_since = now - EVICTABLE_AFTER_SECONDS  # only those waiting at least this long
        for other in self.connections:
            if not isinstance(other, GuardedHttpProtocol):
                continue  # the one listener serves this class alone
            if other.transport.is_closing() or other._discarding:
                continue  # refused: closing once its answer is read
            open_ += 1
            if other is self:
                continue
            since = other.waiting_since
            if since is not None and since <= oldest_since:
                oldest, oldest_since = other, since
        if open_ <= self.max_connections:
            return True  # the excess was connections already refused or closing
        if oldest is None:
            return False
        oldest._evict()
        return True

    def _evict(self) -> None:
        idle = self._head_bytes == 0 and (self.cycle is None or self.cycle.response_complete)
        if idle:  # between requests: closing is what a keep-alive timeout does
            self.transport.close()
            return
        self._refuse(
            ApiError(E.REQUEST_TIMEOUT, "closed to make room: the request arrived too slowly"),
            linger=False,
        )

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

    def _refuse(self, err: ApiError, *, linger: bool = True) -> None:
        """Answer with the error envelope, before any app code runs (or instead of what it
        would answer: a request still waiting for its body sees the client gone), and close
        the way nginx does (lingering close): our side ends at once, but what the client is
        still sending is read and dropped for a moment, because closing with unread input
        resets the connection and the client would lose the answer."""
        if self.transport.is_closing() or self._discarding:
            return
        self._discarding = True
        self._cancel_head_timer()
        self._cancel_body_timer()
        cycle = self.cycle
        if cycle is not None and cycle.response_started:
            # Mid-answer (or answered, the rest of the body unread): no second answer.
            self.transport.close()
            return
        if cycle is not None:
            cycle.disconnected = True  # the app's receive() ends, its send() is a no-op
            cycle.message_event.set()
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
        if linger and self.transport.can_write_eof():
            self.transport.write_eof()
            self.loop.call_later(LINGER_SECONDS, self.transport.close)
        else:
            self.transport.close()


def guarded_protocol(
    *,
    max_header_bytes: int,
    max_headers: int,
    header_timeout: float,
    body_timeout: float,
    min_body_rate: int,
    max_connections: int,
    max_connections_per_client: int,
    trusted_proxies: list[Network],
) -> type[GuardedHttpProtocol]:
    return type(
        "GatewayHttpProtocol",
        (GuardedHttpProtocol,),
        {
            "max_header_bytes": max_header_bytes,
            "max_headers": max_headers,
            "header_timeout": header_timeout,
            "body_timeout": body_timeout,
            "min_body_rate": min_body_rate,
            "max_connections": max_connections,
            "max_connections_per_client": max_connections_per_client,
            "trusted_proxies": tuple(trusted_proxies),
            "per_client": {},
        },
    )


__all__ = ["GuardedHttpProtocol", "guarded_protocol"]
