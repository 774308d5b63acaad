"""The customer's dashboard at /dashboard: balance, usage per task (totals per day and per
model, a chart), the raw ledger, CSV downloads, and API keys; each test on an account of
its own, so its ledger holds only what the test did."""

from __future__ import annotations

import csv
import io
import re
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from playwright.async_api import Locator, Page, Route, expect

from tests.e2e.browser.conftest import screenshot_of
from tests.e2e.browser.watch import PageWatch
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


def figure(text: str | None) -> int:
    """A count as the page writes it ("1,234", "+7", "-7")."""
    return int((text or "").replace(",", "").replace("+", ""))


async def column(page: Page, rows: str, index: int) -> list[int]:
    return [
        figure(t) for t in await page.locator(f"{rows} td:nth-child({index})").all_text_contents()
    ]


async def test_a_task_shows_in_the_usage_with_what_the_api_charged_and_the_totals_add_up(
    page: Page, platform: Platform
) -> None:
    key = await new_account(platform, 1000)
    basic = await generate(platform, key)
    stable = await generate(
        platform, key, model="gpt-image-2-official", quality="low", n=2, resolution="2k"
    )
    await open_dashboard(page, key)
    await expect(page.locator("#tasks-note")).to_contain_text("2 tasks from")

    for task in (basic, stable):
        row = page.locator("#tasks tbody tr", has_text=task["id"])
        cells = row.locator("td")
        await expect(cells.nth(1)).to_have_text(task["model"])
        await expect(cells.nth(5)).to_have_text(f"{task['credits']['charged']:,}")
        await expect(cells.nth(7)).to_have_text("completed")
        await expect(cells.nth(8)).to_have_text(task["credits"]["price_id"])
    await expect(page.locator("#tasks tbody tr").nth(1).locator("td").nth(2)).to_have_text(
        "1:1 · 1k × 1"
    )  # newest first: the basic task is the older one

    charged = basic["credits"]["charged"] + stable["credits"]["charged"]
    assert charged > 0
    for totals in ("#per-day", "#per-model"):
        assert sum(await column(page, f"{totals} tbody", 3)) == charged
        assert figure(await page.locator(f"{totals} tfoot td").nth(2).text_content()) == charged
        assert sum(await column(page, f"{totals} tbody", 2)) == 2
    assert await page.locator("#per-model tbody tr").count() == 2
    chart = page.get_by_role("img", name="Credits charged per day")
    await expect(chart).to_have_attribute("aria-label", re.compile(f": {charged:,} in all.$"))
    await expect(chart.locator("rect.bar")).to_have_count(1)  # both today
    await expect(page.locator("#balance")).to_have_text(
        f"{1000 - charged:,} credits (${(1000 - charged) / 1000:.3f})"
    )


async def test_the_ledger_is_a_tab_away(page: Page, platform: Platform) -> None:
    key = await new_account(platform, 300)
    task = await generate(platform, key)
    await open_dashboard(page, key)
    ledger_tab = page.get_by_role("tab", name="Ledger")
    await ledger_tab.click()
    await expect(ledger_tab).to_have_attribute("aria-selected", "true")
    await expect(page.get_by_role("tab", name="Per task")).to_have_attribute(
        "aria-selected", "false"
    )
    await expect(page.locator("#panel-tasks")).to_be_hidden()
    entries = (await platform.http.get("/api/v1/usage", headers=platform.auth(key))).json()["data"]
    rows = page.locator("#ledger tbody tr")
    await expect(rows).to_have_count(len(entries))
    for i, entry in enumerate(entries):
        cells = rows.nth(i).locator("td")
        await expect(cells.nth(1)).to_have_text(entry["kind"])
        assert figure(await cells.nth(3).text_content()) == entry["amount"]
    assert task["id"] in (await page.locator("#ledger").text_content() or "")
    # back with the keyboard
    await ledger_tab.press("ArrowLeft")
    await expect(page.locator("#panel-tasks")).to_be_visible()


