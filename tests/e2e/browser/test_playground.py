"""The playground at /: the served models and each one's fields and rules (the packaged
two, and one the test adds to the served list), the live estimate and the price table,
references and a painted mask, submit → status → gallery → history, the request as code,
and errors beside their field (a failed model list too)."""

from __future__ import annotations

import io
import re
from typing import Any

import httpx
import pytest
from PIL import Image
from playwright.async_api import FilePayload, Locator, Page, Route, expect

from tests.e2e.browser.conftest import _WATCH, screenshot_of
from tests.e2e.browser.test_console_sessions import new_email, sign_up
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
    # the served list is unknown too: the packaged models, said so (the error is the key's)
    await expect(page.locator("#models-note")).to_contain_text("The key was refused")
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


# gpt-image-1 as GET /api/v1/models would list it had the operator added it (docs/
# operations.md): three ratios at 1k only, up to 4 images, quality tiers, no mask, at most
# 4 references. The platform under test does not serve it: the test answers the list and
# the estimates for it.
GPT_IMAGE_1 = {
    "id": "gpt-image-1",
    "object": "model",
    "created": 1745366400,
    "owned_by": "pixelrelay",
    "description": "GPT Image 1: square or 3:2 at about 1 megapixel",
    "aliases": ["gpt-image-1-latest"],
    "capabilities": {
        "max_n": 4,
        "sizes": "ratios",
        "ratios": ["1:1", "3:2", "2:3"],
        "resolutions": ["1k"],
        "qualities": ["auto", "low", "medium", "high"],
        "backgrounds": ["auto", "opaque", "transparent"],
        "moderations": ["auto", "low"],
        "formats": ["png", "jpeg", "webp"],
        "output_compression": True,
        "masks": False,
        "max_references": 4,
        "partial_images": True,
    },
    "auto_quoted_as": "high",
    "prices": [
        {"id": "gpt-image-1-low", "credits": 11, "resolutions": None, "qualities": ["low"]},
        {"id": "gpt-image-1-medium", "credits": 42, "resolutions": None, "qualities": ["medium"]},
        {"id": "gpt-image-1-high", "credits": 167, "resolutions": None, "qualities": ["high"]},
    ],
}
GPT_IMAGE_1_CREDITS = {"auto": 167, "low": 11, "medium": 42, "high": 167}
CSP = {"content-security-policy": "default-src 'none'"}


async def serve_gpt_image_1(page: Page) -> list[dict[str, Any]]:
    """The served list with gpt-image-1 added, and its estimates answered here (priced as
    its rows say); → the estimate bodies asked for it."""
    asked: list[dict[str, Any]] = []

    async def models(route: Route) -> None:
        served = await route.fetch()
        listing = await served.json()
        listing["data"].append(GPT_IMAGE_1)
        await route.fulfill(response=served, json=listing)

    async def estimate(route: Route) -> None:
        body: dict[str, Any] = route.request.post_data_json or {}
        if body.get("model") != "gpt-image-1":
            await route.fallback()
            return
        asked.append(body)
        n, quality = body.get("n", 1), body.get("quality", "auto")
        unit = GPT_IMAGE_1_CREDITS[quality]
        params = {"size": body["size"], "resolution": "1k", "width": 1024, "height": 1024}
        quote = {
            "model": "gpt-image-1",
            "credits": unit * n,
            "unit_credits": unit,
            "params": {**params, "n": n, "quality": quality, "output_format": "png"},
        }
        await route.fulfill(json=quote, headers=CSP)

    await page.route("**/api/v1/models", models)
    await page.route("**/api/v1/images/estimate", estimate)
    return asked


async def option_values(select: Locator) -> list[str]:
    values: list[str] = await select.locator("option").evaluate_all(
        "options => options.map(o => o.value)"
    )
    return values


