"""Headless Chromium through Selenium 4, set up never to reach out on its own.

Debian's ``chromium`` and ``chromium-driver``: the driver path is given explicitly and
``SE_OFFLINE`` is set, so Selenium Manager never downloads anything; every browser
gets a fresh profile folder, page-load and script timeouts, and is always quit, so
no chromium process outlives an error or Ctrl-C.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from clipminer.errors import ClipminerError

CHROMEDRIVER = "/usr/bin/chromedriver"
CHROMIUM = "/usr/bin/chromium"
FLAGS = (
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--no-first-run", "--disable-extensions", "--mute-audio", "--window-size=1280,2000",
)  # fmt: skip


class BrowserUnavailable(ClipminerError):  # noqa: N818
    """Chromium or chromedriver is not installed."""


@contextlib.contextmanager
def chromium(
    *, page_load_timeout: float = 30.0, script_timeout: float = 15.0, load_images: bool = False
) -> Iterator[Any]:
    """A headless Chromium WebDriver with a fresh profile; quit on exit, whatever happens.

    Images are not loaded unless ``load_images``: result pages are parsed, not looked at.
    Browser console messages are kept (``driver.get_log("browser")``).
    """
    os.environ.setdefault("SE_OFFLINE", "true")
    os.environ.setdefault("SE_AVOID_STATS", "true")
    driver_path = shutil.which("chromedriver") or CHROMEDRIVER
    browser_path = shutil.which("chromium") or CHROMIUM
    if not Path(driver_path).exists() or not Path(browser_path).exists():
        raise BrowserUnavailable(
            f"headless Chromium needs {CHROMIUM} and {CHROMEDRIVER}: "
            "apt-get install chromium chromium-driver"
        )
    from selenium import webdriver
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="clipminer-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = browser_path
    for flag in (*FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    if not load_images:  # the downloader fetches the full-size images once, politely
        options.add_experimental_option(
            "prefs", {"profile.managed_default_content_settings.images": 2}
        )
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = None
    try:
        try:
            driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
        except WebDriverException as exc:
            raise BrowserUnavailable(f"Chromium did not start: {exc.msg}") from None
        driver.set_page_load_timeout(page_load_timeout)
        driver.set_script_timeout(script_timeout)
        yield driver
    finally:
        if driver is not None:
            with contextlib.suppress(Exception):  # the browser may already be gone
                driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def load(driver: Any, url: str, *, scrolls: int = 0) -> str:
    """Open ``url`` and return the page's HTML after ``scrolls`` scrolls to the bottom."""
    import time

    from selenium.common.exceptions import TimeoutException, WebDriverException

    try:
        driver.get(url)
        for _ in range(scrolls):
            driver.execute_script("window.scrollTo(0, document.body.scrollHeight);")
            time.sleep(0.5)
        return str(driver.page_source)
    except TimeoutException:
        raise ClipminerError(f"{url}: the page did not load in time") from None
    except WebDriverException as exc:
        raise ClipminerError(f"{url}: the browser failed ({exc.msg})") from None


def accept_consent(driver: Any) -> bool:
    """Click a consent interstitial's accept button, if there is one."""
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.common.by import By

    for xpath in (
        "//button[.//div[contains(., 'Accept all')] or contains(., 'Accept all')]",
        "//button[contains(., 'I agree') or contains(., 'Alle akzeptieren')]",
        "//form[contains(@action, 'consent')]//button",
    ):
        try:
            buttons = driver.find_elements(By.XPATH, xpath)
            if buttons:
                buttons[-1].click()
                return True
        except WebDriverException:
            continue
    return False
