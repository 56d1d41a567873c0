"""``/api/v1/docs`` in headless Chromium: Swagger UI renders the served document under the
app's CSP, from this origin only, with no CSP violation."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from tests.support.browser import requested_urls, screenshot

pytestmark = pytest.mark.browser

#: Runs before any script of the page (CDP, so the page's CSP does not apply to it) and
#: keeps every CSP violation the page causes.
_WATCH_CSP = """
window.__csp = [];
document.addEventListener("securitypolicyviolation", function (e) {
  window.__csp.push(e.violatedDirective + " " + e.blockedURI);
});
"""


def test_swagger_ui_renders_the_document_under_the_csp(live_server, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": _WATCH_CSP})
    browser.get(f"{live_server}/api/v1/docs")
    WebDriverWait(browser, 30).until(
        lambda d: d.find_elements(By.CSS_SELECTOR, ".opblock-summary-path")
    )
    paths = {
        e.text.replace("\u200b", "")
        for e in browser.find_elements(By.CSS_SELECTOR, ".opblock-summary-path")
    }
    screenshot(browser, "api-docs")

    assert "/api/v1/conversations" in paths
    assert browser.find_elements(By.CSS_SELECTOR, ".auth-wrapper .authorize")  # bearer scheme
    assert browser.execute_script("return window.__csp") == []
    origin = urlsplit(live_server).netloc
    web = [u for u in requested_urls(browser) if urlsplit(u).scheme in ("http", "https")]
    assert web, "the performance log shows the page's requests"
    assert [u for u in web if urlsplit(u).netloc != origin] == []
