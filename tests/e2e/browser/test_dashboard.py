"""The customer's dashboard at /dashboard: balance, usage per task (totals per day and per
model, a chart), the raw ledger, CSV downloads, and API keys; each test on an account of
its own, so its ledger holds only what the test did."""

from __future__ import annotations

import csv
import io
from typing import Any

import pytest
from playwright.async_api import Page, expect

from tests.e2e.conftest import Platform
from tests.e2e.helpers import admin, eventually, new_account, poll_until_done

pytestmark = [pytest.mark.e2e, pytest.mark.browser]


async def open_dashboard(page: Page, key: str) -> None:
    """The dashboard as someone who pasted ``key``."""
    await page.goto("/dashboard")
    await page.get_by_role("textbox", name="API key").fill(key)
    await page.get_by_role("button", name="Use this key").click()
    await expect(page.locator("#balance")).to_contain_text("credits")


async def generate(platform: Platform, key: str, **body: Any) -> dict[str, Any]:
    """A task submitted and polled through the API, as a client would: the finished task."""
    body = {"model": "gpt-image-2", "prompt": "a lighthouse at dawn", **body}
    submitted = await platform.http.post(
        "/api/v1/images/generations", headers=platform.auth(key), json=body
    )
    assert submitted.status_code == 200, submitted.text
    task = await poll_until_done(platform.http, submitted.json()["id"], platform.auth(key))
    assert task["status"] == "completed", task
    return task


async def account(platform: Platform, key: str) -> dict[str, Any]:
    answer = await platform.http.get("/api/v1/account", headers=platform.auth(key))
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


async def test_without_a_key_the_page_offers_to_paste_one_or_sign_in(page: Page) -> None:
    await page.goto("/dashboard")
    await expect(page.get_by_role("textbox", name="API key")).to_be_visible()
    await expect(page.locator("#signin").get_by_role("link", name="Sign in")).to_have_attribute(
        "href", "/login"
    )
    await expect(page.get_by_role("link", name="create an account")).to_have_attribute(
        "href", "/signup"
    )
    await expect(page.locator("#console")).to_be_hidden()


async def test_the_balance_and_held_credits(page: Page, platform: Platform) -> None:
    key = await new_account(platform, 1234)
    await open_dashboard(page, key)
    await expect(page.locator("#balance")).to_have_text("1,234 credits ($1.234)")
    await expect(page.locator("#held")).to_have_text("0 credits ($0.000)")
    stored = await page.evaluate(
        "() => [localStorage.getItem('pixelrelay-key'), sessionStorage.getItem('pixelrelay-key')]"
    )
    assert stored == [None, key]
