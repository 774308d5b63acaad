"""What a page did wrong while a browser test drove it: console errors, uncaught
exceptions, gateway answers without a content security policy, requests that leave this
machine (the pages must work air-gapped)."""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlsplit

from playwright.async_api import ConsoleMessage, Error, Page, Request, Response

# The platform's processes all listen on loopback; anything else is a third-party origin.
_THIS_MACHINE = {"127.0.0.1", "localhost", "::1"}


@dataclass
class PageWatch:
    gateway: str  # the gateway's origin, e.g. http://127.0.0.1:18080
    problems: list[str] = field(default_factory=list)

    def attach(self, page: Page) -> None:
        page.on("console", self._console)
        page.on("pageerror", self._page_error)
        page.on("request", self._request)
        page.on("response", self._response)

    def _console(self, message: ConsoleMessage) -> None:
        # Chromium reports CSP violations and failed loads (4xx/5xx) as console errors too.
        if message.type == "error":
            where = message.location.get("url", "")
            self.problems.append(f"console error: {message.text} ({where})")

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
