"""Headless Chromium from Debian's packages, driven by Playwright, for the explorer's browser tests.

Skipped, with the way to enable them, where chromium or playwright is missing: ``make install``
(installs Debian's chromium where apt can, and playwright==1.65.2), or by hand
``apt-get install chromium`` and ``pip install playwright==1.65.2``; ``ATTNKIT_CHROMIUM`` points at
another chromium binary. No browser is downloaded at run time.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

#: the flags that keep chromium from reaching for a network it does not have (and from stalling on it)
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ENABLE = ("install Debian's chromium (apt-get install chromium) and playwright==1.65.2 (pip install "
          "playwright==1.65.2), or run `make install`; ATTNKIT_CHROMIUM=/path/to/chromium picks another binary")


def chromium_path() -> str | None:
    for cand in (os.environ.get("ATTNKIT_CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium"),
                 shutil.which("chromium-browser")):
        if cand and Path(cand).is_file() and os.access(cand, os.X_OK):
            return cand
    return None


def browser_missing() -> str | None:
    """Why the browser tests cannot run here (None when they can)."""
    if importlib.util.find_spec("playwright") is None:
        return f"the playwright package is not installed: {ENABLE}"
    if chromium_path() is None:
        return f"no chromium binary (looked at $ATTNKIT_CHROMIUM, /usr/bin/chromium, PATH): {ENABLE}"
    return None


@pytest.fixture(scope="session")
def browser_context(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    why = browser_missing()
    if why:
        pytest.skip(why)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        ctx = p.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")), executable_path=chromium_path(), headless=True,
            args=CHROMIUM_ARGS, viewport={"width": 1400, "height": 1000}, device_scale_factor=1)
        try:
            yield ctx
        finally:
            ctx.close()


class OpenedPage:
    """A report opened from disk with every request blocked: what was attempted and what the console said."""

    def __init__(self, page: Any, url: str) -> None:
        self.page, self.url = page, url
        self.requests: list[str] = []
        self.errors: list[str] = []

    def canvas_ink(self, canvas_id: str) -> int:
        """Pixels of a canvas that are not white."""
        return self.page.evaluate("""id => {
            const c = document.getElementById(id), d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            let n = 0; for (let i = 0; i < d.length; i += 4) if (d[i] < 250 || d[i+1] < 250 || d[i+2] < 250) n++;
            return n; }""", canvas_id)

    def canvas_image(self, canvas_id: str) -> str:
        return self.page.evaluate("id => document.getElementById(id).toDataURL()", canvas_id)


@pytest.fixture
def open_report(browser_context: Any) -> Iterator[Callable[[Path], OpenedPage]]:
    pages: list[Any] = []

    def opener(path: Path) -> OpenedPage:
        page = browser_context.new_page()
        pages.append(page)
        url = Path(path).resolve().as_uri()
        opened = OpenedPage(page, url)

        def route(r: Any) -> None:
            opened.requests.append(r.request.url)
            if r.request.url == url:
                r.continue_()
            else:
                r.abort()

        page.route("**/*", route)
        page.on("console", lambda m: opened.errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: opened.errors.append(str(e)))
        page.on("requestfailed", lambda r: opened.errors.append(f"request failed: {r.url}"))
        page.goto(url)
        page.wait_for_function("window.attnkit && window.attnkit.draws > 0", timeout=30_000)
        return opened

    yield opener
    for page in pages:
        page.close()
