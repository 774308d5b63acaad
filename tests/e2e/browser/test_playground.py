"""The playground at / (a smoke test: the page itself is to be rebuilt)."""

from __future__ import annotations

import pytest
from playwright.async_api import Page, expect

from tests.e2e.conftest import Platform

pytestmark = [pytest.mark.e2e, pytest.mark.browser]


async def test_the_playground_loads_without_errors(page: Page) -> None:
    answer = await page.goto("/")
    assert answer is not None and answer.ok
    await expect(page.get_by_role("heading", name="PixelRelay playground")).to_be_visible()
    await expect(page.get_by_label("API key")).to_be_empty()
    await page.wait_for_load_state("networkidle")


async def test_the_estimate_follows_every_edit_and_the_key_stays_in_the_tab(
    page: Page, platform: Platform
) -> None:
    await page.goto("/")
    await page.get_by_label("API key").fill(platform.api_key)
    estimate = page.locator("#estimate")
    await expect(estimate).to_have_text("7 credits ($0.007)")  # basic, 1k
    await page.get_by_label("Resolution").select_option("2k")
    await expect(estimate).to_have_text("14 credits ($0.014)")
    await page.get_by_label("Model").select_option("gpt-image-2-official")
    await page.get_by_label("Quality").select_option("high")
    await page.get_by_label("Images").select_option("4")
    quote = (
        await platform.http.post(
            "/api/v1/images/estimate",
            headers=platform.auth(),
            json={
                "model": "gpt-image-2-official",
                "prompt": "a lighthouse at dawn",
                "size": "1:1",
                "resolution": "2k",
                "quality": "high",
                "output_format": "png",
                "background": "auto",
                "n": 4,
            },
        )
    ).json()["credits"]
    await expect(estimate).to_have_text(f"{quote} credits (${quote / 1000:.3f})")
    stored = await page.evaluate(
        "() => [localStorage.getItem('pixelrelay-key'), sessionStorage.getItem('pixelrelay-key')]"
    )
    assert stored == [None, platform.api_key]
