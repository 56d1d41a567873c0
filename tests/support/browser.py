"""What the browser tests read from the headless Chromium they drive: the URLs it requested and
a screenshot of the page.

The browser and the server it visits are ``tests/e2e/conftest.py``'s fixtures (``browser``,
``live_server``); the console and API docs tests (``tests/e2e/test_console_browser.py``,
``tests/e2e/test_docs_browser.py``) both prove from Chromium's performance log that nothing
went to another origin, and keep a screenshot of what they saw under ``test-artifacts/``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


def requested_urls(driver: Any) -> list[str]:
    """Every URL the browser asked for since the last call (from the performance log)."""
    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message.get("method") == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls


def screenshot(driver: Any, name: str) -> Path:
    """Save the page as ``test-artifacts/<name>.png``; returns its path."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    driver.save_screenshot(str(path))
    return path
