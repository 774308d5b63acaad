"""The playground at /: each channel's fields and rules, the live estimate, references and
a painted mask, submit → status → gallery → history, the request as code, and errors
beside their field."""

from __future__ import annotations

import io
import re

import httpx
import pytest
from PIL import Image
from playwright.async_api import FilePayload, Locator, Page, expect

from tests.e2e.browser.conftest import _WATCH
from tests.e2e.conftest import Platform
from tests.e2e.helpers import admin

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

STABLE_ONLY = ["Images", "Quality", "Background", "Format", "Moderation"]


class _Problems(list[str]):
    """The page's problems, less the failed loads a test expects (Chromium logs a console
    error for every 4xx answer)."""

    # /api/v1/auth/session answers 404 until the session endpoints land (being built):
    # console.js then takes it as "no session", as it should
    expected = ["/api/v1/auth/session"]

    def append(self, problem: str) -> None:
        if "Failed to load resource" in problem and any(e in problem for e in self.expected):
            return
        super().append(problem)


@pytest.fixture
def page(page: Page, request: pytest.FixtureRequest) -> Page:
    watch = request.node.stash[_WATCH]
    watch.problems = _Problems(watch.problems)
    return page


def expect_failed_loads(request: pytest.FixtureRequest, status: int) -> None:
    problems = request.node.stash[_WATCH].problems
    problems.expected = [*problems.expected, f"status of {status}"]
    problems[:] = [p for p in problems if f"status of {status}" not in p]


def field(page: Page, label: str) -> Locator:
    # A label's name ends with its control's value ("Model gpt-image-2 (basic)"), and
    # "Images" is part of other labels: the name must start with the label's words.
    return page.get_by_label(re.compile("^" + re.escape(label) + r"(\s|$)"))


def png(width: int, height: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (40, 120, 200)).save(out, "PNG")
    return out.getvalue()


async def open_with_key(page: Page, key: str) -> None:
    await page.goto("/")
    await page.get_by_label("API key").fill(key)


async def test_the_playground_loads_and_basic_hides_what_it_cannot_do(page: Page) -> None:
    answer = await page.goto("/")
    assert answer is not None and answer.ok
    await expect(page.get_by_role("heading", name="PixelRelay playground")).to_be_visible()
    await expect(page.get_by_label("API key")).to_be_empty()
    for label in [*STABLE_ONLY, "Compression (0-100)"]:
        await expect(field(page, label)).to_be_hidden()
    await expect(page.locator("#rules")).to_contain_text("gpt-image-2-official")

    await field(page, "Model").select_option("gpt-image-2-official")
    for label in STABLE_ONLY:
        await expect(field(page, label)).to_be_visible()
    # compression applies to jpeg/webp only; transparent needs png or webp
    await expect(field(page, "Compression (0-100)")).to_be_hidden()
    await field(page, "Format").select_option("webp")
    await expect(field(page, "Compression (0-100)")).to_be_visible()
    await field(page, "Background").select_option("transparent")
    await expect(field(page, "Format").locator("option", has_text="jpeg")).to_be_disabled()
    # 4k only with a wide ratio
    await expect(field(page, "Resolution").locator("option", has_text="4k")).to_be_disabled()
    await field(page, "Size").select_option("16:9")
    await expect(field(page, "Resolution").locator("option", has_text="4k")).to_be_enabled()
    await page.wait_for_load_state("networkidle")


async def test_the_estimate_follows_every_edit_and_the_key_stays_in_the_tab(
    page: Page, platform: Platform
) -> None:
    await open_with_key(page, platform.api_key)
    estimate = page.locator("#estimate")
    await expect(estimate).to_have_text("7 credits ($0.007)")  # basic, 1k
    await field(page, "Resolution").select_option("2k")
    await expect(estimate).to_have_text("14 credits ($0.014)")
    await field(page, "Model").select_option("gpt-image-2-official")
    await field(page, "Quality").select_option("high")
    await field(page, "Images").select_option("4")
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