async def test_csv_downloads_of_the_usage_and_the_ledger(page: Page, platform: Platform) -> None:
    key = await new_account(platform, 300)
    task = await generate(platform, key)
    account_id = (await account(platform, key))["account_id"]
    tricky = '=1+1, "quoted"\nsecond line'  # a comma, quotes, a line break, a formula
    adjusted = await platform.http.post(
        f"/admin/v1/accounts/{account_id}/adjustments",
        headers=admin(platform),
        json={"amount": 5, "reason": tricky},
    )
    assert adjusted.status_code == 200, adjusted.text
    await open_dashboard(page, key)
    await expect(page.locator("#tasks-note")).to_contain_text("1 task from")

    usage = await downloaded(page, "#tasks-csv")
    assert usage["name"].startswith("pixelrelay-usage-") and usage["name"].endswith(".csv")
    assert len(usage["rows"]) == 1
    line = usage["rows"][0]
    assert line["task_id"] == task["id"] and line["model"] == "gpt-image-2"
    assert int(line["charged"]) == task["credits"]["charged"]
    assert line["status"] == "completed" and line["price_id"] == task["credits"]["price_id"]

    await page.get_by_role("tab", name="Ledger").click()
    await expect(page.locator("#ledger tbody tr").first).to_be_visible()
    ledger = await downloaded(page, "#ledger-csv")
    memos = [r["memo"] for r in ledger["rows"]]
    assert "'" + tricky in memos  # one field, whole, shown as text by a spreadsheet
    entries = (await platform.http.get("/api/v1/usage", headers=platform.auth(key))).json()["data"]
    assert [int(r["amount"]) for r in ledger["rows"]] == [e["amount"] for e in entries]


async def downloaded(page: Page, button: str) -> dict[str, Any]:
    """Click ``button``; the file it saves: its name and its rows (by header)."""
    async with page.expect_download() as info:
        await page.locator(button).click()
    download = await info.value
    raw = (await download.path()).read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")  # UTF-8, said so for spreadsheets
    text = raw[3:].decode()
    assert "\r\n" in text
    return {"name": download.suggested_filename, "rows": list(csv.DictReader(io.StringIO(text)))}


async def test_a_key_is_created_its_secret_shown_once_then_revoked_with_its_children(
    page: Page, platform: Platform
) -> None:
    key = await new_account(platform, 100)
    await open_dashboard(page, key)
    form = page.locator("#key-form")
    await form.get_by_label("Name").fill('ci, "build"')
    await form.get_by_label("Credit limit").fill("50")
    await form.get_by_label("Rate limit").fill("30")
    await form.get_by_label("keys:manage").check()
    await form.get_by_role("button", name="Create key").click()

    notice = page.get_by_role("region", name="New API key")
    await expect(notice).to_contain_text("you won't see it again")
    secret = await page.locator("#new-key").text_content()
    assert secret and secret.startswith("pr_live_")
    await expect(notice.get_by_role("button", name="Copy key")).to_be_focused()
    assert (await account(platform, secret))["balance"] == 100  # the new key works
    row = key_row(page, 'ci, "build"')
    await expect(row).to_contain_text("active")
    await expect(row.locator("td").nth(6)).to_have_text("50")
    await expect(row.locator("td").nth(7)).to_have_text("30")

    # a key the new key made: the cascade's business
    child = await platform.http.post(
        "/api/v1/keys", headers=platform.auth(secret), json={"name": "child", "credit_limit": 10}
    )
    assert child.status_code == 200, child.text
    child_secret = child.json()["api_key"]

    await page.reload()  # shown once: not after a reload
    await expect(key_row(page, "child")).to_be_visible()
    await expect(page.locator("#new-key")).to_have_count(0)
    await page.get_by_role("button", name='Revoke ci, "build"').click()
    dialog = page.get_by_role("dialog")
    await expect(dialog).to_contain_text("It created 1 active key.")
    await dialog.get_by_label("Also revoke every key created from it").check()
    await dialog.get_by_role("button", name="Revoke").click()
    await expect(dialog).to_be_hidden()
    await expect(row).to_contain_text("revoked")
    await expect(key_row(page, "child")).to_contain_text("revoked")
    await expect(row.get_by_role("button")).to_have_count(0)

    await eventually(lambda: refused(platform, secret), "the revoked key refused")
    await eventually(lambda: refused(platform, child_secret), "its child refused too")


def key_row(page: Page, name: str) -> Locator:
    """The key's row, by the name in its first cell (others may name it as a parent)."""
    first = page.locator("td:first-child", has_text=re.compile(f"^{re.escape(name)}$"))
    return page.locator("#key-list tbody tr").filter(has=first)


