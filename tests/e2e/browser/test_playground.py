"""The playground at / (a smoke test: the page itself is to be rebuilt)."""

from __future__ import annotations

import pytest
from playwright.async_api import Page, expect

pytestmark = [pytest.mark.e2e, pytest.mark.browser]


async def test_the_playground_loads_without_errors(page: Page) -> None:
    answer = await page.goto("/")
    assert answer is not None and answer.ok
    await expect(page.get_by_role("heading", name="PixelRelay playground")).to_be_visible()
    await expect(page.get_by_label("API key")).to_be_empty()
    await page.wait_for_load_state("networkidle")
