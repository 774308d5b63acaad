"""Browser tests: Debian's Chromium (``/usr/bin/chromium``, never a browser Playwright
downloads) driven by Playwright against the end-to-end platform.

``page`` is a fresh browser context on the gateway. A test fails on any console error or
uncaught page error, any gateway answer without a Content-Security-Policy header and any
request to another host (``watch.py``); whatever the outcome, a screenshot of the page is
saved as ``screenshots/<test>.png`` (git-ignored) to look at.

Without Chromium the tests skip, unless ``PIXELRELAY_BROWSER_REQUIRED=1`` (CI sets it,
after installing it): then they fail.
"""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, async_playwright

from tests.e2e.browser.watch import PageWatch
from tests.e2e.conftest import Platform, this_tests_address

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",  # CI runs as root, where Chromium's sandbox cannot start
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    # no calls home (updates, sync, field trials): the tests run offline
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = Path(__file__).parent / "screenshots"

_WATCH = pytest.StashKey[PageWatch]()


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    """One Chromium per module: closed before the other e2e modules run, so its idle
    keep-alive connections to the shared gateway are gone when those count connections."""
    if not CHROMIUM.exists():
        missing = f"{CHROMIUM} is missing: apt-get install -y chromium"
        if os.environ.get("PIXELRELAY_BROWSER_REQUIRED") == "1":
            pytest.fail(missing)
        pytest.skip(missing)
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        yield browser
        await browser.close()


@pytest.fixture
async def page(
    browser: Browser, platform: Platform, request: pytest.FixtureRequest
) -> AsyncIterator[Page]:
    context = await browser.new_context(
        base_url=platform.config.base_url,
        viewport={"width": 1280, "height": 800},
        # the test's own client address, as the e2e tests' HTTP client claims
        extra_http_headers={"x-forwarded-for": this_tests_address()},
    )
    page = await context.new_page()
    watch = PageWatch(platform.config.base_url)
    watch.attach(page)
    request.node.stash[_WATCH] = watch
    try:
        yield page
    finally:
        SCREENSHOTS.mkdir(exist_ok=True)
        await page.screenshot(path=screenshot_of(request.node.name), full_page=True)
        await context.close()


@pytest.fixture
def page_watch(page: Page, request: pytest.FixtureRequest) -> PageWatch:
    """What ``page`` did wrong so far; tell it which error answers a test provokes."""
    watch: PageWatch = request.node.stash[_WATCH]
    return watch


def screenshot_of(test_name: str) -> Path:
    return SCREENSHOTS / (re.sub(r"[^\w.-]+", "_", test_name) + ".png")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    """A test that passed fails if its page misbehaved meanwhile; a failed one reports
    what the page did too, and where its screenshot is."""
    watch = item.stash.get(_WATCH, None)
    try:
        result = yield
    except BaseException:
        if watch is not None:
            found = "\n".join(watch.problems) or "nothing wrong seen"
            item.add_report_section(
                "call", "page", f"{found}\nscreenshot: {screenshot_of(item.name)}"
            )
        raise
    if watch is not None and watch.problems:
        raise AssertionError(
            "the page misbehaved:\n" + "\n".join(watch.problems) + f"\n({screenshot_of(item.name)})"
        )
    return result
