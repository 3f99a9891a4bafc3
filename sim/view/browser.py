"""Headless Debian Chromium driven by Selenium, for the view's browser test and its benchmark.

Selenium is a development dependency (the `dev` extra); it is imported only when a browser is started. The flags
keep Chromium off the network (this machine has none) and out of any profile but a fresh one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


def headless_chromium(profile_dir: str | Path, window_size: tuple[int, int] = (1600, 1150)) -> Any:
    """A Selenium Chrome driver on Debian's Chromium with a fresh profile in `profile_dir`."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    width, height = window_size
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile_dir}", f"--window-size={width},{height}"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
