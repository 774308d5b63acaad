"""The operator console at /admin: the token pasted, accounts, a top-up, channels, a task,
invite codes, an account's password-reset link, keys made for it and its usage."""

from __future__ import annotations

import re
import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from playwright.async_api import Page, Route, expect

from pixelrelay.ids import random_token
from tests.e2e.browser.watch import PageWatch
from tests.e2e.conftest import Platform, this_tests_address
from tests.e2e.helpers import admin, new_account, poll_until_done

pytestmark = [pytest.mark.e2e, pytest.mark.browser]


async def _sign_in(page: Page, token: str) -> None:
    await page.goto("/admin")
    await page.get_by_label("Admin token").fill(token)
    await page.get_by_role("button", name="Open the console").click()


async def _account_of(platform: Platform, key: str) -> str:
    answer = await platform.http.get("/api/v1/account", headers=platform.auth(key))
    account_id: str = answer.json()["account_id"]
    return account_id


async def _open_account(page: Page, account_id: str) -> None:
    await page.get_by_label("Search by name or id").fill(account_id)
    await page.get_by_role("button", name="Search", exact=True).click()
    rows = page.locator("#account-rows tr")
    await expect(rows).to_have_count(1)
    await rows.get_by_role("button").click()
    await expect(page.locator("#account-title")).to_contain_text(account_id)


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
    await expect(page.locator("#key-list tbody tr")).to_have_count(1)


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


async def test_invite_codes_are_issued_once_listed_and_revoked(
    page: Page, platform: Platform, page_watch: PageWatch
) -> None:
    page_watch.expect_error_answer("/admin/v1/invites", 400)
    note = f"for Ada {random_token(4)}"
    await _sign_in(page, platform.config.admin_token)
    await page.get_by_role("tab", name="Invite codes").click()
    form = page.locator("#invite-form")
    # a day already past: the API's refusal beside the field, with its code
    yesterday = time.strftime("%Y-%m-%d", time.localtime(time.time() - 86400))
    await form.get_by_label("Valid through").fill(yesterday)
    await form.get_by_role("button", name="Issue a code").click()
    refusal = form.locator("label:has(input[name=expires_at]) + .field-error")
    await expect(refusal).to_contain_text(re.compile(r"in the past \(\d+\)"))
    await expect(form.get_by_label("Valid through")).to_have_attribute("aria-invalid", "true")

    await form.get_by_label("Note").fill(note)
    await form.get_by_label("Valid through").fill("")
    await form.get_by_role("button", name="Issue a code").click()
    shown = page.get_by_role("region", name="New invite code")
    await expect(shown).to_contain_text("won't be shown again")
    await expect(shown.get_by_role("button", name="Copy code")).to_be_focused()
    code = (await page.locator("#new-invite-code").text_content()) or ""
    assert len(code) > 20
    await expect(refusal).to_have_count(0)
    row = page.locator("#invite-list tr", has_text=note)
    await expect(row).to_contain_text("unused")
    await expect(row).to_contain_text("never")
    await shown.get_by_role("button", name="Copy code").click()
    await expect(shown).to_contain_text(re.compile("Copied|copy it by hand"))

    await row.get_by_role("button", name=f"Revoke the invite “{note}”").click()
    await expect(row).to_contain_text("revoked")
    await expect(row.get_by_role("button")).to_have_count(0)
    listed = (await platform.http.get("/admin/v1/invites", headers=admin(platform))).json()
    (invite,) = [i for i in listed["data"] if i["note"] == note]
    assert invite["revoked_at"] is not None
    assert code not in str(listed)  # the code itself is never listed
    # a code still shown goes at sign-out
    await form.get_by_role("button", name="Issue a code").click()
    await expect(page.locator("#new-invite-code")).to_be_visible()
    await page.get_by_role("button", name="Sign out").click()
    await expect(page.locator("#new-invite-code")).to_have_count(0)
    await expect(page.get_by_label("Admin token")).to_be_focused()


async def test_a_password_reset_link_or_the_refusal_in_words(
    page: Page, platform: Platform, page_watch: PageWatch
) -> None:
    email = f"reset.{time.time_ns()}@example.com"
    async with httpx.AsyncClient(
        base_url=platform.config.base_url, headers={"x-forwarded-for": this_tests_address()}
    ) as person:
        signed_up = await person.post(
            "/api/v1/auth/signup", json={"email": email, "password": "a long enough passphrase"}
        )
    assert signed_up.status_code == 201, signed_up.text
    with_login = signed_up.json()["account_id"]
    await page.set_viewport_size({"width": 375, "height": 800})
    await _sign_in(page, platform.config.admin_token)
    await _open_account(page, with_login)
    await page.get_by_role("button", name="Password reset link").click()
    shown = page.get_by_role("region", name="Password reset link")
    await expect(shown).to_contain_text(email)
    await expect(shown).to_contain_text("valid until")
    await expect(shown.get_by_role("button", name="Copy link")).to_be_focused()
    url = (await page.locator("#reset-url").text_content()) or ""
    assert "/login?reset=" in url
    # the long link wraps at phone width: only tables scroll sideways
    assert await page.evaluate("() => document.documentElement.scrollWidth") <= 375

    # an account made through the API has no sign-in: the API's refusal, in words
    without = await _account_of(platform, await new_account(platform, 10))
    page_watch.expect_error_answer(f"/admin/v1/accounts/{without}/password-reset", 400, 404)
    await _open_account(page, without)
    await expect(page.locator("#reset-link")).to_be_empty()  # the other account's link is gone
    await page.get_by_role("button", name="Password reset link").click()
    await expect(page.locator("#reset .field-error")).to_contain_text(
        re.compile(r"no sign-in \(\d+\)")
    )


