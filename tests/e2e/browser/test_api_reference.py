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