async def refused(platform: Platform, key: str) -> bool:
    """Is ``key`` refused? (It may pass while the gateway's auth cache remembers it.)"""
    answer = await platform.http.get("/api/v1/account", headers=platform.auth(key))
    assert answer.status_code in (200, 401), answer.text
    return answer.status_code == 401


async def test_an_api_error_shows_beside_its_field_with_its_code(
    page: Page, platform: Platform, page_watch: PageWatch
) -> None:
    page_watch.expect_error_answer("/api/v1/keys", 400)
    key = await new_account(platform, 100)
    await open_dashboard(page, key)
    form = page.locator("#key-form")
    limit = form.get_by_label("Credit limit")
    await limit.fill("0")
    await form.get_by_role("button", name="Create key").click()
    error = form.locator(".field-error")
    await expect(error).to_have_count(1)
    await expect(error).to_contain_text("credit_limit")
    await expect(error).to_have_text(re.compile(r"\(\d+\)$"))  # the API's code
    # beside the field: right after its label
    beside = await error.evaluate("e => e.previousElementSibling.querySelector('input').name")
    assert beside == "credit_limit"
    await expect(limit).to_have_attribute("aria-invalid", "true")
    await expect(limit).to_be_focused()
    await expect(page.locator("#new-secret")).to_be_empty()
    await page.locator("#key-form").screenshot(path=screenshot_of("dashboard_field_error"))

    await limit.fill("5")
    await form.get_by_role("button", name="Create key").click()
    await expect(page.locator("#new-key")).to_be_visible()
    await expect(error).to_have_count(0)
    await expect(limit).not_to_have_attribute("aria-invalid", "true")


async def test_a_lost_connection_offers_a_retry(
    page: Page, platform: Platform, page_watch: PageWatch
) -> None:
    page_watch.expect_error_answer("/api/v1/account", 0)
    key = await new_account(platform, 100)
    await page.goto("/dashboard")
    await page.evaluate("key => sessionStorage.setItem('pixelrelay-key', key)", key)
    await page.route("**/api/v1/account", lambda route: route.abort())
    await page.reload()
    retry = page.get_by_role("button", name="Retry")
    await expect(page.get_by_role("alert")).to_contain_text("connection to PixelRelay was lost")
    await expect(page.locator("#tasks-note")).to_contain_text("0 tasks")  # the rest still works
    await page.screenshot(path=screenshot_of("dashboard_offline"))
    await page.unroute("**/api/v1/account")
    await retry.click()
    await expect(page.locator("#balance")).to_have_text("100 credits ($0.100)")
    await expect(retry).to_have_count(0)


async def test_at_phone_width_tables_scroll_inside_the_page(page: Page, platform: Platform) -> None:
    key = await new_account(platform, 100)
    await generate(platform, key)
    await page.set_viewport_size({"width": 375, "height": 800})
    await open_dashboard(page, key)
    await expect(page.locator("#tasks tbody tr")).to_have_count(1)
    await expect(page.locator("#key-list tbody tr")).to_have_count(1)
    page_width = await page.evaluate("document.documentElement.scrollWidth")
    assert page_width <= 375
    wide = await page.locator("#tasks").evaluate(
        "t => t.parentElement.scrollWidth > t.parentElement.clientWidth"
    )
    assert wide  # the table scrolls in its .table-wrap, the page does not
    chart = page.get_by_role("img", name="Credits charged per day")
    assert (await chart.bounding_box() or {"width": 999})["width"] <= 375


def usage_line(task_id: str, created_at: int) -> dict[str, Any]:
    return {
        "task_id": task_id,
        "created_at": created_at,
        "model": "gpt-image-2",
        "size": "1:1",
        "resolution": "1k",
        "n": 1,
        "quality": None,
        "reserved": 7,
        "charged": 7,
        "refunded": 0,
        "status": "completed",
        "price_id": "basic-1k",
    }


