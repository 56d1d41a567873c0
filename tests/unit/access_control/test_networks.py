"""Staff-network rule (SECURITY-MODEL "Authentication")."""

from __future__ import annotations

import ipaddress

import pytest

from access_control.errors import ConfigurationError
from access_control.networks import (
    UNKNOWN_ADDRESS,
    TrustedProxies,
    forwarded_client,
    is_staff_path,
    parse_networks,
    rate_limit_address,
    require_allowed_network,
)
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


PROXIES = (ipaddress.ip_network("10.9.0.0/24"), ipaddress.ip_network("::1/128"))


@pytest.mark.parametrize(
    ("peer", "header", "hops", "expected"),
    [
        # not a proxy: the header is never read, whatever the hop count
        ("203.0.113.9", "10.20.0.1", 1, ("203.0.113.9", 0)),
        ("203.0.113.9", "10.20.0.1", 5, ("203.0.113.9", 0)),
        # one proxy: its entry, and nothing a client wrote in front of it
        ("10.9.0.2", "10.20.0.1", 1, ("10.20.0.1", 1)),
        ("10.9.0.2", "10.20.0.1, 203.0.113.9", 1, ("203.0.113.9", 1)),
        # one proxy and a client inside the proxies' network: one hop is all that is read,
        # so the address the client wrote in front of its own is never believed
        ("10.9.0.2", "203.0.113.66, 10.9.0.7", 1, ("10.9.0.7", 1)),
        ("::1", "203.0.113.9", 1, ("203.0.113.9", 1)),
        # two proxies: the second hop only because the first came from a proxy
        ("10.9.0.2", "10.20.0.1, 10.9.0.1", 2, ("10.20.0.1", 2)),
        ("10.9.0.2", "10.20.0.1, 203.0.113.9", 2, ("203.0.113.9", 1)),
        # fewer entries than proxies: the last address there is
        ("10.9.0.2", "10.9.0.1", 2, ("10.9.0.1", 1)),
        ("10.9.0.2", None, 1, ("10.9.0.2", 0)),
        ("10.9.0.2", " , ", 1, ("10.9.0.2", 0)),
        # not an address where one belongs
        ("10.9.0.2", "10.20.0.1:443", 1, (UNKNOWN_ADDRESS, 1)),
        ("10.9.0.2", "evil\x00", 1, (UNKNOWN_ADDRESS, 1)),
    ],
)
def test_forwarded_for_is_read_hop_by_hop_from_configured_proxies_only(
    peer, header, hops, expected
):
    assert forwarded_client(peer, header, PROXIES, hops) == expected


def test_the_middleware_rewrites_the_address_and_scheme_only_for_a_proxy():
    seen = {}

    def app(environ, start_response):
        seen.update(environ)
        return []

    middleware = TrustedProxies(app, PROXIES, 1)
    headers = {"HTTP_X_FORWARDED_FOR": "10.20.0.1", "HTTP_X_FORWARDED_PROTO": "https"}
    middleware({"REMOTE_ADDR": "203.0.113.9", "wsgi.url_scheme": "http", **headers}, None)
    assert (seen["REMOTE_ADDR"], seen["wsgi.url_scheme"]) == ("203.0.113.9", "http")
    assert "medchat.proxy_peer" not in seen

    middleware({"REMOTE_ADDR": "10.9.0.2", "wsgi.url_scheme": "http", **headers}, None)
    assert (seen["REMOTE_ADDR"], seen["wsgi.url_scheme"]) == ("10.20.0.1", "https")
    assert seen["medchat.proxy_peer"] == "10.9.0.2"


@pytest.mark.parametrize(
    ("scheme", "header", "expected"),
    [
        # the proxy's word, either way, even against the scheme it connected to us with
        ("https", "http", "http"),
        ("http", "https", "https"),
        # several values (written without spaces): the one at the believed hop
        ("http", "http,https", "https"),
        ("https", "https , http", "http"),
        # anything else leaves the scheme as it was
        ("http", "HTTPS", "http"),
        ("http", "gopher", "http"),
    ],
)
def test_the_scheme_is_the_one_the_trusted_proxy_saw(scheme, header, expected):
    seen = {}

    def app(environ, start_response):
        seen.update(environ)
        return []

    environ = {
        "REMOTE_ADDR": "10.9.0.2",
        "wsgi.url_scheme": scheme,
        "HTTP_X_FORWARDED_FOR": "10.20.0.1",
        "HTTP_X_FORWARDED_PROTO": header,
    }
    TrustedProxies(app, PROXIES, 1)(environ, None)
    assert seen["wsgi.url_scheme"] == expected


def test_a_network_list_skips_empty_parts_and_keeps_what_follows() -> None:
    assert parse_networks(" 10.0.0.0/8, ,,192.168.0.0/16 ,") == (
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("192.168.0.0/16"),
    )
    assert parse_networks("") == ()


def test_a_network_written_with_its_host_bits_is_read_as_its_network() -> None:
    assert parse_networks("10.1.2.3/8,2001:db8::1/32") == (
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("2001:db8::/32"),
    )


def test_a_part_that_is_not_a_network_names_the_setting_it_came_from() -> None:
    with pytest.raises(ConfigurationError, match=r"^MEDCHAT_STAFF_NETWORKS: 'nope' is not a CIDR$"):
        parse_networks("10.0.0.0/8, nope")
    with pytest.raises(ConfigurationError, match=r"^MEDCHAT_TRUSTED_PROXIES: '300.1.1.1'"):
        parse_networks("300.1.1.1", "trusted_proxies")


@pytest.mark.parametrize(
    ("address", "counted"),
    [
        ("203.0.113.7", "203.0.113.7"),
        ("::ffff:203.0.113.7", "203.0.113.7"),
        ("2001:db8:1:1::1", "2001:db8:1:1::/64"),
        ("2001:db8:1:1:ffff:ffff:ffff:ffff", "2001:db8:1:1::/64"),
        ("2001:DB8:1:1:0:0:0:2", "2001:db8:1:1::/64"),
        ("2001:db8:1:2::1", "2001:db8:1:2::/64"),
        ("::1", "::/64"),
        ("unknown", "unknown"),
        ("", "unknown"),
        (None, "unknown"),
    ],
)
def test_rate_limits_count_an_ipv6_address_by_its_64_prefix(address, counted):
    assert rate_limit_address(address) == counted
