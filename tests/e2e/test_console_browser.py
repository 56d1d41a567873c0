"""The console in headless Chromium: a clinician answers a member, end to end."""

from __future__ import annotations

import json
from urllib.parse import urlsplit

import pytest

from medchat.services.notify_worker import NotifyWorker
from tests.support import push_endpoint
from tests.support.accounts import bearer, code_for, login, make_member
from tests.support.browser import requested_urls, screenshot
from tests.support.messaging import asked, care_team, give_consent
from tests.support.sample_files import pdf

pytestmark = pytest.mark.browser


def _fill(driver, label_text: str, value: str) -> None:
    from selenium.webdriver.common.by import By

    label = driver.find_element(By.XPATH, f"//label[normalize-space()='{label_text}']")
    field = driver.find_element(By.ID, label.get_attribute("for"))
    field.clear()
    field.send_keys(value)


def _click(driver, text: str) -> None:
    from selenium.webdriver.common.by import By

    driver.find_element(By.XPATH, f"//button[normalize-space()='{text}']").click()


def _shows(driver, text: str) -> bool:
    """Wait (up to 10 s) for the page after a form post to show ``text``."""
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, 10).until(lambda d: text in d.page_source)
    return True


@pytest.fixture
def push_service():
    server = push_endpoint.start()
    yield server
    server.server.shutdown()
    server.server.server_close()


def test_clinician_reads_replies_attaches_and_closes_in_a_real_browser(
    app, runtime, live_server, browser, tmp_path, push_service
):
    from selenium.webdriver.common.by import By

    team = care_team(runtime)
    member = make_member(runtime, first_name="Camille", last_name="Zzcanaryname")
    api = app.test_client()
    tokens = login(api, runtime, member)
    give_consent(api, tokens)
    # The member's phone takes Web Push (issue 17): the answer below must reach it, as a
    # notification with no content (decrypted here as the phone would, RFC 8291).
    phone = push_endpoint.BrowserKeys()
    subscribed = api.post(
        "/api/v1/me/push-subscriptions",
        json=phone.as_json(f"{push_service.base}/push/phone"),
        headers=bearer(tokens),
    )
    assert subscribed.status_code == 201, subscribed.get_json()
    opted = api.put("/api/v1/me/notifications", json={"push": True}, headers=bearer(tokens))
    assert opted.status_code == 200, opted.get_json()
    conversation_id = asked(
        api, tokens, "Since Monday I have a rash on both arms. Should I worry?", subject="Skin rash"
    )
    document = tmp_path / "care-plan.pdf"
    document.write_bytes(pdf("care plan"))

    browser.get(f"{live_server}/console/login")
    _fill(browser, "E-mail", team.clinician.email)
    _fill(browser, "Password", team.clinician.password)
    _click(browser, "Continue")
    assert _shows(browser, "Two-factor sign-in")
    runtime.clock.advance(seconds=30)
    _fill(
        browser,
        "Code from your authenticator app (or a recovery code)",
        code_for(team.clinician, runtime),
    )
    _click(browser, "Sign in")
    assert _shows(browser, "Questions")
    assert browser.current_url.endswith("/console/queue")
    assert _shows(browser, "Skin rash")
    screenshot(browser, "console-queue")

    browser.find_element(By.LINK_TEXT, "Skin rash").click()
    assert _shows(browser, "rash on both arms")
    assert "Zzcanaryname" not in browser.page_source
    # Answering needs the question claimed: first refused, then claimed and answered.
    _fill(browser, "Your answer", "Answered before claiming.")
    _click(browser, "Send answer")
    assert _shows(browser, "Claim this question before answering it")
    browser.get(f"{live_server}/console/conversations/{conversation_id}")
    assert _shows(browser, "Nobody has this question yet")
    _click(browser, "Claim")
    assert _shows(browser, "You have this question.")
    assert "Yours" in browser.page_source
    seen = api.get(f"/api/v1/conversations/{conversation_id}", headers=bearer(tokens))
    assert seen.get_json()["in_review"] is True  # the member: "a doctor is looking"
    _fill(browser, "Your answer", "Please send a photo; meanwhile avoid new soaps or creams.")
    _click(browser, "Send answer")
    assert _shows(browser, "Your answer was sent.")
    assert NotifyWorker(runtime).run().sent == 1  # the worker (``medchat notify run``)
    (pushed,) = push_service.taken("/push/phone")
    notice = json.loads(phone.decrypt(pushed.body))
    assert set(notice) == {"id", "text"} and notice["text"] == "You have a new message"
    assert not any(s in json.dumps(notice) for s in ("rash", "Camille", "soaps", "Skin"))
    browser.get(f"{live_server}/console/queue?claim=mine")
    assert _shows(browser, "Mine")
    assert "Skin rash" not in browser.page_source  # answered: not waiting any more
    browser.get(f"{live_server}/console/queue?status=answered&claim=mine")
    assert _shows(browser, "Skin rash")
    browser.find_element(By.LINK_TEXT, "Skin rash").click()
    assert _shows(browser, "rash on both arms")
    browser.find_element(By.ID, "file").send_keys(str(document))
    _click(browser, "Attach")
    # Staff see files by kind and order; the member (below) sees the name it was sent under.
    assert _shows(browser, "document-1.pdf")
    screenshot(browser, "console-conversation")
    _click(browser, "Close the conversation")
    assert _shows(browser, "This conversation is closed")

    # Every request the browser made went to the console's own origin.
    origin = urlsplit(live_server).netloc
    # (chrome:// pages of the browser's own start-up are not network requests.)
    urls = [
        u for u in requested_urls(browser) if urlsplit(u).scheme in ("http", "https", "ws", "wss")
    ]
    assert len(urls) > 10, "the performance log recorded too few requests"
    foreign = [u for u in urls if urlsplit(u).netloc != origin]
    assert foreign == []

    # The member sees the answer and the file through the API.
    items = api.get(
        f"/api/v1/conversations/{conversation_id}/messages?order=asc", headers=bearer(tokens)
    ).get_json()["items"]
    assert items[1]["body"].startswith("Please send a photo")
    assert items[1]["author_name"] == "Dr. M."
    assert items[2]["attachments"][0]["filename"] == "care-plan.pdf"
