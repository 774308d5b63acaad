"""What a page did wrong while a browser test drove it: console errors, uncaught
exceptions, gateway answers without a content security policy, requests that leave this
machine (the pages must work air-gapped)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from playwright.async_api import ConsoleMessage, Error, Page, Request, Response

# The platform's processes all listen on loopback; anything else is a third-party origin.
_THIS_MACHINE = {"127.0.0.1", "localhost", "::1"}
# How Chromium reports an HTTP error answer (or none: net::ERR_..., status 0 here) to
# fetch() on the console.
_FAILED_LOAD = re.compile(
    r"^Failed to load resource: (?:the server responded with a status of (\d{3})|net::ERR_)"
)
# console.js asks for the session on every page: a 401 is its "nobody is signed in" (a
# 404 until the gateway has the route), an answer the page expects, not a failure.
_SESSION_PROBE = ("/api/v1/auth/session", (401, 404))


@dataclass
class PageWatch:
    gateway: str  # the gateway's origin, e.g. http://127.0.0.1:18080
    problems: list[str] = field(default_factory=list)
    # (path, statuses): error answers the test provokes on purpose, e.g. a refused form
    expected: list[tuple[str, tuple[int, ...]]] = field(default_factory=lambda: [_SESSION_PROBE])

    def attach(self, page: Page) -> None:
        page.on("console", self._console)
        page.on("pageerror", self._page_error)
        page.on("request", self._request)
        page.on("response", self._response)

    def _console(self, message: ConsoleMessage) -> None:
        # Chromium reports CSP violations and failed loads (4xx/5xx) as console errors too.
        if message.type == "error":
            where = message.location.get("url", "")
            if self._expected(message.text, where):
                return
            self.problems.append(f"console error: {message.text} ({where})")

    def expect_error_answer(self, path: str, *statuses: int) -> None:
        """The page will get ``statuses`` from ``path`` on purpose: not a problem
        (0: no answer at all, e.g. a route the test aborts)."""
        self.expected.append((path, statuses))

    def _expected(self, text: str, url: str) -> bool:
        failed = _FAILED_LOAD.match(text)
        if failed is None:
            return False
        status, path = int(failed.group(1) or 0), urlsplit(url).path
        return any(path == p and status in statuses for p, statuses in self.expected)

    def _page_error(self, error: Error) -> None:
        self.problems.append(f"uncaught error: {error}")

    def _request(self, request: Request) -> None:
        url = urlsplit(request.url)
        if url.scheme in ("http", "https") and url.hostname not in _THIS_MACHINE:
            self.problems.append(f"request to another host: {request.method} {request.url}")

    def _response(self, response: Response) -> None:
        if not response.url.startswith(self.gateway + "/"):
            return  # the object store's images: not an answer of ours
        if "content-security-policy" not in response.headers:
            self.problems.append(f"no Content-Security-Policy: {response.status} {response.url}")
