"""What the console's browser tests share: Debian's Chromium, pages that fail a test on
any Content-Security-Policy violation or script error, screenshots and the sign-in form
(tests/integration/test_console_browser.py, test_console_pages_browser.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

from iotiam.testing import require

from .live_server import Server

CHROMIUM = "/usr/bin/chromium"
VIEWPORT = {"width": 1280, "height": 800}
#: the tablet sizes every console page is laid out for (issue 14): an iPad-class screen
TABLET = {"portrait": {"width": 768, "height": 1024},
          "landscape": {"width": 1024, "height": 768}}


def require_chromium() -> None:
    """Debian's Chromium and the playwright package are here (a skip, or a failure
    under IOTIAM_REQUIRE_INTEGRATION): checked before a module builds its fleet."""
    require(Path(CHROMIUM).exists(), f"{CHROMIUM} is missing (apt-get install chromium)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        require(False, "the playwright package is missing (pip install -e '.[dev]')")
        raise


@contextmanager
def chromium() -> Iterator[Any]:
    """Debian's Chromium driven by Playwright (``executable_path``; never
    ``playwright install``), closed on the way out."""
    require_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM,
                                             args=["--no-sandbox", "--disable-gpu"])
        try:
            yield browser
        finally:
            browser.close()


class BrowserWorld(Protocol):
    """A module's live server and browser, and where its screenshots go."""

    server: Server
    browser: Any
    shots: Path
    saved: list[Path]


def page_opener(world: BrowserWorld, record_property: Callable[[str, object], None]
                ) -> Iterator[Callable[..., Any]]:
    """For a fixture: ``make()`` opens a page in a fresh browser context (its own cookies),
    at 1280x800 unless ``make(viewport=...)`` says otherwise; after the test, the contexts
    close and any CSP violation or script error fails it (a 404 the test asked for with
    ``make(expect_404=True)`` aside)."""
    contexts: list[Any] = []
    problems: list[str] = []

    def make(*, expect_404: bool = False, viewport: dict[str, int] | None = None) -> Any:
        context = world.browser.new_context(ignore_https_errors=True,
                                            viewport=viewport or VIEWPORT,
                                            accept_downloads=True)
        contexts.append(context)
        page = context.new_page()

        def console_error(message: Any) -> None:
            # a page the test meant to be missing is logged by the browser as a failed load
            expected = expect_404 and "status of 404" in message.text
            if message.type == "error" and not expected:
                problems.append(message.text)

        page.on("console", console_error)
        page.on("pageerror", lambda e: problems.append(str(e)))
        return page

    yield make
    for context in contexts:
        context.close()
    record_property("screenshots", [str(p) for p in world.saved])
    assert not problems, problems


def shoot(world: BrowserWorld, page: Any, name: str) -> None:
    """Save a full-page screenshot of what the browser shows."""
    path = world.shots / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    world.saved.append(path)


def sign_in(world: BrowserWorld, page: Any, token: str | None = None) -> None:
    """Sign in through the form, as a person would."""
    page.goto(f"{world.server.api_url}/console/")
    assert "/console/sign-in" in page.url
    page.get_by_label("Admin token").fill(token or world.server.token)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_selector("h1:text('Overview')")


def heading(page: Any) -> str:
    """The page's one h1."""
    return str(page.locator("h1").inner_text())
