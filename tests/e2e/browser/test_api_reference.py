"""/docs, the API reference, rendered by a browser from the spec the gateway serves."""

from __future__ import annotations

import pytest
from playwright.async_api import Page, expect

from tests.e2e.conftest import Platform

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

_METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}


async def test_the_api_reference_lists_every_operation_of_the_spec(
    page: Page, platform: Platform
) -> None:
    spec = (await platform.http.get("/openapi.json")).json()
    assert spec["openapi"].startswith("3.1")  # what Swagger UI 4 could not read
    in_spec = {
        f"{method.upper()} {path}"
        for path, operations in spec["paths"].items()
        for method in operations
        if method in _METHODS
    }

    answer = await page.goto("/docs")
    assert answer is not None and answer.ok
    await expect(page.locator(".opblock").first).to_be_visible()
    rendered = await page.locator(".opblock").evaluate_all(
        """blocks => blocks.map(b =>
            b.querySelector('.opblock-summary-method').textContent + ' ' +
            b.querySelector('.opblock-summary-path').dataset.path)"""
    )

    assert "POST /api/v1/images/generations" in rendered
    assert "GET /api/v1/tasks/{task_id}" in rendered
    assert sorted(rendered) == sorted(in_spec)
    await expect(page.get_by_role("heading", name=spec["info"]["title"])).to_be_visible()
    await expect(page.get_by_text("Unable to render this definition")).to_have_count(0)


async def test_a_key_given_to_authorize_lets_try_it_out_call_the_api(
    page: Page, platform: Platform
) -> None:
    """The spec declares the bearer scheme, so the page can send a key (it could not when
    the key was an ignored `Authorization` header parameter)."""
    await page.goto("/docs")
    await page.get_by_role("button", name="Authorize").first.click()
    dialog = page.locator(".dialog-ux")
    await dialog.get_by_label("Value").fill(platform.api_key)
    await dialog.get_by_role("button", name="Apply credentials").click()
    await dialog.get_by_role("button", name="Close", exact=True).click()

    account = page.locator("#operations-account-get_account_api_v1_account_get")
    await account.locator(".opblock-summary").click()
    await account.get_by_role("button", name="Try it out").click()
    await account.get_by_role("button", name="Execute").click()
    response = account.locator(".responses-table.live-responses-table .response")
    await expect(response.locator(".response-col_status").first).to_have_text("200")
    await expect(response.locator(".microlight").first).to_contain_text(platform.account_id)
