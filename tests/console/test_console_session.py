"""Console sessions: two-step sign-in, CSRF, cross-site refusal, timeouts, cookie flags."""

from __future__ import annotations

from sqlalchemy import func, select

from access_control.roles import Role
from medchat.models import Account, AuthToken
from tests.support.accounts import make_member, make_staff
from tests.support.console import console_login, csrf_from, post_form


def _signed_in(client) -> bool:
    response = client.get("/console/account")
    return response.status_code == 200


def test_clinician_signs_in_with_password_then_totp(client, runtime):
    clinician = make_staff(runtime, Role.CLINICIAN)
    console_login(client, runtime, clinician)
    assert _signed_in(client)


def test_pages_need_a_session_and_redirect_to_login(client):
    response = client.get("/console/queue")
    assert response.status_code == 302
    assert "/console/login" in response.headers["Location"]


def test_password_alone_opens_nothing_but_the_totp_step(client, runtime):
    clinician = make_staff(runtime, Role.CLINICIAN)
    response = post_form(
        client, "/console/login", {"email": clinician.email, "password": clinician.password}
    )
    assert response.headers["Location"].endswith("/console/totp")
    assert not _signed_in(client)
    assert client.get("/console/queue").status_code == 302


def test_wrong_password_and_wrong_code_answer_401(client, runtime):
    clinician = make_staff(runtime, Role.CLINICIAN)
    bad = post_form(
        client, "/console/login", {"email": clinician.email, "password": "wrong-password-1"}
    )
    assert bad.status_code == 401
    assert "wrong" in bad.get_data(as_text=True)
    post_form(client, "/console/login", {"email": clinician.email, "password": clinician.password})
    bad_code = post_form(client, "/console/totp", {"code": "000000"})
    assert bad_code.status_code == 401
    assert not _signed_in(client)


def test_only_clinicians_use_the_console(client, runtime):
    for person in (make_staff(runtime, Role.ADMIN), make_member(runtime)):
        response = post_form(
            client, "/console/login", {"email": person.email, "password": person.password}
        )
        assert response.status_code == 403


def test_a_form_without_or_with_a_wrong_csrf_token_changes_nothing(client, runtime):
    clinician = make_staff(runtime, Role.CLINICIAN)
    console_login(client, runtime, clinician)
    data = {
        "current_password": clinician.password,
        "new_password": "orchid-tundra-pylon-88",
        "confirm": "orchid-tundra-pylon-88",
    }
    assert client.post("/console/account", data=data).status_code == 403
    assert client.post("/console/account", data={**data, "csrf_token": "forged"}).status_code == 403
    # Nothing changed: the old password still signs in.
    with runtime.database.transaction() as session:
        account = session.get(Account, clinician.id)
        assert runtime.hasher.verify(clinician.password, account.password_hash)


