"""The console's pages: one header for all, defined in pages.py, marked in each page; the
playground's packaged models equal to the packaged catalog's listing."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from pixelrelay import catalog
from pixelrelay_gateway.core import models
from pixelrelay_gateway.http import pages, translate

STATIC = Path(pages.__file__).parent / "static"


def test_every_console_page_gets_the_one_header_with_its_own_link_current() -> None:
    for path, file in pages.PAGES.items():
        source = (STATIC / file).read_bytes()
        assert b"<header" not in source, f"{file}: the header comes from pages.py"
        if path == "/docs":
            assert pages.HEADER_MARK not in source  # Swagger UI's page has its own look
            continue
        html = pages.with_header(source, path).decode()
        assert html.count('<header class="top">') == 1, file
        assert '<span id="who"></span>' in html
        current = re.findall(r'<a href="([^"]+)" aria-current="page">', html)
        assert current == ([path] if path in dict(pages.NAV) else []), file


def test_the_header_is_markup_alone() -> None:
    header = pages.header("/dashboard").decode()
    assert "<script" not in header and " on" not in header
    assert '<a href="/dashboard" aria-current="page">Dashboard</a>' in header
    assert '<a href="/">Playground</a>' in header


def test_the_playgrounds_packaged_models_are_the_packaged_catalogs_listing() -> None:
    """What the playground shows before anyone signs in (said so on the page) is exactly
    what GET /api/v1/models lists with the packaged catalog. When catalog.yaml changes,
    regenerate it: PIXELRELAY_WRITE_PACKAGED=1 pytest tests/unit/gateway/test_pages.py"""
    listing = translate.model_list_json(models.listed(catalog.load(catalog.DEFAULT_CATALOG)))
    file = STATIC / "assets" / "playground-packaged.json"
    if os.environ.get("PIXELRELAY_WRITE_PACKAGED") == "1":
        file.write_text(json.dumps(listing, indent=1) + "\n")
    packaged = json.loads(file.read_text())
    assert packaged == listing, "playground-packaged.json is stale: regenerate it (see above)"


def test_json_assets_are_served_as_json() -> None:
    assert pages._assets()["playground-packaged.json"][1] == "application/json"