async def test_the_form_follows_the_capabilities_of_a_model_the_server_lists(
    page: Page, platform: Platform
) -> None:
    asked = await serve_gpt_image_1(page)
    await open_with_key(page, platform.api_key)
    model = field(page, "Model")
    # every served model, with its description; the list is the server's, no note
    await expect(model.locator("option")).to_have_count(3)
    await expect(model.locator("option[value='gpt-image-1']")).to_have_text(
        "gpt-image-1: GPT Image 1: square or 3:2 at about 1 megapixel"
    )
    await expect(page.locator("#models-note")).to_be_hidden()
    assert await option_values(field(page, "Show model")) == [
        "",
        "gpt-image-2",
        "gpt-image-2-official",
        "gpt-image-1",
    ]

    await model.select_option("gpt-image-1")
    # only its ratios (no WIDTHxHEIGHT), only 1k, up to 4 images, its qualities
    assert await option_values(field(page, "Size")) == ["auto", "1:1", "3:2", "2:3"]
    assert await option_values(field(page, "Resolution")) == ["1k"]
    assert await option_values(field(page, "Images")) == ["1", "2", "3", "4"]
    assert await option_values(field(page, "Quality")) == ["auto", "low", "medium", "high"]
    for label in STABLE_ONLY:
        await expect(field(page, label)).to_be_visible()
    await expect(page.locator("#rules")).to_contain_text(
        "gpt-image-1 makes up to 4 images per task from one of the ratios 1:1, 3:2, 2:3 at 1k"
    )
    await expect(page.locator("#rules")).to_contain_text(
        "a mask and WIDTHxHEIGHT sizes need gpt-image-2-official"
    )
    # its prices beside the estimate, the row charged marked
    prices = page.locator("#prices")
    await expect(prices.locator("caption")).to_have_text("gpt-image-1: credits per image")
    await expect(prices.locator("tbody tr")).to_have_count(3)
    await field(page, "Quality").select_option("medium")
    await field(page, "Images").select_option("3")
    await expect(page.locator("#estimate")).to_have_text("126 credits ($0.126)")
    await expect(prices.locator("tr.current")).to_contain_text("medium")
    assert asked[-1] == {
        "model": "gpt-image-1",
        "prompt": "a lighthouse at dawn",
        "size": "1:1",
        "resolution": "1k",
        "n": 3,
        "quality": "medium",
        "background": "auto",
        "moderation": "auto",
        "output_format": "png",
    }

    # a reference, and no mask painter: it takes none; at most 4 references
    await expect(page.locator("#ref-count")).to_have_text("0 of 4")
    await page.get_by_label("Add reference files").set_input_files(
        files=[FilePayload(name="ref.png", mimeType="image/png", buffer=png(640, 480))]
    )
    await expect(page.locator("#ref-count")).to_have_text("1 of 4")
    await expect(page.locator("#mask-section")).to_be_hidden()
    # the same reference on gpt-image-2-official gets the painter
    await model.select_option("gpt-image-2-official")
    await expect(page.locator("#mask-section")).to_be_visible()
    await expect(page.locator("#ref-count")).to_have_text("1 of 16")
    await model.select_option("gpt-image-1")
    await expect(page.locator("#mask-section")).to_be_hidden()

    # the request as code names the model chosen, with its fields
    await page.get_by_role("button", name="Copy as reAPI JSON").click()
    snippet = page.locator("#snippet")
    await expect(snippet).to_contain_text('"model": "gpt-image-1"')
    await expect(snippet).to_contain_text('"n": 3')
    await page.get_by_role("button", name="Copy as curl").click()
    await expect(snippet).to_contain_text('"model":"gpt-image-1"')
    await page.get_by_role("button", name="Copy as Python (openai SDK)").click()
    await expect(snippet).to_contain_text('model="gpt-image-1"')

    # back on basic: its own rules again, and the note names who takes what it lacks
    await model.select_option("gpt-image-2")
    for label in [*STABLE_ONLY, "Compression (0-100)"]:
        await expect(field(page, label)).to_be_hidden()
    assert "custom" not in await option_values(field(page, "Size"))
    assert await option_values(field(page, "Resolution")) == ["1k", "2k", "4k"]
    await expect(page.locator("#rules")).to_contain_text(
        "more images, quality, background, format, compression and moderation need "
        "gpt-image-2-official or gpt-image-1; a mask and WIDTHxHEIGHT sizes need "
        "gpt-image-2-official."
    )
    await expect(page.locator("#estimate")).to_have_text("7 credits ($0.007)")
    await model.select_option("gpt-image-1")
    await expect(page.locator("#estimate")).to_have_text("126 credits ($0.126)")
    await page.screenshot(path=screenshot_of("playground_served_model_gpt_image_1"), full_page=True)


async def test_a_model_list_that_fails_says_so_with_a_retry(
    page: Page, platform: Platform, request: pytest.FixtureRequest
) -> None:
    async def refused(route: Route) -> None:
        error = {"error": {"code": "50001", "type": "server_error", "message": "catalog down"}}
        await route.fulfill(status=503, json=error, headers=CSP)

    await page.route("**/api/v1/models", refused)
    await open_with_key(page, platform.api_key)
    note = page.locator("#models-note")
    await expect(note).to_contain_text("The served models could not be read: catalog down (50001)")
    await expect(note).to_contain_text("the form follows the packaged models")
    # the packaged ones meanwhile, said so: the estimate still works
    await expect(page.locator("#estimate")).to_have_text("7 credits ($0.007)")
    await expect(page.locator("#prices tr.current")).to_contain_text("1k")
    await page.screenshot(path=screenshot_of("playground_model_list_failed"), full_page=True)
    await page.unroute("**/api/v1/models")
    await note.get_by_role("button", name="Retry").click()
    await expect(note).to_be_hidden()
    await expect(field(page, "Model").locator("option")).to_have_count(2)
    expect_failed_loads(request, 503)


async def test_before_signing_in_the_packaged_models_are_said_to_be_so(page: Page) -> None:
    await page.goto("/")
    note = page.locator("#models-note")
    await expect(note).to_contain_text("The packaged models: this server may serve others.")
    await expect(note.get_by_role("link", name="Sign in")).to_have_attribute("href", "/login")
    await expect(field(page, "Model").locator("option")).to_have_count(2)


async def test_signed_in_the_served_models_are_read_with_the_session(page: Page) -> None:
    await sign_up(page, new_email())
    async with page.expect_response("**/api/v1/models") as listed:
        await page.goto("/")
    assert (await listed.value).ok
    await expect(page.locator("#key-row")).to_be_hidden()
    await expect(field(page, "Model").locator("option")).to_have_count(2)
    await expect(page.locator("#models-note")).to_be_hidden()
    await expect(page.locator("#estimate")).to_have_text("7 credits ($0.007)")
    await expect(page.locator("#prices tr.current")).to_contain_text("1k")