async def test_an_operator_makes_a_key_for_an_account_its_secret_shown_once(
    page: Page, platform: Platform
) -> None:
    account_id = await _account_of(platform, await new_account(platform, 100))
    await _sign_in(page, platform.config.admin_token)
    await _open_account(page, account_id)
    form = page.locator("#key-form")
    await form.get_by_label("Name", exact=True).fill("batch jobs")
    await form.get_by_label("Credit limit").fill("40")
    await form.get_by_label("Rate limit").fill("30")
    await form.get_by_label("billing:read").uncheck()
    await form.get_by_role("button", name="Create key").click()
    shown = page.get_by_role("region", name="New API key")
    await expect(shown).to_contain_text("you won't see it again")
    await expect(shown.get_by_role("button", name="Copy key")).to_be_focused()
    secret = (await page.locator("#new-key").text_content()) or ""
    assert secret.startswith("pr_live_")
    row = page.locator("#key-list tbody tr", has_text="batch jobs")
    await expect(row).to_contain_text("generate, read")
    await expect(row).to_contain_text("40")
    await expect(page.locator("#key-list tbody tr")).to_have_count(2)
    # the key is the account's, with what the form asked
    task = await platform.http.get("/api/v1/tasks/task_none", headers=platform.auth(secret))
    assert task.status_code == 404  # read: allowed (no such task)
    account = await platform.http.get("/api/v1/account", headers=platform.auth(secret))
    assert account.status_code == 403  # billing:read was not given
    keys = (
        await platform.http.get(f"/admin/v1/accounts/{account_id}/keys", headers=admin(platform))
    ).json()["data"]
    (made,) = [k for k in keys if k["name"] == "batch jobs"]
    assert (made["credit_limit"], made["rate_limit"]) == (40, 30)
    assert sorted(made["scopes"]) == ["generate", "read"]
    await shown.get_by_role("button", name="I have stored it: hide").click()
    await expect(page.locator("#new-key")).to_have_count(0)
    # and revoked from the same table
    await row.get_by_role("button", name="Revoke batch jobs").click()
    await expect(row).to_contain_text("revoked")
    listed = await platform.http.get(
        f"/admin/v1/accounts/{account_id}/keys", headers=admin(platform)
    )
    (revoked,) = [k for k in listed.json()["data"] if k["name"] == "batch jobs"]
    assert revoked["revoked_at"] is not None


async def test_an_accounts_usage_per_task_with_its_totals(page: Page, platform: Platform) -> None:
    key = await new_account(platform, 500)
    account_id = await _account_of(platform, key)
    submitted = await platform.http.post(
        "/api/v1/images/generations",
        headers=platform.auth(key),
        json={"model": "gpt-image-2", "prompt": "a harbour", "resolution": "1k"},
    )
    task_id = submitted.json()["id"]
    await poll_until_done(platform.http, task_id, platform.auth(key))
    line = (
        await platform.http.get(
            f"/admin/v1/accounts/{account_id}/usage/tasks", headers=admin(platform)
        )
    ).json()["data"][0]
    assert line["task_id"] == task_id
    await _sign_in(page, platform.config.admin_token)
    await _open_account(page, account_id)
    # the account's tabs by keyboard: Keys → Ledger → Usage
    await page.get_by_role("tab", name="Keys").focus()
    await page.keyboard.press("ArrowRight")
    await expect(page.get_by_role("tab", name="Ledger", exact=True)).to_be_focused()
    await expect(page.locator("#account-ledger")).to_be_visible()
    await page.keyboard.press("ArrowRight")
    await expect(page.get_by_role("tab", name="Usage")).to_have_attribute("aria-selected", "true")
    await expect(page.locator("#usage-rows tbody")).to_contain_text(task_id)
    await expect(page.locator("#usage-note")).to_contain_text("1 task from")
    foot = page.locator("#usage-rows tfoot")
    await expect(foot).to_contain_text("Total of 1 shown")
    await expect(foot.locator("td").nth(5)).to_have_text(f"{line['charged']:,}")
    await expect(page.locator("#usage-more")).to_be_hidden()
    # a period before the task: nothing
    await page.get_by_label("From").fill("2020-01-01")
    await page.get_by_label("To, inclusive").fill("2020-01-31")
    await page.get_by_role("button", name="Show").click()
    await expect(page.locator("#usage-note")).to_contain_text(
        "0 tasks from 2020-01-01 to 2020-01-31"
    )
    await expect(page.locator("#usage-rows")).to_contain_text("Nothing in this period.")
    await expect(page.locator("#usage-totals")).to_be_hidden()
    # no period at all: the whole history
    await page.get_by_label("From").fill("")
    await page.get_by_label("To, inclusive").fill("")
    await page.get_by_role("button", name="Show").click()
    await expect(page.locator("#usage-note")).to_contain_text("1 task from the start to now")
    await expect(page.locator("#usage-totals")).to_contain_text(f"{line['charged']:,} credits")


