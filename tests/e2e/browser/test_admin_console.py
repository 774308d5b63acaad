"""The operator console at /admin: the token pasted, accounts, a top-up, channels, a task."""

from __future__ import annotations

import pytest
from playwright.async_api import Page, expect

from pixelrelay.ids import random_token
from tests.e2e.browser.watch import PageWatch
from tests.e2e.conftest import Platform
from tests.e2e.helpers import new_account, poll_until_done

pytestmark = [pytest.mark.e2e, pytest.mark.browser]


async def _sign_in(page: Page, token: str) -> None:
    await page.goto("/admin")
    await page.get_by_label("Admin token").fill(token)
    await page.get_by_role("button", name="Open the console").click()


async def test_a_wrong_token_is_refused_with_its_message(page: Page, page_watch: PageWatch) -> None:
    # the refusal itself is what Chromium reports: expected here
    page_watch.expect_error_answer("/admin/v1/accounts", 401)
    await _sign_in(page, "pxs_" + "x" * 40)
    await expect(page.get_by_role("alert")).to_contain_text("10003")
    await expect(page.get_by_label("Admin token")).to_be_visible()
    assert await page.evaluate("() => sessionStorage.getItem('pixelrelay-admin-token')") is None


async def test_an_operator_finds_an_account_and_tops_it_up(page: Page, platform: Platform) -> None:
    key = await new_account(platform, 100)
    account_id = (await platform.http.get("/api/v1/account", headers=platform.auth(key))).json()[
        "account_id"
    ]
    await _sign_in(page, platform.config.admin_token)
    await expect(page.get_by_role("tab", name="Accounts")).to_be_visible()
    await page.get_by_label("Search by name or id").fill(account_id)
    await page.get_by_role("button", name="Search", exact=True).click()
    rows = page.locator("#account-rows tr")
    await expect(rows).to_have_count(1)
    await rows.get_by_role("button").click()
    await expect(page.locator("#account-balance")).to_contain_text("100 credits")
    await page.get_by_label("Credits").fill("250")
    await page.get_by_label("Reason").fill(f"invoice {random_token(4)}")
    await page.get_by_role("button", name="Apply").click()
    await expect(page.locator("#moved")).to_contain_text("350 credits")
    balance = await platform.http.get("/api/v1/account", headers=platform.auth(key))
    assert balance.json()["balance"] == 350
    await expect(page.locator("#entry-rows tr").first).to_contain_text("invoice")
    await expect(page.locator("#key-rows tr")).to_have_count(1)


async def test_channels_and_a_task_lookup_at_phone_width(page: Page, platform: Platform) -> None:
    await page.set_viewport_size({"width": 375, "height": 800})
    submitted = await platform.http.post(
        "/api/v1/images/generations",
        headers=platform.auth(),
        json={"model": "gpt-image-2", "prompt": "a lighthouse", "resolution": "1k"},
    )
    task_id = submitted.json()["id"]
    await poll_until_done(platform.http, task_id, platform.auth())
    await _sign_in(page, platform.config.admin_token)
    await page.get_by_role("tab", name="Channels").click()
    await expect(page.locator("#channel-rows")).to_contain_text("simulator")
    await page.keyboard.press("ArrowRight")  # from Channels, by keyboard
    await expect(page.get_by_role("tab", name="Task lookup")).to_be_focused()
    await page.get_by_label("Task id").fill(task_id)
    await page.get_by_role("button", name="Look up").click()
    await expect(page.locator("#task")).to_contain_text(platform.account_id)
    await expect(page.locator("#task")).to_contain_text("completed")
