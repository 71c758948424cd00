"""Debian's chromium, headless, driven through Debian's chromedriver by Selenium, for page tests.

The network here is closed, so chromium is started with everything that phones home turned
off (without these flags it stalls), in a fresh profile. `artefacts_on_failure` keeps a
screenshot, the page's HTML and the browser console of a failing step in a directory that the
failure message names.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Final, TypeVar

import pytest
from selenium import webdriver
from selenium.common.exceptions import (
    NoSuchElementException,
    StaleElementReferenceException,
    WebDriverException,
)
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from tests.api.support import ROOT

CHROMIUM: Final = Path("/usr/bin/chromium")
CHROMEDRIVER: Final = Path("/usr/bin/chromedriver")
CHROMIUM_FLAGS: Final = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1280,1600",
)
# A page step (an install builds a venv) finishes well within this on a loaded machine.
STEP_TIMEOUT_S: Final = 180.0
# Where failure artefacts go (override with $HIAGENT_TEST_ARTEFACTS); git-ignored.
ARTEFACTS_ENV: Final = "HIAGENT_TEST_ARTEFACTS"

T = TypeVar("T")


def artefacts_root() -> Path:
    return Path(os.environ.get(ARTEFACTS_ENV) or ROOT / ".artefacts")


def require_chromium() -> None:
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if missing:
        pytest.fail(
            f"page tests need Debian's chromium and chromium-driver ({', '.join(missing)} "
            "missing): apt-get install chromium chromium-driver (.ci/run does)"
        )


@contextlib.contextmanager
def chromium(profile_dir: Path) -> Iterator[WebDriver]:
    """A headless chromium in a fresh profile under `profile_dir`; quit afterwards."""
    require_chromium()
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile_dir}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    try:
        yield driver
    finally:
        driver.quit()


def wait_for(
    driver: WebDriver, what: Callable[[WebDriver], T], timeout_s: float = STEP_TIMEOUT_S
) -> T:
    """`what(driver)` once it is truthy (polled by Selenium, bounded by `timeout_s`); an element
    that a re-render replaced meanwhile counts as not yet."""
    wait = WebDriverWait(driver, timeout_s, ignored_exceptions=(StaleElementReferenceException,))
    result: T = wait.until(what)
    return result


def click(driver: WebDriver, css: str) -> None:
    """Click the element `css` selects, once it is there (again, if a re-render replaced it)."""

    def clicked(d: WebDriver) -> bool:
        d.find_element(By.CSS_SELECTOR, css).click()
        return True

    WebDriverWait(
        driver,
        STEP_TIMEOUT_S,
        ignored_exceptions=(NoSuchElementException, StaleElementReferenceException),
    ).until(clicked)


@contextlib.contextmanager
def artefacts_on_failure(driver: WebDriver, name: str) -> Iterator[None]:
    """On a failure inside, save screenshot, HTML and console log, and name their directory."""
    try:
        yield
    except BaseException as exc:
        directory = artefacts_root() / name
        shutil.rmtree(directory, ignore_errors=True)
        directory.mkdir(parents=True, exist_ok=True)
        saved = _save(driver, directory)
        raise AssertionError(
            f"page test {name} failed ({exc!r}); screenshot, page and browser log in "
            f"{directory} ({', '.join(saved)})"
        ) from exc


def _save(driver: WebDriver, directory: Path) -> list[str]:
    saved = []
    with contextlib.suppress(WebDriverException):
        driver.save_screenshot(str(directory / "screenshot.png"))
        saved.append("screenshot.png")
    with contextlib.suppress(WebDriverException):
        (directory / "page.html").write_text(driver.page_source, encoding="utf-8")
        saved.append("page.html")
    with contextlib.suppress(WebDriverException, ValueError):
        entries: list[Any] = driver.get_log("browser")
        (directory / "browser-log.json").write_text(json.dumps(entries, indent=2), encoding="utf-8")
        saved.append("browser-log.json")
    return saved
