"""The console's pages: one header for all, defined in pages.py, marked in each page."""

from __future__ import annotations

import re
from pathlib import Path

from gateway.http import pages

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
