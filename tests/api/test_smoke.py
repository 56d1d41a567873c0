from access_control.roles import Role
from tests.support.accounts import bearer, login, make_member, make_staff


def test_health(client):
    assert client.get("/healthz").get_json() == {"status": "ok"}
    assert client.get("/readyz").status_code == 200


def test_member_login_and_me(client, runtime):
    person = make_member(runtime)
    tokens = login(client, runtime, person)
    me = client.get("/api/v1/me", headers=bearer(tokens))
    assert me.status_code == 200, me.get_json()
    assert me.get_json()["email"] == person.email


def test_staff_login(client, runtime):
    person = make_staff(runtime, Role.ADMIN)
    tokens = login(client, runtime, person)
    r = client.get("/api/v1/admin/audit", headers=bearer(tokens))
    assert r.status_code == 200, r.get_json()
