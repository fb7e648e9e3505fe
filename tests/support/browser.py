"""A real headless Chromium, driven through Selenium, for the page tests.

``start_browser(tmp)`` runs Debian's ``/usr/bin/chromium`` through Debian's
``/usr/bin/chromedriver`` (both installed by ``scripts/system-deps.sh``; never a
driver downloaded at run time) headless with a fresh profile under ``tmp``, and
gives a :class:`Page` with the few things a test needs: ``goto``, ``evaluate``,
``wait_for``, ``type_into`` (real key input), ``click`` (a real mouse click) and
``screenshot``.  JavaScript dialogs (``confirm``) are accepted and their text
recorded in ``page.dialogs``.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from selenium import webdriver
from selenium.common.exceptions import TimeoutException, UnexpectedAlertPresentException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

CHROMIUM = os.environ.get("CHAT2API_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("CHAT2API_CHROMEDRIVER", "/usr/bin/chromedriver")

#: Headless on a machine without a display, GPU or sandbox support, talking to
#: loopback only: nothing in the background reaches out (updates, sync, QUIC).
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-dev-shm-usage",
    "--no-proxy-server",
    "--window-size=900,640",
)


def _executable(path: str, name: str) -> str | None:
    if os.path.isfile(path) and os.access(path, os.X_OK):
        return path
    return shutil.which(name)


def browser_missing() -> str | None:
    """Why the page tests cannot run here (what is not installed), or None."""
    missing = [
        name
        for path, name in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromedriver"))
        if _executable(path, name) is None
    ]
    if missing:
        return f"{' and '.join(missing)} missing: run scripts/system-deps.sh"
    return None


class Page:
    """One browser tab, with JavaScript expressions for what a test checks."""

    def __init__(self, driver: webdriver.Chrome) -> None:
        self.driver = driver
        self.dialogs: list[str] = []

    def goto(self, url: str) -> None:
        """Load ``url`` and wait until the page has loaded."""
        self.driver.get(url)

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression (a promise is awaited)."""
        while True:
            try:
                return self.driver.execute_script(f"return ({expression});")
            except UnexpectedAlertPresentException:
                self._accept_dialog()

    def wait_for(self, expression: str, timeout: float = 10.0) -> Any:
        """Poll until the expression is truthy; return its value."""
        try:
            return WebDriverWait(self.driver, timeout, poll_frequency=0.05).until(
                lambda _: self.evaluate(expression)
            )
        except TimeoutException:
            raise AssertionError(f"timed out waiting for {expression}") from None

    def click(self, selector: str) -> None:
        """A real left click on the (visible) element, and any dialog it opens accepted."""
        self.wait_for(
            f"(e => e !== null && e.offsetParent !== null)"
            f"(document.querySelector({_js(selector)}))"
        )
        self.driver.find_element(By.CSS_SELECTOR, selector).click()

    def type_into(self, selector: str, text: str) -> None:
        """Click the element and type ``text`` as keyboard input (newlines included)."""
        self.click(selector)
        self.driver.find_element(By.CSS_SELECTOR, selector).send_keys(text)

    def text(self, selector: str) -> str:
        value = self.evaluate(
            f"(document.querySelector({_js(selector)}) || {{}}).textContent || ''"
        )
        return str(value)

    def cookies(self, url: str) -> list[dict[str, Any]]:
        """Every cookie the browser would send to ``url``, HttpOnly ones too (through the
        driver's DevTools channel: WebDriver's own cookie calls see the current page only)."""
        result = self.driver.execute_cdp_cmd("Network.getCookies", {"urls": [url]})
        return list(result["cookies"])

    def screenshot(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(self.driver.get_screenshot_as_png())

    def _accept_dialog(self) -> None:
        alert = self.driver.switch_to.alert
        self.dialogs.append(alert.text)
        alert.accept()


def _js(value: str) -> str:
    return json.dumps(value)


@contextmanager
def start_browser(tmp: Path) -> Iterator[Page]:
    """Headless Chromium with a fresh profile under ``tmp``; quit on exit."""
    reason = browser_missing()
    if reason is not None:
        raise RuntimeError(reason)
    options = webdriver.ChromeOptions()
    options.binary_location = _executable(CHROMIUM, "chromium") or CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    profile = tmp / "chromium-profile"
    profile.mkdir(parents=True, exist_ok=True)
    options.add_argument(f"--user-data-dir={profile}")
    # Dialogs stay open until a command meets them, so that their text can be read.
    options.set_capability("unhandledPromptBehavior", "ignore")
    service = Service(
        executable_path=_executable(CHROMEDRIVER, "chromedriver") or CHROMEDRIVER,
        log_output=str(tmp / "chromedriver.log"),
    )
    driver = webdriver.Chrome(options=options, service=service)
    try:
        yield Page(driver)
    finally:
        driver.quit()
