"""Headless Chromium (Debian's package) driven by Playwright, with a log of every request.

Never ``playwright install``: scripts/install-browser puts /usr/bin/chromium in place.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest

CHROMIUM = Path(os.environ.get("ASTROPT_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--no-sandbox",  # runs as root in containers
    "--disable-background-networking",  # no update checks, safe-browsing lists, ...
    "--disable-component-update",
    "--disable-default-apps",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
    "--metrics-recording-only",
]
REPO = Path(__file__).resolve().parents[2]


def require_chromium() -> None:
    """Skip where no browser is installed, except in CI where .ci/run installs one."""
    if CHROMIUM.is_file():
        return
    message = f"{CHROMIUM} is missing: run scripts/install-browser"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@dataclass
class NetworkLog:
    """Every request a page made; ``outside(base_url)`` lists those that left the server."""

    urls: list[str] = field(default_factory=list)

    def outside(self, base_url: str) -> list[str]:
        origin = urlsplit(base_url).netloc
        return [
            url
            for url in self.urls
            if not url.startswith(("data:", "blob:", "about:")) and urlsplit(url).netloc != origin
        ]


def artifact_dir(name: str) -> Path:
    """Screenshots go to test-artifacts/<name>/ in the repository (git-ignored)."""
    folder = REPO / "test-artifacts" / re.sub(r"[^A-Za-z0-9_.-]+", "_", name)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@contextmanager
def chromium_page(
    network: NetworkLog | None = None, width: int = 1280, height: int = 900
) -> Iterator:
    from playwright.sync_api import sync_playwright

    require_chromium()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            # bypass_csp: Playwright's wait_for_function polls with eval, which the pages'
            # Content-Security-Policy (script-src 'self') forbids; the network log still
            # proves that nothing is fetched from elsewhere.
            page = browser.new_page(viewport={"width": width, "height": height}, bypass_csp=True)
            page.set_default_timeout(60_000)
            if network is not None:
                page.on("request", lambda request: network.urls.append(request.url))
            yield page
        finally:
            browser.close()
