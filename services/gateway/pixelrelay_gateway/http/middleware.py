"""What every REST request passes through: a request id, the body limit, the failed-auth
throttle, the caller's key checked before its body is read, the security headers, and the
HTTP metrics."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from prometheus_client import Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pixelrelay.errors import ApiError, E
from pixelrelay.ids import random_token
from pixelrelay.metrics import FAST_BUCKETS
from pixelrelay_gateway.core.auth_throttle import AuthThrottle
from pixelrelay_gateway.core.sessions import csrf_matches
from pixelrelay_gateway.http import sessions
from pixelrelay_gateway.http.errors import error_response
from pixelrelay_gateway.http.pages import PAGES

HTTP_REQUESTS = Counter(
    "pixelrelay_http_requests_total", "REST requests", ["method", "route", "status"]
)
HTTP_LATENCY = Histogram(
    "pixelrelay_http_request_seconds",
    "REST handling time",
    ["method", "route"],
    buckets=FAST_BUCKETS,
)


# Every answer: no MIME sniffing, no framing, no referrer. JSON answers may load nothing;
# the HTML pages (the playground and /docs) only what they use, all from this gateway.
_COMMON_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
]
API_HEADERS = [
    *_COMMON_HEADERS,
    (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'"),
]
PAGE_HEADERS = [
    *_COMMON_HEADERS,
    (
        b"content-security-policy",
        # images come from the object store (http in `make run`), whose address only the
        # storage service knows; scripts only from this gateway. Swagger UI 5 (/docs) needs
        # nothing more (no eval, workers or blob:), only the inline styles allowed already
        b"default-src 'self'; style-src 'self' 'unsafe-inline'; img-src * data:; "
        b"connect-src 'self'; frame-ancestors 'none'",
    ),
]


# Paths whose bodies the operator's token, not an API key, unlocks (billing checks it).
OPERATOR_PREFIX = "/admin/"
# Where the session cookie stands for the caller's credential (the console's API calls).
COOKIE_PREFIX = "/api/v1/"
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_FORGET_SESSION = b"pr_session=; Max-Age=0; Path=/; HttpOnly; SameSite=Strict"


class RequestContext:
    """Per request: an id (``x-request-id``), a body limit (413 before a larger body is
    read into memory), the session cookie as the credential (with its CSRF check),
    failed-authentication throttling, a request with a body admitted only with a valid
    API key or session (401 before a byte of it is read), and the HTTP metrics."""

    def __init__(
        self,
        app: ASGIApp,
        limit: int,
        file_limits: dict[str, int],
        throttle: AuthThrottle,
        admit: Callable[[str | None], Awaitable[None]],
    ):
        self.app = app
        self.limit = limit
        self.file_limits = file_limits  # by path: the routes that take files
        self.throttle = throttle
        self.admit = admit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = f"req_{random_token(16)}"
        scope.setdefault("state", {})["request_id"] = request_id

        started = time.perf_counter()
        status = 500

        async def with_request_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = message.setdefault("headers", [])
                headers.append((b"x-request-id", request_id.encode()))
                headers += PAGE_HEADERS if scope["path"] in PAGES else API_HEADERS
                if status == 401 and scope["state"].get("session_cookie"):
                    # an ended session: the browser stops sending it (and counting as a
                    # failed authentication on every page it opens)
                    headers.append((b"set-cookie", _FORGET_SESSION))
            await send(message)

        limit = self.file_limits.get(scope["path"], self.limit)
        too_large = ApiError(E.BODY_TOO_LARGE, f"the body must be at most {limit} bytes")
        headers = dict(scope["headers"])
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            await error_response(too_large, request_id, scope["path"])(
                scope, receive, with_request_id
            )
            return
        client = self._client(scope, headers)
        scope["state"]["client"] = client
        credential_free = scope["path"] in sessions.CREDENTIAL_FREE
        try:
            if credential_free or b"cookie" in headers:
                _same_site(scope, headers)
            if not credential_free:
                _session_credential(scope, headers)
        except ApiError as refused:
            await error_response(refused, request_id, scope["path"])(
                scope, receive, with_request_id
            )
            return
        # a sign-in's password is a credential too: its failures count per address
        credentialed = b"authorization" in headers or credential_free
        if credentialed and self.throttle.blocked:
            try:
                self.throttle.check(client, headers.get(b"authorization", b"").decode("latin-1"))
            except ApiError as refused:
                await error_response(refused, request_id, scope["path"])(
                    scope, receive, with_request_id
                )
                return
        if (
            _has_body(headers)
            and not scope["path"].startswith(OPERATOR_PREFIX)
            and not credential_free
        ):
            try:
                authorization = headers.get(b"authorization")
                await self.admit(authorization.decode("latin-1") if authorization else None)
            except ApiError as refused:
                if refused.kind.http_status == 401 and credentialed:
                    self.throttle.failed(client)
                await error_response(refused, request_id, scope["path"])(
                    scope, receive, with_request_id
                )
                return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > limit:
                raise too_large
            return message

        try:
            await self.app(scope, limited, with_request_id)
        finally:
            if status == 401 and credentialed:
                self.throttle.failed(client)
            route = scope.get("route")
            path = getattr(route, "path", "unmatched")
            HTTP_REQUESTS.labels(scope["method"], path, str(status)).inc()
            HTTP_LATENCY.labels(scope["method"], path).observe(time.perf_counter() - started)

    def _client(self, scope: Scope, headers: dict[bytes, bytes]) -> str:
        peer = scope["client"][0] if scope.get("client") else ""
        forwarded = headers.get(b"x-forwarded-for")
        return self.throttle.client(peer, forwarded.decode("latin-1") if forwarded else None)


def _session_credential(scope: Scope, headers: dict[bytes, bytes]) -> None:
    """The session cookie as the request's bearer credential, where no Authorization
    header says otherwise; a state change must carry the session's CSRF token (another
    site can send the cookie's request, never read or compute the token)."""
    if b"authorization" in headers or not scope["path"].startswith(COOKIE_PREFIX):
        return
    token = _cookie(headers.get(b"cookie", b""), sessions.SESSION_COOKIE)
    if token is None:
        return
    if scope["method"] not in _SAFE_METHODS:
        presented = headers.get(b"x-csrf-token", b"").decode("latin-1")
        if not presented or not csrf_matches(token, presented):
            raise ApiError(E.CSRF_FAILED)
    value = b"Bearer " + token.encode("latin-1")
    scope["state"]["session_cookie"] = True
    headers[b"authorization"] = value
    scope["headers"] = [*scope["headers"], (b"authorization", value)]


def _same_site(scope: Scope, headers: dict[bytes, bytes]) -> None:
    """A state change that a browser says came from another site is refused (sign-in
    forms and cookie-carrying calls: login CSRF and CSRF); clients that are not
    browsers send no such headers and pass."""
    if scope["method"] in _SAFE_METHODS:
        return
    if headers.get(b"sec-fetch-site") == b"cross-site":
        raise ApiError(E.CSRF_FAILED)
    origin = headers.get(b"origin")
    if origin is not None:
        _, _, origin_host = origin.partition(b"://")
        if origin == b"null" or origin_host != headers.get(b"host", b""):
            raise ApiError(E.CSRF_FAILED)


def _cookie(header: bytes, name: str) -> str | None:
    for part in header.decode("latin-1").split(";"):
        key, sep, value = part.strip().partition("=")
        if sep and key == name and value:
            return value
    return None


def _has_body(headers: dict[bytes, bytes]) -> bool:
    length = headers.get(b"content-length")
    return b"transfer-encoding" in headers or (length is not None and length.strip() != b"0")
