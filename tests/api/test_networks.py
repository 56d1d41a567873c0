"""Staff surfaces answer only from configured networks, with the client address taken from
``X-Forwarded-For`` only where the peer is a configured proxy (SECURITY-MODEL "Authentication").

The tests configure ``127.0.0.0/8`` and ``::1/128`` as staff networks; ``203.0.113.7`` is
outside. Refusals come before authentication and are audited.
"""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from access_control.roles import Role
from medchat import audit
from medchat.audit.addresses import AddressKeys, reveal
from medchat.errors import ConfigurationError
from medchat.models import AuditEntry
from tests.support.accounts import bearer, login, make_member, make_staff

OUTSIDE = "203.0.113.7"
#: A reverse proxy on another host of the documentation range (not a staff network itself).
PROXY = "192.0.2.10"
STAFF_PATHS = [
    "/api/v1/admin/audit",
    "/api/v1/admin/accounts",
    "/api/v1/clinician/queue",
    "/api/v1/compliance/archive/verify",
    "/console",
    "/console/login",
]


def address_of(runtime, entry) -> str | None:
    """The address an entry records (sealed since format 3: ``medchat.audit.addresses``)."""
    return reveal(AddressKeys(seal=runtime.keys.profile, commit=runtime.keys.audit_mac), entry)


def from_address(address: str) -> dict:
    return {"REMOTE_ADDR": address}


def assert_network_refused(response) -> None:
    assert response.status_code == 403, response.get_data(as_text=True)[:200]
    if response.mimetype == "text/html":  # the console answers with a page
        assert "not reachable from your network" in response.get_data(as_text=True)
        return
    assert response.get_json()["error"]["code"] == "network_not_allowed"


def denied_entries(runtime) -> list[AuditEntry]:
    with runtime.database.transaction() as session:
        return list(
            session.scalars(
                select(AuditEntry)
                .where(AuditEntry.action == "request.denied")
                .order_by(AuditEntry.seq)
            )
        )


def test_staff_paths_refuse_outside_networks(client, runtime):
    for path in STAFF_PATHS:
        assert_network_refused(client.get(path, environ_base=from_address(OUTSIDE)))
    assert len(denied_entries(runtime)) == len(STAFF_PATHS)


def test_staff_paths_answer_inside_networks(client):
    for path in STAFF_PATHS:
        response = client.get(path, environ_base=from_address("127.0.0.1"))
        body = response.get_json(silent=True) or {}
        assert body.get("error", {}).get("code") != "network_not_allowed", path
        assert response.status_code in (200, 302, 308, 401, 404, 405), (path, response.status_code)


def test_post_to_staff_path_is_refused_before_validation(client):
    response = client.post("/api/v1/admin/accounts", json={}, environ_base=from_address(OUTSIDE))
    assert_network_refused(response)


def test_similar_prefix_is_not_a_staff_path(client):
    response = client.get("/api/v1/administrators", environ_base=from_address(OUTSIDE))
    assert response.status_code == 404


def test_ipv6_loopback_is_inside(client):
    response = client.get("/api/v1/admin/audit", environ_base=from_address("::1"))
    assert response.status_code == 401


def test_ipv4_mapped_ipv6_outside_address_is_refused(client):
    response = client.get("/api/v1/admin/audit", environ_base=from_address("::ffff:203.0.113.7"))
    assert_network_refused(response)


def test_valid_admin_token_from_outside_is_refused(client, runtime):
    tokens = login(client, runtime, make_staff(runtime, Role.ADMIN))

    inside = client.get("/api/v1/admin/audit", headers=bearer(tokens))
    outside = client.get(
        "/api/v1/admin/audit", headers=bearer(tokens), environ_base=from_address(OUTSIDE)
    )

    assert inside.status_code == 200
    assert_network_refused(outside)


def test_member_routes_are_not_refused_for_network_reasons(client, runtime):
    tokens = login(client, runtime, make_member(runtime))

    anonymous = client.get("/api/v1/me", environ_base=from_address(OUTSIDE))
    signed_in = client.get("/api/v1/me", headers=bearer(tokens), environ_base=from_address(OUTSIDE))

    assert anonymous.status_code == 401
    assert anonymous.get_json()["error"]["code"] == "not_authenticated"
    assert signed_in.status_code == 200


def test_forwarded_for_is_ignored_without_trusted_proxies(client):
    response = client.get(
        "/api/v1/admin/audit",
        headers={"X-Forwarded-For": "127.0.0.1"},
        environ_base=from_address(OUTSIDE),
    )
    assert_network_refused(response)


@pytest.fixture
def proxied_client(make_app):
    """An app behind one trusted reverse proxy that connects from 127.0.0.1."""
    return make_app(trusted_proxies=1, trusted_proxy_networks="127.0.0.1/32").test_client()


