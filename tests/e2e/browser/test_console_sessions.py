"""The product page's quickstart in the browser: sign up, see the sign-up credits and the
first key, sign out and back in; the refusals shown in words with their codes."""

from __future__ import annotations

import time

import pytest
from playwright.async_api import Page, expect

from tests.e2e.browser.watch import PageWatch
from tests.e2e.conftest import Platform

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

PASSWORD = "a long enough passphrase"


def new_email() -> str:
    return f"browser.{time.time_ns()}@example.com"


async def sign_up(page: Page, email: str) -> str:
    await page.goto("/signup")
    await page.get_by_label("Email").fill(email)
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Create account").click()
    await expect(page.get_by_role("heading", name="Welcome to PixelRelay")).to_be_visible()
    return (await page.locator("#first-key").text_content()) or ""


async def test_sign_up_shows_the_credits_and_the_first_key_once(
    page: Page, platform: Platform
) -> None:
    email = new_email()
    key = await sign_up(page, email)
    await expect(page.locator("#credits")).to_contain_text("2,000 credits ($2.000)")
    await expect(page.locator("#who")).to_contain_text(email)
    assert key.startswith("pr_live_")
    answer = await platform.http.get("/api/v1/account", headers=platform.auth(key))
    assert answer.json()["balance"] == 2000
    # the session lives in an HttpOnly cookie: no script of the page can read it
    assert "pr_sess_" not in await page.evaluate(
        "() => document.cookie + JSON.stringify(sessionStorage)"
    )


async def test_sign_out_and_back_in(page: Page) -> None:
    email = new_email()
    await sign_up(page, email)
    await page.get_by_role("button", name="Sign out").click()
    await expect(page).to_have_url("/login")
    await expect(page.locator("#who")).to_contain_text("Sign in")
    await page.locator("#login").get_by_label("Email").fill(email)
    await page.locator("#login").get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page).to_have_url("/dashboard")
    await expect(page.locator("#who")).to_contain_text(email)
    await expect(page.get_by_text("2,000")).to_be_visible()


async def test_a_wrong_password_and_a_taken_email_say_so_with_their_codes(
    page: Page, page_watch: PageWatch
) -> None:
    page_watch.expect_error_answer("/api/v1/auth/login", 401)
    page_watch.expect_error_answer("/api/v1/auth/signup", 409)
    email = new_email()
    await sign_up(page, email)
    await page.get_by_role("button", name="Sign out").click()
    await page.locator("#login").get_by_label("Email").fill(email)
    await page.locator("#login").get_by_label("Password").fill("not the password")
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("alert")).to_contain_text("(10008)")
    await page.goto("/signup")
    await page.get_by_label("Email").fill(email)
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Create account").click()
    error = page.locator("label:has(input[name=email]) + .field-error")
    await expect(error).to_contain_text("(20017)")


async def test_a_password_change_from_the_dashboard(page: Page, page_watch: PageWatch) -> None:
    page_watch.expect_error_answer("/api/v1/auth/password", 400)
    email = new_email()
    await sign_up(page, email)
    await page.goto("/dashboard")
    await page.get_by_label("Current password").fill("not it at all")
    await page.get_by_label("New password").fill("a new passphrase")
    await page.get_by_role("button", name="Change password").click()
    await expect(page.locator("#password-change .field-error")).to_contain_text("(20021)")
    await page.get_by_label("Current password").fill(PASSWORD)
    await page.get_by_label("New password").fill("a new passphrase")
    await page.get_by_role("button", name="Change password").click()
    await expect(page.get_by_text("Password changed.")).to_be_visible()
    # the new session works: the page can still act (CSRF token refreshed)
    await page.get_by_role("button", name="Sign out").click()
    await expect(page).to_have_url("/login")
