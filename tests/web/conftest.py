"""Browser tests: the chat page at ``/`` in headless Chromium, driven by Playwright for Python.

Playwright's own browser download does not work on the target machines, so the tests launch
Debian's ``chromium`` (``scripts/install-chromium``, run by ``./scripts/test``, installs it with apt) through ``executable_path``;
``CHROMIUM_PATH`` names another binary. Without one the tests are skipped, saying so.

Every page records its console errors and uncaught exceptions, which fail the test unless the
test expects them (``console.expect``), and leaves a screenshot in ``tests/artifacts/web/``
(git-ignored) whether the test passed or not.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, expect, sync_playwright

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts" / "web"
EXPECT_TIMEOUT_MS = 20_000  # waits are for conditions; the bound only stops a hang

# Records every text the status bar shows (it can change faster than a poll would see).
STATUS_LOG_SCRIPT = """
window.__statusLog = [];
document.addEventListener("DOMContentLoaded", () => {
  const element = document.getElementById("status-text");
  if (element === null) return;  // another page (about:blank)
  const record = (mutations) => {
    for (const mutation of mutations) {
      for (const node of mutation.addedNodes) window.__statusLog.push(node.textContent);
    }
  };
  new MutationObserver(record).observe(element, {childList: true});
});
"""


def chromium_path() -> str | None:
    configured = os.environ.get("CHROMIUM_PATH")
    if configured:
        return configured
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    executable = chromium_path()
    if executable is None:
        pytest.skip(
            "Debian's chromium is not installed and could not be: scripts/install-chromium installs "
            "it with apt when run as root or with sudo (or set CHROMIUM_PATH)"
        )
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, headless=True)
        try:
            yield launched
        finally:
            launched.close()


@dataclass
class ConsoleRecord:
    """Console errors and uncaught exceptions of the test's pages."""

    errors: list[str] = field(default_factory=list)
    expected: list[re.Pattern[str]] = field(default_factory=list)

    def expect(self, pattern: str) -> None:
        """Console errors matching ``pattern`` are what the test provokes (a 401, a drop)."""
        self.expected.append(re.compile(pattern))

    def unexpected(self) -> list[str]:
        return [e for e in self.errors if not any(p.search(e) for p in self.expected)]

    def watch(self, page: Page) -> None:
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.errors.append(f"pageerror: {error}"))

    def _console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            location = message.location.get("url", "")
            self.errors.append(f"console: {message.text} [{location}]")


@pytest.fixture
def console() -> ConsoleRecord:
    return ConsoleRecord()


@pytest.fixture
def open_page(
    browser: Browser, console: ConsoleRecord, request: pytest.FixtureRequest
) -> Iterator[Callable[[str], Page]]:
    """Opens the page at a URL in a fresh browser context (its own sessionStorage)."""
    pages: list[Page] = []

    def open_at(url: str) -> Page:
        context = browser.new_context(viewport={"width": 900, "height": 900})
        context.set_default_timeout(EXPECT_TIMEOUT_MS)
        context.add_init_script(STATUS_LOG_SCRIPT)
        page = context.new_page()
        console.watch(page)
        page.goto(url)
        # Not wait_for_function: its polling evaluates strings, which the page's CSP forbids.
        expect(page.locator("html")).to_have_attribute("data-ready", "true")
        page.wait_for_load_state("networkidle")
        pages.append(page)
        return page

    yield open_at
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for index, page in enumerate(pages):
        name = re.sub(r"[^A-Za-z0-9_.-]", "_", request.node.name)
        page.screenshot(path=ARTIFACTS / f"{name}-{index}.png", full_page=True)
        page.context.close()
    assert console.unexpected() == [], "console errors on the page"


def status_log(page: Page) -> list[str]:
    log: list[str] = page.evaluate("window.__statusLog")
    return log
