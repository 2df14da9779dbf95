"""Browser tests: headless Chromium (Debian's package) driven by Playwright, against
the services running as processes on real NATS and PostgreSQL (as in tests/e2e).

Without Chromium or Playwright these tests are skipped with a message saying how to
install them, unless PARKMATE_REQUIRE_BROWSER=1 (CI sets it), which makes that a failure.
Screenshots go to test-output/browser/.
"""

import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.e2e.conftest import SERVICES, System

CHROMIUM = os.environ.get("PARKMATE_CHROMIUM", "/usr/bin/chromium")
INSTALL = (
    "Browser tests need Chromium and the Playwright package: `apt-get install chromium` "
    "(Debian; or set PARKMATE_CHROMIUM to a Chromium binary) and "
    "`pip install -e '.[test]'`. Do not run `playwright install`: the tests use the "
    "system's Chromium."
)
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
OUTPUT = Path(__file__).resolve().parents[2] / "test-output" / "browser"


def _missing() -> str | None:
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed"
    if not (Path(CHROMIUM).exists() or shutil.which(CHROMIUM)):
        return f"no Chromium at {CHROMIUM}"
    return None


@pytest.fixture(scope="session")
def chromium_path() -> str:
    why = _missing()
    if why:
        if os.environ.get("PARKMATE_REQUIRE_BROWSER") == "1":
            pytest.fail(f"{why}. {INSTALL}")
        pytest.skip(f"{why}. {INSTALL}")
    return CHROMIUM


@pytest.fixture(autouse=True)
def _needs_chromium(chromium_path: str) -> None:
    """Skip (or fail) before any service is started for nothing."""


@pytest.fixture
def output() -> Path:
    OUTPUT.mkdir(parents=True, exist_ok=True)
    return OUTPUT


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


class Chromium:
    """One headless Chromium; `open` gives a page in a fresh context (its own storage,
    so two contexts are two browsers as far as the app can tell)."""

    def __init__(self, browser):
        self.browser = browser
        self.problems: list[str] = []

    async def open(self, url: str, width: int = 1280, height: int = 900):
        context = await self.browser.new_context(viewport={"width": width, "height": height})
        page = await context.new_page()
        page.on("pageerror", lambda e: self.problems.append(f"uncaught: {e}"))
        page.on("console", lambda m: self._console(m.type, m.text))
        await page.goto(url)
        return page

    def _console(self, kind: str, text: str) -> None:
        if kind == "error" and not _expected_console_error(text):
            self.problems.append(f"console: {text}")


@pytest.fixture
async def browser(chromium_path, request, output) -> AsyncIterator[Chromium]:
    """Pages opened through it record console errors and uncaught exceptions, which
    fail the test; on a failure every open page is saved as a screenshot."""
    from playwright.async_api import async_playwright

    for stale in output.glob(f"FAILED-{request.node.name}-*.png"):
        stale.unlink()
    async with async_playwright() as p:
        chromium = Chromium(await p.chromium.launch(executable_path=chromium_path, args=ARGS))
        try:
            yield chromium
            report = getattr(request.node, "report_call", None)
            if report is not None and report.failed:
                for i, context in enumerate(chromium.browser.contexts):
                    for j, page in enumerate(context.pages):
                        await page.screenshot(
                            path=str(output / f"FAILED-{request.node.name}-{i}-{j}.png"),
                            full_page=True,
                        )
            assert not chromium.problems, chromium.problems
        finally:
            await chromium.browser.close()


def _expected_console_error(text: str) -> bool:
    # Chromium logs failed requests and dropped sockets as console errors; a test that
    # stops the api causes them on purpose. Our own code logs nothing at error level.
    return "Failed to load resource" in text or "WebSocket connection to" in text


@pytest.fixture
async def system(nats_url, database_url, tmp_path) -> AsyncIterator[System]:
    s = System(nats_url, database_url, tmp_path)
    for name in SERVICES:
        s.start(name)
    try:
        await s.wait_ready()
        yield s
    finally:
        codes = s.shutdown()
    assert all(code == 0 for code in codes.values()), codes
