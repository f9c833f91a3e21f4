"""Headless Chromium from Debian's packages (``chromium``, ``chromium-driver``), driven by Selenium.

Tests that need it skip with a visible reason when it is not installed, unless
``DOVES_REQUIRE_BROWSER=1`` (set by ``.ci/run``, which installs it), in which case they
fail. No browser is ever downloaded: Selenium is pointed at Debian's driver and binary.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from selenium.webdriver.remote.webdriver import WebDriver

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
#: Headless, as root in CI, with nothing that reaches out to the network on its own.
LAUNCH_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", "--hide-scrollbars")
#: Generous deadline for what the page must show (a refresh is a fraction of a second).
PAGE_DEADLINE_SECONDS = 90.0


def missing() -> str | None:
    """Why no browser can be driven here, or None."""
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not os.access(path, os.X_OK):
            return f"{path} is not installed (apt-get install {package})"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[dev]')"
    return None


def require_browser() -> None:
    """Skip the test with the reason when there is no browser, or fail if ``DOVES_REQUIRE_BROWSER=1``."""
    reason = missing()
    if reason is None:
        return
    if os.environ.get("DOVES_REQUIRE_BROWSER") == "1":
        pytest.fail(f"DOVES_REQUIRE_BROWSER=1 but {reason}")
    pytest.skip(reason)


@contextlib.contextmanager
def chromium(width: int = 1200, height: int = 900) -> Iterator[WebDriver]:
    """A fresh headless Chromium (its own profile folder, removed afterwards) with a ``width`` x ``height`` window."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="doves-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*LAUNCH_FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def wait_until(condition: Callable[[], Any], what: str, timeout: float = PAGE_DEADLINE_SECONDS) -> Any:
    """Poll ``condition`` until it returns something true (returned), or fail naming ``what``."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = condition()
        except Exception as e:  # the element is not there yet, or was replaced while read
            last_error = e
        else:
            if value:
                return value
        time.sleep(0.1)
    pytest.fail(f"timed out waiting for {what}" + (f" (last error: {last_error!r})" if last_error else ""))


def text_of(driver: WebDriver, element_id: str) -> str:
    """The visible text of the element ``element_id``."""
    from selenium.webdriver.common.by import By

    text: str = driver.find_element(By.ID, element_id).text
    return text


def fits_width(driver: WebDriver) -> bool:
    """Whether the page needs no horizontal scrolling (wide tables scroll inside their own box)."""
    return bool(driver.execute_script(
        "return document.documentElement.scrollWidth <= document.documentElement.clientWidth;"))
