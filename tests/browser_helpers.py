"""A real headless browser for the HTML map tests and the README screenshot: Debian's `chromium` driven by its
`chromium-driver` through Selenium (never a browser downloaded at run time; `.ci/run` installs both with apt).

Hermetic: a fresh profile, no background networking, and every host name but the loopback address (where the
tests' own server listens) resolves to nothing, so a map that would fetch OpenStreetMap tiles fetches none and
must draw without them.
"""
from __future__ import annotations

import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

CHROMIUM_NAMES = ("chromium", "chromium-browser")
DRIVER_NAMES = ("chromedriver", "chromium-driver")
MISSING = ("Debian's chromium and chromium-driver are not installed: the HTML map was NOT checked in a real "
           "browser (install them with `apt-get install -y chromium chromium-driver`; .ci/run does)")


def find_browser() -> tuple[str, str] | None:
    """(chromium, chromedriver) paths, or None when either is missing (or selenium is not installed)."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return None
    browser = next((shutil.which(n) for n in CHROMIUM_NAMES if shutil.which(n)), None)
    driver = next((shutil.which(n) for n in DRIVER_NAMES if shutil.which(n)), None)
    return (browser, driver) if browser and driver else None


@contextmanager
def chromium(width: int = 1000, height: int = 700):
    """A headless Chromium WebDriver with a fresh profile, closed (and its profile removed) afterwards."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    found = find_browser()
    if found is None:
        raise RuntimeError(MISSING)
    browser, driver_path = found
    profile = tempfile.mkdtemp(prefix="perceptions-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                 f"--user-data-dir={profile}", f"--window-size={width},{height}",
                 "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=driver_path))
    try:
        driver.set_page_load_timeout(60)
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def open_map(driver, html: Path, timeout: float = 30):
    """Load a map file and wait until its script has drawn (window.perceptionsMap is set)."""
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(Path(html).resolve().as_uri())
    WebDriverWait(driver, timeout).until(lambda d: d.execute_script("return !!window.perceptionsMap"))


def fills(driver) -> list[str]:
    """The fill colour of every drawn feature (SVG paths), in drawing order."""
    return driver.execute_script(
        "return Array.from(document.querySelectorAll('path.leaflet-interactive')).map(p => p.getAttribute('fill'))")


def screenshot(html: Path, png: Path, width: int = 1000, height: int = 700) -> Path:
    """Open `html` in headless Chromium and save what it shows to `png`."""
    with chromium(width, height) as driver:
        open_map(driver, html)
        driver.save_screenshot(str(png))
    return png