async def test_the_estimates_error_is_shown_beside_its_field(
    page: Page, platform: Platform, request: pytest.FixtureRequest
) -> None:
    await open_with_key(page, platform.api_key)
    await field(page, "Model").select_option("gpt-image-2-official")
    await field(page, "Size").select_option("custom")
    await field(page, "Width × height").fill("1000x1000")
    error = page.locator("label:has(#custom_size) + .field-error")
    await expect(error).to_contain_text("multiples of 16")
    await expect(error).to_contain_text("(20")  # the code, 2xxxx: an invalid request
    await field(page, "Width × height").fill("1536x1024")
    await expect(error).to_have_count(0)
    await expect(page.locator("#estimate")).to_contain_text("credits")
    expect_failed_loads(request, 400)


async def painted_task(page: Page, platform: Platform) -> str:
    """Submit on stable with an uploaded reference and a painted mask; the task's id."""
    await open_with_key(page, platform.api_key)
    await field(page, "Model").select_option("gpt-image-2-official")
    await field(page, "Quality").select_option("low")
    await field(page, "Images").select_option("2")
    await page.get_by_label("Add reference files").set_input_files(
        files=[FilePayload(name="ref.png", mimeType="image/png", buffer=png(640, 480))]
    )
    await expect(page.locator("#refs li")).to_have_count(1)
    await expect(page.locator("#refs")).to_contain_text("640×480")
    canvas = page.locator("#mask-stage canvas")
    await expect(canvas).to_be_visible()
    await page.wait_for_function("() => document.querySelector('#mask-stage img').complete")
    await canvas.scroll_into_view_if_needed()
    box = await canvas.bounding_box()  # in the viewport: the mouse only reaches there
    assert box is not None
    await page.mouse.move(box["x"] + box["width"] * 0.3, box["y"] + box["height"] * 0.3)
    await page.mouse.down()
    await page.mouse.move(box["x"] + box["width"] * 0.6, box["y"] + box["height"] * 0.5, steps=8)
    await page.mouse.up()
    await expect(page.locator("#mask-url")).to_be_empty()  # no longer "nothing painted"
    async with page.expect_request("**/api/v1/images/generations") as submitted:
        await page.get_by_role("button", name="Generate").click()
    sent = (await submitted.value).post_data_json
    assert sent and sent["mask_url"] and len(sent["image_urls"]) == 1, sent
    status = page.locator("#status")
    await expect(status).to_contain_text("completed", timeout=30_000)
    return await page.locator("#task-id").inner_text()


async def test_a_masked_edit_reaches_the_gallery_with_its_price_and_the_history(
    page: Page, platform: Platform
) -> None:
    task_id = await painted_task(page, platform)
    task = (await platform.http.get(f"/api/v1/tasks/{task_id}", headers=platform.auth())).json()
    assert task["status"] == "completed", task

    # the request carried the reference and a mask of its size, alpha 0 where painted
    assert len(task["params"]["image_urls"]) == 1 and task["params"]["mask_url"], task["params"]
    async with httpx.AsyncClient() as store:
        mask = Image.open(io.BytesIO((await store.get(task["params"]["mask_url"])).content))
    assert mask.format == "PNG" and mask.size == (640, 480)
    alpha = mask.convert("RGBA").getchannel("A")
    assert alpha.getpixel((5, 5)) == 255  # untouched: kept
    assert alpha.getpixel((int(640 * 0.45), int(480 * 0.4))) == 0  # painted: to edit

    # the gallery: each image with its size, format, price and a download link
    charged = task["credits"]["charged"]
    figures = page.locator("#gallery figure")
    await expect(figures).to_have_count(len(task["output"]["images"]))
    each = round(charged / len(task["output"]["images"]))
    first = task["output"]["images"][0]
    caption = f"{first['width']}×{first['height']} · {first['format']} · {each} credits"
    await expect(figures.first).to_contain_text(caption)
    await expect(figures.first.get_by_role("link", name="Download")).to_have_attribute(
        "href", first["url"]
    )
    await expect(page.locator("#charged")).to_have_text(
        f"{charged} credits (${charged / 1000:.3f})"
    )

    # the history lists it; clicking it shows its images again
    row = page.locator("#history li", has_text=task_id)
    await expect(row).to_have_count(1)
    await field(page, "Show model").select_option("gpt-image-2")
    await expect(row).to_have_count(0)
    await field(page, "Show model").select_option("gpt-image-2-official")
    await expect(row).to_have_count(1)
    await page.evaluate("() => document.getElementById('gallery').replaceChildren()")
    await row.get_by_role("button").click()
    await expect(figures).to_have_count(len(task["output"]["images"]))