async def serve_usage_pages(
    page: Page, pages: Callable[[str], dict[str, Any]]
) -> list[dict[str, list[str]]]:
    """Answer /api/v1/usage/tasks with ``pages(cursor)``, its lines cut to the period
    asked (since/until) as the API does; → the queries asked, in order."""
    asked: list[dict[str, list[str]]] = []

    async def answer(route: Route) -> None:
        query = parse_qs(urlsplit(route.request.url).query)
        asked.append(query)
        page_ = pages(query.get("cursor", [""])[0])
        since, until = int(query["since"][0]), int(query["until"][0])
        page_["data"] = [r for r in page_["data"] if since <= r["created_at"] < until]
        # the headers every gateway answer has (the page watch checks them)
        headers = {"content-security-policy": "default-src 'none'"}
        await route.fulfill(json=page_, headers=headers)

    await page.route("**/api/v1/usage/tasks?*", answer)
    return asked


def local_midnight(day: str) -> int:
    return int(time.mktime(time.strptime(day, "%Y-%m-%d")))


async def test_the_period_is_asked_of_the_server_and_every_page_read(
    page: Page, platform: Platform
) -> None:
    now = int(time.time())
    recent = [usage_line(f"task_new{i}", now - i) for i in range(100)]
    older = [usage_line("task_day_ago", now - 86400)]
    asked = await serve_usage_pages(
        page,
        lambda cursor: (
            {"data": recent, "next_cursor": "p2"}
            if not cursor
            else {"data": older, "next_cursor": None}
        ),
    )
    await open_dashboard(page, await new_account(platform, 10))
    await expect(page.locator("#tasks-note")).to_contain_text("101 tasks from")
    assert [q.get("cursor", [""])[0] for q in asked] == ["", "p2"]
    today = time.strftime("%Y-%m-%d", time.localtime(now))
    month_ago = time.strftime("%Y-%m-%d", time.localtime(now - 29 * 86400))
    for query in asked:  # the default period, the last 30 days, on every page
        assert query["since"] == [str(local_midnight(month_ago))]
        assert query["until"] == [str(local_midnight(today) + 86400)]
    # a chosen period: yesterday alone
    asked.clear()
    yesterday = time.strftime("%Y-%m-%d", time.localtime(now - 86400))
    await page.get_by_label("From", exact=True).fill(yesterday)
    await page.get_by_label("To (inclusive)").fill(yesterday)
    await page.get_by_role("button", name="Show").click()
    await expect(page.locator("#tasks-note")).to_contain_text(f"1 task from {yesterday}")
    await expect(page.locator("#tasks tbody tr")).to_have_count(1)
    await expect(page.locator("#tasks")).to_contain_text("task_day_ago")
    assert asked[0]["since"] == [str(local_midnight(yesterday))]
    assert asked[0]["until"] == [str(local_midnight(today))]


async def test_a_busy_period_is_read_up_to_a_cap_and_says_so(
    page: Page, platform: Platform
) -> None:
    now = int(time.time())
    asked = await serve_usage_pages(
        page,
        lambda cursor: {
            "data": [usage_line(f"task_{cursor}_{i}", now - 10) for i in range(100)],
            "next_cursor": f"{cursor}x",
        },
    )
    await open_dashboard(page, await new_account(platform, 10))
    await expect(page.locator("#tasks-note")).to_contain_text("Only the newest 20 pages were read")
    await expect(page.locator("#tasks-note")).to_contain_text("2,000 tasks from")
    assert len(asked) == 20


async def test_a_pasted_key_that_stopped_working_is_forgotten_with_the_reason(
    page: Page, platform: Platform, page_watch: PageWatch
) -> None:
    for path in ("/api/v1/account", "/api/v1/usage/tasks", "/api/v1/keys"):
        page_watch.expect_error_answer(path, 401)
    key = await new_account(platform, 100)
    await open_dashboard(page, key)
    mine = (await platform.http.get("/api/v1/keys", headers=platform.auth(key))).json()["data"]
    revoked = await platform.http.delete(f"/admin/v1/keys/{mine[0]['id']}", headers=admin(platform))
    assert revoked.status_code == 200, revoked.text
    await eventually(lambda: refused(platform, key), "the revoked key refused")
    await page.reload()
    await expect(page.locator("#console")).to_be_hidden()
    await expect(page.locator("#key-paste .field-error")).to_contain_text("(")
    await expect(page.get_by_role("textbox", name="API key")).to_have_attribute(
        "aria-invalid", "true"
    )
    assert await page.evaluate("() => sessionStorage.getItem('pixelrelay-key')") is None
