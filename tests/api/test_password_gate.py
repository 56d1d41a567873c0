"""Sign-ins turned away before dispatch while the password work is full (``web.password_gate``).

The early answer must be the full path's answer (the same status, body and headers, but for
what only the full path knows: the rate limiter's headers for the address); only the
endpoints whose first step is the gate may give it; the first refusal of each window still
takes the full path, so the audit's tally still counts every refusal; and with the gate not
full nothing changes.
"""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import select

from access_control.password_work import DEPENDENCY, RETRY_AFTER_SECONDS
from medchat.models import AuditEntry
from medchat.web.password_gate import (
    MAX_EARLY_BODY,
    RefuseWhilePasswordWorkFull,
    marked_endpoints,
)
from medchat.web.refusal_tally import EXTENSION as TALLY
from tests.support.accounts import make_member
from tests.support.password_work import gate_full
from tests.support.routes import sample_path

TOKEN = "/api/v1/auth/token"
ORIGIN = "https://app.example"
#: A body each marked endpoint accepts, so its full path reaches the gate. A view newly
#: marked ``password_work_first`` without one here fails ``test_every_marked_view_...``.
VALID_BODIES: dict[str, dict[str, Any]] = {
    "auth.token": {"email": "someone@example.org", "password": "quokka-harbor-lantern-42"},
}


@pytest.fixture
def app(make_app: Any) -> Any:
    return make_app(password_work_slots=1, password_work_wait_ms=10_000, cors_origins=(ORIGIN,))


@pytest.fixture
def tally_clock(app: Any) -> list[float]:
    """The refusal tally's clock, moved by hand: which refusal opens a window is chosen."""
    now = [1000.0]
    app.extensions[TALLY].clock = lambda: now[0]
    return now


def early_refusals() -> float:
    value = REGISTRY.get_sample_value(
        "medchat_refused_before_dispatch_total", {"dependency": DEPENDENCY}
    )
    return value or 0.0


#: Where the two answers may differ: the request id, and what only the full path knows (the
#: rate limiter's headers for the address, whose Retry-After may be later than the gate's, and
#: Flask's ``Vary: Cookie`` once a view touched the session).
PER_PATH = {"x-request-id", "x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset"}
PER_PATH |= {"retry-after", "vary"}


def answer(response: Any) -> tuple[int, bytes, list[tuple[str, str]]]:
    """Status, body and headers, less those that may differ between the two paths."""
    headers = sorted((k, v) for k, v in response.headers if k.lower() not in PER_PATH)
    return response.status_code, response.get_data(), headers


def refusals_audited(runtime: Any) -> list[int]:
    with runtime.database.transaction() as session:
        rows = session.scalars(
            select(AuditEntry.details).where(AuditEntry.action == "request.dependency_down")
        ).all()
    return sorted(json.loads(details)["refused"] for details in rows)


def test_the_wsgi_app_is_wrapped_outside_every_other_layer(app):
    assert isinstance(app.wsgi_app, RefuseWhilePasswordWorkFull)


def test_the_early_answer_is_the_full_paths_answer(app, client, runtime, tally_clock):
    body = VALID_BODIES["auth.token"]
    headers = {"Origin": ORIGIN, "X-Request-ID": "flood-1"}
    with gate_full(runtime.password_work):
        before = early_refusals()
        full = client.post(TOKEN, json=body, headers=headers)  # first of its window
        assert early_refusals() == before
        early = client.post(TOKEN, json=body, headers=headers)
        assert early_refusals() == before + 1
    assert full.status_code == 503
    assert answer(early) == answer(full)
    assert early.headers["Retry-After"] == str(RETRY_AFTER_SECONDS)
    assert int(full.headers["Retry-After"]) >= RETRY_AFTER_SECONDS
    assert early.headers["Vary"] == "Origin"
    assert early.headers["X-Request-ID"] == "flood-1"  # a sane client id is kept
    assert early.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert early.headers["Cache-Control"] == "no-store"
    assert early.get_json()["error"]["details"] == {"dependency": DEPENDENCY}