async def test_copy_as_curl_has_the_endpoint_and_body_and_never_the_key(
    page: Page, platform: Platform
) -> None:
    await open_with_key(page, platform.api_key)
    await field(page, "Resolution").select_option("2k")
    await expect(page.locator("#estimate")).to_have_text("14 credits ($0.014)")
    await page.get_by_role("button", name="Copy as curl").click()
    snippet = page.locator("#snippet")
    await expect(snippet).to_contain_text("/api/v1/images/generations")
    text = await snippet.inner_text()
    assert '"model":"gpt-image-2"' in text and '"resolution":"2k"' in text, text
    assert "$PIXELRELAY_API_KEY" in text and platform.api_key not in text, text

    await page.get_by_role("button", name="Copy as Python (openai SDK)").click()
    text = await snippet.inner_text()
    assert "/v1" in text and "images.generate(" in text and 'size="2048x2048"' in text, text
    assert platform.api_key not in text
    await page.get_by_role("button", name="Copy as reAPI JSON").click()
    assert '"resolution": "2k"' in await snippet.inner_text()


async def test_a_bad_key_says_so_beside_the_key_field(
    page: Page, request: pytest.FixtureRequest
) -> None:
    await open_with_key(page, "pr_live_not_a_real_key")
    error = page.locator("label:has(#key) + .field-error")
    await expect(error).to_contain_text("(10002)")
    await expect(page.get_by_label("API key")).to_have_attribute("aria-invalid", "true")
    expect_failed_loads(request, 401)


async def test_too_few_credits_shows_the_price_and_the_balance(
    page: Page, platform: Platform, request: pytest.FixtureRequest
) -> None:
    account = await platform.http.post(
        "/admin/v1/accounts", headers=admin(platform), json={"name": "poor", "grant": 3}
    )
    assert account.status_code == 200, account.text
    key = await platform.http.post(
        f"/admin/v1/accounts/{account.json()['id']}/keys",
        headers=admin(platform),
        json={"name": "browser"},
    )
    assert key.status_code == 200, key.text
    await open_with_key(page, key.json()["api_key"])
    await expect(page.locator("#estimate")).to_have_text("7 credits ($0.007)")
    await page.get_by_role("button", name="Generate").click()
    error = page.locator("#form-error .field-error")
    await expect(error).to_contain_text("costs 7 credits")
    await expect(error).to_contain_text("balance is 3")
    await expect(error).to_contain_text("(30001)")
    expect_failed_loads(request, 402)


async def test_a_lost_connection_offers_a_retry(
    page: Page, platform: Platform, request: pytest.FixtureRequest
) -> None:
    request.node.stash[_WATCH].problems.expected.append("net::ERR_FAILED")  # the abort
    await page.route("**/api/v1/images/estimate", lambda route: route.abort())
    await open_with_key(page, platform.api_key)
    retry = page.get_by_role("button", name="Retry")
    await expect(page.locator("#banner")).to_contain_text("connection to PixelRelay was lost")
    await page.unroute("**/api/v1/images/estimate")
    await retry.click()
    await expect(page.locator("#estimate")).to_have_text("7 credits ($0.007)")
    await expect(page.locator("#banner")).to_be_empty()


async def test_the_playground_fits_a_phone(page: Page, platform: Platform) -> None:
    await page.set_viewport_size({"width": 375, "height": 800})
    await open_with_key(page, platform.api_key)
    await field(page, "Model").select_option("gpt-image-2-official")
    await expect(page.locator("#estimate")).to_contain_text("credits")
    wide = await page.evaluate("() => document.documentElement.scrollWidth")
    assert wide <= 375, f"the page is {wide} px wide at 375"