def _usage_line(task_id: str, created_at: int, charged: int) -> dict[str, Any]:
    return {
        "task_id": task_id, "created_at": created_at, "model": "gpt-image-2", "size": "1024x1024",
        "resolution": "1k", "n": 1, "quality": None, "reserved": charged, "charged": charged,
        "refunded": 1, "status": "completed", "price_id": "basic-1k",
    }  # fmt: skip


async def test_usage_asks_the_period_of_the_server_and_pages_on_at_phone_width(
    page: Page, platform: Platform
) -> None:
    await page.set_viewport_size({"width": 375, "height": 800})
    account_id = await _account_of(platform, await new_account(platform, 10))
    asked: list[dict[str, list[str]]] = []
    now = int(time.time())

    async def answer(route: Route) -> None:
        query = parse_qs(urlsplit(route.request.url).query)
        asked.append(query)
        more = "cursor" not in query
        lines = [_usage_line(f"task_{len(asked)}_{i}", now - i, 10) for i in range(3)]
        await route.fulfill(
            json={"data": lines, "next_cursor": "c2" if more else None},
            headers={"content-security-policy": "default-src 'none'"},
        )

    await page.route(f"**/admin/v1/accounts/{account_id}/usage/tasks?*", answer)
    await _sign_in(page, platform.config.admin_token)
    await _open_account(page, account_id)
    await page.get_by_role("tab", name="Usage").click()
    await page.get_by_label("From").fill("2026-03-01")
    await page.get_by_label("To, inclusive").fill("2026-03-02")
    await page.get_by_role("button", name="Show").click()
    await expect(page.locator("#usage-note")).to_contain_text(
        "3 tasks from 2026-03-01 to 2026-03-02"
    )
    since = int(time.mktime((2026, 3, 1, 0, 0, 0, 0, 0, -1)))
    until = int(time.mktime((2026, 3, 3, 0, 0, 0, 0, 0, -1)))
    assert (asked[-1]["since"], asked[-1]["until"]) == ([str(since)], [str(until)])
    await page.get_by_role("button", name="More").click()
    await expect(page.locator("#usage-note")).to_contain_text("6 tasks from")
    assert asked[-1]["cursor"] == ["c2"] and asked[-1]["since"] == [str(since)]
    await expect(page.locator("#usage-more")).to_be_hidden()
    foot = page.locator("#usage-rows tfoot td")
    await expect(foot.nth(5)).to_have_text("60")
    await expect(foot.nth(6)).to_have_text("6")
    await expect(page.locator("#usage-totals")).to_contain_text("60 credits")
    # both days blank: the whole history, no bounds asked
    await page.get_by_label("From").fill("")
    await page.get_by_label("To, inclusive").fill("")
    await page.get_by_role("button", name="Show").click()
    await expect(page.locator("#usage-note")).to_contain_text("from the start to now")
    assert "since" not in asked[-1] and "until" not in asked[-1]
    # the page fits the phone's width: only the tables scroll
    width = await page.evaluate("() => document.documentElement.scrollWidth")
    assert width <= 375


async def test_a_used_invite_leads_to_the_account_it_made(page: Page, platform: Platform) -> None:
    # the shared platform signs up openly (no invite used): the list is answered here
    account_id = await _account_of(platform, await new_account(platform, 10))
    now = int(time.time())
    used = {
        "id": "inv_used", "note": "for Grace", "created_at": now - 60, "expires_at": None,
        "revoked_at": None, "used_at": now - 30, "used_by": account_id,
    }  # fmt: skip

    async def answer(route: Route) -> None:
        if route.request.method != "GET":
            await route.continue_()
            return
        await route.fulfill(
            json={"data": [used]}, headers={"content-security-policy": "default-src 'none'"}
        )

    await page.route("**/admin/v1/invites", answer)
    await _sign_in(page, platform.config.admin_token)
    await page.get_by_role("tab", name="Invite codes").click()
    row = page.locator("#invite-list tbody tr", has_text="for Grace")
    await expect(row).to_contain_text("used")
    await expect(row.get_by_role("button", name="Revoke")).to_have_count(0)
    await row.get_by_role("button", name=account_id).click()
    await expect(page.get_by_role("tab", name="Accounts")).to_have_attribute(
        "aria-selected", "true"
    )
    await expect(page.locator("#account-title")).to_contain_text(account_id)
    await expect(page.locator("#account-balance")).to_contain_text("10 credits")