def test_a_cross_site_form_post_is_refused_even_with_a_valid_token(client, runtime):
    clinician = make_staff(runtime, Role.CLINICIAN)
    console_login(client, runtime, clinician)
    token = csrf_from(client.get("/console/account").get_data(as_text=True))
    for headers in (
        {"Origin": "https://evil.example"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
        {"Origin": "null", "Sec-Fetch-Site": "cross-site"},
    ):
        response = client.post("/console/logout", data={"csrf_token": token}, headers=headers)
        assert response.status_code == 403, headers
    assert _signed_in(client)
    same_origin = client.post(
        "/console/logout", data={"csrf_token": token}, headers={"Origin": "http://localhost"}
    )
    assert same_origin.status_code == 302


def test_a_cookie_from_before_login_is_not_accepted_after_it(app, runtime):
    clinician = make_staff(runtime, Role.CLINICIAN)
    client = app.test_client()
    client.get("/console/login")
    post_form(client, "/console/login", {"email": clinician.email, "password": clinician.password})
    before = client.get_cookie("medchat-console").value  # the pending-step cookie
    runtime.clock.advance(seconds=30)
    from tests.support.accounts import code_for

    post_form(client, "/console/totp", {"code": code_for(clinician, runtime)})
    after = client.get_cookie("medchat-console").value
    assert before != after
    attacker = app.test_client()
    attacker.set_cookie("medchat-console", before)
    assert attacker.get("/console/account").status_code == 302
    assert _signed_in(client)


def test_idle_timeout_ends_the_session(client, runtime, clock):
    console_login(client, runtime, make_staff(runtime, Role.CLINICIAN))
    clock.advance(minutes=14)
    assert _signed_in(client)  # activity pushes the idle limit
    clock.advance(minutes=14)
    assert _signed_in(client)
    clock.advance(minutes=16)
    response = client.get("/console/account")
    assert response.status_code == 302 and "ended=1" in response.headers["Location"]


def test_absolute_timeout_ends_even_an_active_session(client, runtime, clock):
    console_login(client, runtime, make_staff(runtime, Role.CLINICIAN))
    for _ in range(8 * 6 - 1):  # active every 10 minutes for almost 8 hours
        clock.advance(minutes=10)
        assert _signed_in(client)
    clock.advance(minutes=11)
    assert not _signed_in(client)


def test_logout_deletes_the_session_and_clears_site_data(client, runtime):
    clinician = make_staff(runtime, Role.CLINICIAN)
    console_login(client, runtime, clinician)
    response = post_form(client, "/console/logout", {}, page="/console/account")
    assert response.status_code == 302
    assert response.headers["Clear-Site-Data"] == '"cache", "cookies", "storage"'
    assert not _signed_in(client)
    with runtime.database.transaction() as session:
        assert (
            session.scalar(
                select(func.count())
                .select_from(AuthToken)
                .where(AuthToken.account_id == clinician.id)
            )
            == 0
        )


def test_password_change_ends_every_other_session(app, runtime):
    clinician = make_staff(runtime, Role.CLINICIAN)
    first, second = app.test_client(), app.test_client()
    console_login(first, runtime, clinician)
    console_login(second, runtime, clinician)
    new = "orchid-tundra-pylon-88"
    response = post_form(
        first,
        "/console/account",
        {"current_password": clinician.password, "new_password": new, "confirm": new},
    )
    assert response.status_code == 200 and "password was changed" in response.get_data(as_text=True)
    assert _signed_in(first)
    assert not _signed_in(second)


def test_cookie_flags_in_development_and_production_style(make_app, runtime):
    clinician = make_staff(runtime, Role.CLINICIAN)
    client = make_app().test_client()
    post_form(client, "/console/login", {"email": clinician.email, "password": clinician.password})
    cookie = client.get_cookie("medchat-console")
    assert cookie.http_only and cookie.same_site == "Strict"
    secure = make_app(cookie_secure=True).test_client()
    response = secure.get("/console/login", base_url="https://localhost")
    set_cookie = response.headers.get("Set-Cookie", "")
    assert set_cookie.startswith("__Host-medchat-console=")
    assert "Secure" in set_cookie and "HttpOnly" in set_cookie and "SameSite=Strict" in set_cookie
    assert "Path=/" in set_cookie and "Domain" not in set_cookie


def test_console_pages_are_not_cached_and_load_nothing_from_elsewhere(client):
    response = client.get("/console/login")
    assert response.headers["Cache-Control"] == "no-store"
    csp = response.headers["Content-Security-Policy"]
    assert (
        "default-src 'self'" in csp
        and "frame-ancestors 'none'" in csp
        and "form-action 'self'" in csp
    )
    assert "unsafe-inline" not in csp
    html = response.get_data(as_text=True)
    assert "http://" not in html.replace("http://localhost", "") and "https://" not in html
    assert "<script" not in html and "style=" not in html


def test_failures_through_the_api_lock_the_console_too(client, runtime):
    clinician = make_staff(runtime, Role.CLINICIAN)
    for _ in range(5):
        failed = client.post(
            "/api/v1/auth/token", json={"email": clinician.email, "password": "wrong-password-1"}
        )
        assert failed.status_code == 401
    response = post_form(
        client, "/console/login", {"email": clinician.email, "password": clinician.password}
    )
    assert response.status_code == 429
    assert not _signed_in(client)
