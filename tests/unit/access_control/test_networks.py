"""Staff-network rule (SECURITY-MODEL "Authentication")."""

from __future__ import annotations

import ipaddress

import pytest

from access_control.networks import is_staff_path, require_allowed_network
from medchat.errors import NetworkNotAllowed

NETWORKS = (ipaddress.ip_network("10.20.0.0/16"), ipaddress.ip_network("2001:db8::/32"))


@pytest.mark.parametrize("address", ["10.20.3.4", "2001:db8::7", "::ffff:10.20.0.1"])
def test_addresses_inside_the_networks_pass(address):
    require_allowed_network(address, NETWORKS)


@pytest.mark.parametrize(
    "address", ["10.21.0.1", "203.0.113.9", "2001:db9::1", "", None, "not-an-ip"]
)
def test_everything_else_is_refused(address):
    with pytest.raises(NetworkNotAllowed):
        require_allowed_network(address, NETWORKS)


def test_no_network_configured_refuses_everyone():
    with pytest.raises(NetworkNotAllowed):
        require_allowed_network("127.0.0.1", ())


@pytest.mark.parametrize(
    ("path", "staff"),
    [
        ("/console", True),
        ("/console/queue", True),
        ("/api/v1/clinician/queue", True),
        ("/api/v1/compliance/archive/search", True),
        ("/api/v1/admin/audit", True),
        ("/api/v1/me", False),
        ("/api/v1/auth/token", False),
        ("/api/v1/administrator", False),
        ("/consoles", False),
    ],
)
def test_staff_paths_are_matched_by_whole_segment(path, staff):
    assert is_staff_path(path) is staff
