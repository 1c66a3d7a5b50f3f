"""Fixtures the integration tests share."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest


@pytest.fixture
def chromium() -> Iterator[object]:
    """A real headless Chromium (Debian's chromium and chromium-driver) driven by Selenium."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service as DriverService

    binary, driver = shutil.which("chromium"), shutil.which("chromedriver")
    assert binary and driver, "needs Debian's chromium and chromium-driver (make system installs them)"
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000"):
        options.add_argument(flag)
    browser = webdriver.Chrome(options=options, service=DriverService(driver))
    try:
        yield browser
    finally:
        browser.quit()