def test_every_marked_view_takes_the_gate_before_anything_else(app, client, runtime, tally_clock):
    """A view may be marked only if its full path, given a valid body, answers the gate's 503:
    no check of its own comes first that the early answer would skip."""
    marked = marked_endpoints(app)
    assert marked, "no view is marked: the sign-in flood is refused the expensive way"
    assert marked <= VALID_BODIES.keys(), "add a valid body for each newly marked view"
    rules = {rule.endpoint: rule for rule in app.url_map.iter_rules()}
    for endpoint in sorted(marked):
        rule = rules[endpoint]
        assert rule.methods is not None and "POST" in rule.methods
        tally_clock[0] += 10  # a new window: the full path
        before = early_refusals()
        with gate_full(runtime.password_work):
            response = client.post(rule.rule, json=VALID_BODIES[endpoint])
        assert response.status_code == 503, endpoint
        assert response.get_json()["error"]["details"] == {"dependency": DEPENDENCY}
        assert early_refusals() == before, f"{endpoint}: the first refusal went early"


def test_only_marked_posts_are_refused_early(app, client, runtime, tally_clock):
    """Every other POST route of the URL map takes the full path while the gate is full, even
    with its own tally window written (so only the mark stands between it and the early
    answer)."""
    marked = marked_endpoints(app)
    tally = app.extensions[TALLY]
    others = [
        rule
        for rule in app.url_map.iter_rules()
        if rule.endpoint not in marked and "POST" in (rule.methods or ())
    ]
    assert len(others) > 20  # the URL map was read
    before = early_refusals()
    with gate_full(runtime.password_work):
        for rule in others:
            tally.admit(DEPENDENCY, rule.endpoint)
            client.post(sample_path(rule), json={})
        assert early_refusals() == before
        tally.admit(DEPENDENCY, "auth.token")
        assert client.get(TOKEN).status_code == 405  # a GET of a marked path: its own answer
        assert early_refusals() == before
        client.post(TOKEN, json=VALID_BODIES["auth.token"])
        assert early_refusals() == before + 1


def test_the_audit_tally_counts_the_early_refusals(app, client, runtime, tally_clock):
    member = make_member(runtime)
    attempt = {"email": member.email, "password": member.password}
    before = early_refusals()
    with gate_full(runtime.password_work):
        for _ in range(4):
            client.post(TOKEN, json=attempt)
        assert early_refusals() == before + 3
        tally_clock[0] += 1.5
        client.post(TOKEN, json=attempt)  # the next window's entry: the full path
    assert refusals_audited(runtime) == [1, 4]


def test_while_the_gate_is_full_a_malformed_sign_in_is_refused_early_too(
    app, client, runtime, tally_clock
):
    """Documented: the early answer comes before the body's validation; it changes nothing."""
    with gate_full(runtime.password_work):
        client.post(TOKEN, json=VALID_BODIES["auth.token"])
        response = client.post(TOKEN, data="{not json", content_type="application/json")
    assert response.status_code == 503
    assert client.post(TOKEN, data="{not json", content_type="application/json").status_code == 400


def test_with_the_gate_free_nothing_is_refused_and_sign_in_works(app, client, runtime, tally_clock):
    member = make_member(runtime)
    before = early_refusals()
    with gate_full(runtime.password_work):
        client.post(TOKEN, json=VALID_BODIES["auth.token"])  # this window's entry written
    response = client.post(TOKEN, json={"email": member.email, "password": member.password})
    assert response.status_code == 200
    assert early_refusals() == before


def test_a_body_larger_than_a_sign_in_takes_the_full_path(app, client, runtime, tally_clock):
    """The early answer reads no body; one declared larger than any sign-in, or not declared
    at all, is left to the full path and its own limits."""
    large = {**VALID_BODIES["auth.token"], "padding": "x" * MAX_EARLY_BODY}
    before = early_refusals()
    with gate_full(runtime.password_work):
        client.post(TOKEN, json=VALID_BODIES["auth.token"])  # this window's entry written
        assert client.post(TOKEN, json=large).status_code in (413, 422, 503)
        chunked = client.post(
            TOKEN,
            input_stream=io.BytesIO(json.dumps(VALID_BODIES["auth.token"]).encode()),
            content_type="application/json",
            headers={"Transfer-Encoding": "chunked"},
        )
        assert chunked.status_code in (400, 411, 422, 503)
        assert early_refusals() == before
        client.post(TOKEN, json=VALID_BODIES["auth.token"])
        assert early_refusals() == before + 1
