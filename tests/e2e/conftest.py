"""A real browser against a real server: Debian's chromium and chromedriver, headless.

The app under test is served by werkzeug in a thread (same database, keys and injected clock
as the test), and Chromium is driven by Selenium with the system chromedriver: no browser or
driver is ever downloaded. Every request the browser makes is read from Chromium's
performance log (``tests.support.browser.requested_urls``), so a test can prove that nothing
went to another origin. Tests skip with a reason where chromium is absent, unless
``MEDCHAT_REQUIRE_BROWSER`` is set (CI), where its absence is an error.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from werkzeug.serving import make_server

from tests.support.gunicorn_probe import serve_probe

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


def _browser_available() -> bool:
    return Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()


@pytest.fixture
def live_server(app) -> Iterator[str]:
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=10)


@pytest.fixture
def browser() -> Iterator[Any]:
    if not _browser_available():
        if os.environ.get("MEDCHAT_REQUIRE_BROWSER"):
            pytest.fail("chromium and chromedriver are required here (make browser-deps)")
        pytest.skip("Debian's chromium and chromium-driver are not installed (make browser-deps)")
    os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager must never fetch anything
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="medchat-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-background-networking",
        "--disable-component-update",
        "--no-first-run",
        "--disable-gpu",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--window-size=1280,900",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """gunicorn with the deployment's configuration on the probe app: its port and log file."""
    with serve_probe(tmp_path) as address:
        yield address