def test_a_hop_count_without_proxy_addresses_is_refused_at_start(make_app):
    """``MEDCHAT_TRUSTED_PROXIES=1`` alone believed X-Forwarded-For from any peer."""
    with pytest.raises(ConfigurationError, match="MEDCHAT_TRUSTED_PROXY_NETWORKS"):
        make_app(trusted_proxies=1)


def test_forwarded_for_from_a_peer_that_is_not_a_proxy_is_ignored(make_app):
    """The finding: a direct request to gunicorn, claiming a staff address in the header."""
    client = make_app(trusted_proxies=1, trusted_proxy_networks=f"{PROXY}/32").test_client()

    direct = client.get(
        "/api/v1/admin/audit",
        headers={"X-Forwarded-For": "127.0.0.1"},
        environ_base=from_address(OUTSIDE),
    )
    through_the_proxy = client.get(
        "/api/v1/admin/audit",
        headers={"X-Forwarded-For": "127.0.0.1"},
        environ_base=from_address(PROXY),
    )

    assert_network_refused(direct)
    assert through_the_proxy.status_code == 401
    assert through_the_proxy.get_json()["error"]["code"] == "not_authenticated"


def test_a_staff_address_that_is_not_a_proxy_keeps_its_own_address(make_app):
    client = make_app(trusted_proxies=1, trusted_proxy_networks=f"{PROXY}/32").test_client()

    response = client.get(
        "/api/v1/admin/audit",
        headers={"X-Forwarded-For": OUTSIDE},
        environ_base=from_address("127.0.0.1"),
    )

    assert response.status_code == 401  # its own, allowed address: the header is not read


def test_behind_two_proxies_each_hop_must_come_from_a_proxy(make_app):
    """ProxyFix(x_for=2) would take the second entry from the right whoever wrote it."""
    client = make_app(trusted_proxies=2, trusted_proxy_networks="10.9.0.0/24").test_client()

    def fetch(forwarded_for: str):
        return client.get(
            "/api/v1/admin/audit",
            headers={"X-Forwarded-For": forwarded_for},
            environ_base=from_address("10.9.0.2"),
        )

    # client -> load balancer 10.9.0.1 -> nginx 10.9.0.2 -> gunicorn
    assert fetch("127.0.0.7, 10.9.0.1").status_code == 401
    # a forged entry in front of an outside hop: the outside hop is the client
    assert_network_refused(fetch(f"127.0.0.7, {OUTSIDE}"))
    # more entries than proxies: the client's own additions are not read
    assert_network_refused(fetch(f"127.0.0.7, {OUTSIDE}, 10.9.0.1"))
    # garbage where an address belongs
    assert_network_refused(fetch("not-an-address, 10.9.0.1"))


def test_behind_a_proxy_an_outside_client_is_refused(proxied_client):
    response = proxied_client.get(
        "/api/v1/admin/audit",
        headers={"X-Forwarded-For": OUTSIDE},
        environ_base=from_address("127.0.0.1"),
    )
    assert_network_refused(response)


def test_behind_a_proxy_an_inside_client_reaches_authentication(proxied_client):
    response = proxied_client.get(
        "/api/v1/admin/audit",
        headers={"X-Forwarded-For": "127.0.0.5"},
        environ_base=from_address("127.0.0.1"),
    )
    assert response.status_code == 401
    assert response.get_json()["error"]["code"] == "not_authenticated"


def test_behind_a_proxy_only_the_last_hop_counts(proxied_client):
    """The client prepends an allowed address; the proxy appends the real one."""
    response = proxied_client.get(
        "/api/v1/admin/audit",
        headers={"X-Forwarded-For": f"127.0.0.1, {OUTSIDE}"},
        environ_base=from_address("127.0.0.1"),
    )
    assert_network_refused(response)


def test_network_refusal_is_audited_and_the_chain_verifies(client, runtime):
    assert denied_entries(runtime) == []

    assert_network_refused(client.get("/api/v1/admin/audit", environ_base=from_address(OUTSIDE)))

    (entry,) = denied_entries(runtime)
    assert entry.outcome == "denied"
    assert address_of(runtime, entry) == OUTSIDE
    details = json.loads(entry.details)
    assert details["code"] == "network_not_allowed"
    assert details["status"] == 403
    with runtime.database.transaction() as session:
        result = audit.verify(session, runtime.keys.audit_mac)
    assert result.ok, result.reason


def test_audited_refusal_behind_a_proxy_records_the_client_address(make_app):
    app = make_app(trusted_proxies=1, trusted_proxy_networks="127.0.0.1/32")
    runtime = app.extensions["medchat"]

    assert_network_refused(
        app.test_client().get(
            "/console", headers={"X-Forwarded-For": OUTSIDE}, environ_base=from_address("127.0.0.1")
        )
    )

    (entry,) = denied_entries(runtime)
    assert address_of(runtime, entry) == OUTSIDE
    assert json.loads(entry.details)["code"] == "network_not_allowed"
