"""The pages in a real browser (Debian's Chromium, headless) through nginx.

`make screenshots` writes the screenshots the README shows to docs/img/;
otherwise they go to a temporary folder.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from tests.compose_stack import Stack

Scheme = Literal["light", "dark"]
# This machine's network is closed: keep Chromium from reaching out at all.
FLAGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip


@pytest.fixture(scope="module")
def browser(chromium: Path) -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=FLAGS)
        yield browser
        browser.close()


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    return Path(os.environ.get("SCREENSHOTS_DIR") or tmp_path)


def open_page(browser: Browser, stack: Stack, scheme: Scheme = "light") -> tuple[Page, list[str]]:
    page = browser.new_page(color_scheme=scheme, viewport={"width": 900, "height": 600})
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    return page, requested


def count_on(page: Page) -> int:
    return int(page.locator("output").inner_text())


def test_welcome_page_links_to_the_counter(browser: Browser, stack: Stack, shots: Path) -> None:
    page, requested = open_page(browser, stack)
    page.goto(f"{stack.url}/")
    assert page.locator("html").get_attribute("lang") == "en"
    assert page.locator("h1").count() == 1
    page.get_by_role("link", name="Count my visit").click()
    page.wait_for_url(f"{stack.url}/count")
    assert count_on(page) > 0
    page.goto(f"{stack.url}/")
    page.screenshot(path=str(shots / "index.png"))
    assert all(url.startswith(stack.url) for url in requested), requested  # no CDN


def test_count_rises_on_reload_and_is_never_cached(
    browser: Browser, stack: Stack, shots: Path
) -> None:
    page, _ = open_page(browser, stack)
    response = page.goto(f"{stack.url}/count")
    assert response is not None
    assert response.headers["cache-control"] == "no-store"
    first = count_on(page)
    page.reload()
    assert count_on(page) == first + 1
    assert re.fullmatch(r"[0-9a-f]{12}", page.locator("footer code").inner_text())
    page.screenshot(path=str(shots / "count.png"))


def test_pages_work_without_javascript_in_light_and_dark(
    browser: Browser, stack: Stack, shots: Path
) -> None:
    backgrounds = {}
    for scheme in ("light", "dark"):
        context = browser.new_context(java_script_enabled=False, color_scheme=scheme)
        page = context.new_page()
        page.goto(f"{stack.url}/count")
        assert count_on(page) > 0
        backgrounds[scheme] = page.evaluate(
            "getComputedStyle(document.documentElement).backgroundColor"
        )
        if scheme == "dark":
            page.screenshot(path=str(shots / "count-dark.png"))
        context.close()
    assert backgrounds["light"] != backgrounds["dark"]


def luminance(rgb: str) -> float:
    channels = [int(c) / 255 for c in re.findall(r"\d+", rgb)[:3]]
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_text_contrast_meets_wcag_aa(browser: Browser, stack: Stack, scheme: Scheme) -> None:
    page, _ = open_page(browser, stack, scheme)
    page.goto(f"{stack.url}/count")
    pairs = page.evaluate(
        """() => [...document.querySelectorAll('p, a, h1, code, output')].map(e => {
            const clear = 'rgba(0, 0, 0, 0)';
            let bg = clear, n = e;
            while (n && bg === clear) {
                bg = getComputedStyle(n).backgroundColor;
                n = n.parentElement;
            }
            if (bg === clear) bg = getComputedStyle(document.documentElement).backgroundColor;
            return [e.tagName, getComputedStyle(e).color, bg];
        })"""
    )
    for tag, fg, bg in pairs:
        light, dark = sorted((luminance(fg), luminance(bg)), reverse=True)
        ratio = (light + 0.05) / (dark + 0.05)
        assert ratio >= 4.5, f"{tag} {fg} on {bg}: {ratio:.2f}"
