"""Headless Chromium for the report tests: Debian's ``/usr/bin/chromium`` through its ``chromedriver``
(never a downloaded browser), every host name unresolvable, and what a person would see of a page."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
ROOT = Path(__file__).parents[2]
#: Screenshots of every page the tests open: a test artifact a person can look at.
SCREENSHOTS = ROOT / "var" / "screenshots"
#: How long a page may take to build its tables with JavaScript.
DEADLINE_S = 20.0
ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # No network even where the machine has one: a page that fetches anything from a host fails visibly.
    "--host-resolver-rules=MAP * ~NOTFOUND",
    "--window-size=1400,1000",
)


def require_chromium() -> None:
    """Skip when Chromium or Selenium is missing, except in CI (``CI`` set), where that is a failure."""
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.is_file()]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("selenium (requirements.txt)")
    if not missing:
        return
    message = f"missing {', '.join(missing)}: apt-get install -y chromium chromium-driver (.ci/run does)"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(message)
    pytest.skip(message)


def start_chromium() -> Any:
    """A headless Chromium WebDriver with a fresh profile that keeps the browser console log."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in (*ARGS, f"--user-data-dir={tempfile.mkdtemp(prefix='krx-chromium-')}"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)


def open_page(driver: Any, path: Path) -> list[str]:
    """Load ``path`` from disk; returns the console errors left from the previous page (each page starts
    with an empty log)."""
    stale = errors(driver)
    driver.get(path.resolve().as_uri())
    return stale


def errors(driver: Any) -> list[str]:
    """The browser console's errors since the last call: failed loads, script errors."""
    return [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def wait_for(driver: Any, condition: Callable[[Any], Any], what: str) -> Any:
    """Wait up to ``DEADLINE_S`` for ``condition(driver)`` to be truthy; fail naming ``what``."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, DEADLINE_S).until(condition)
    except TimeoutException:
        pytest.fail(f"{what}: not there after {DEADLINE_S:g} s on {driver.current_url}")


def click(driver: Any, selector: str) -> bool:
    """Click the element at ``selector``; False while it is missing or being re-rendered (try again)."""
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException

    try:
        driver.find_element("css selector", selector).click()
    except (NoSuchElementException, StaleElementReferenceException):
        return False
    return True


def fonts_loaded(driver: Any) -> list[str]:
    """Families of the web fonts the page loaded, once every pending load has settled."""
    script = """
        const done = arguments[arguments.length - 1];
        document.fonts.ready.then(() => done(
            [...document.fonts].filter(f => f.status === 'loaded').map(f => f.family)));
    """
    families: list[str] = driver.execute_async_script(script)
    return families


def broken_images(driver: Any) -> list[str]:
    """Images that did not load (no pixels), by their source."""
    script = "return [...document.images].filter(i => !i.complete || i.naturalWidth === 0).map(i => i.src);"
    broken: list[str] = driver.execute_script(script)
    return broken


def screenshot(driver: Any, name: str) -> Path:
    """A PNG of the whole page (up to 8,000 px tall) under ``var/screenshots/``: the window is stretched
    to the page for the shot, so sticky headers and footers appear once."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    width, height = driver.get_window_size()["width"], driver.get_window_size()["height"]
    page_height = driver.execute_script("return document.documentElement.scrollHeight;")
    driver.set_window_size(width, min(max(page_height, height), 8000))
    try:
        path = SCREENSHOTS / f"{name}.png"
        path.write_bytes(driver.get_screenshot_as_png())
    finally:
        driver.set_window_size(width, height)
    return path
