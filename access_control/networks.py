"""Staff surfaces answer only from allowed networks (SECURITY-MODEL "Authentication").

The client address is the WSGI ``REMOTE_ADDR``: the peer that connected, unless that peer is a
configured reverse proxy (``MEDCHAT_TRUSTED_PROXY_NETWORKS``). Only then is ``X-Forwarded-For``
read, from the right, one hop per proxy (``MEDCHAT_TRUSTED_PROXIES`` at most), and each further
hop only while the address it came from is itself a configured proxy. A client that connects
directly, or sits behind an untrusted hop, cannot claim an address by sending the header:
werkzeug's ``ProxyFix`` believes a hop count from any peer, which let a direct request with
``X-Forwarded-For: 127.0.0.1`` reach the admin API (issue 12, item 10).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from access_control.errors import ConfigurationError, NetworkNotAllowed

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

STAFF_PATH_PREFIXES = (
    "/console",
    "/api/v1/clinician",
    "/api/v1/compliance",
    "/api/v1/admin",
    "/api/v1/dpo",
    # Prometheus' scrapes (medchat.web.metrics_endpoint): no sign-in, so the network is the
    # whole of the check.
    "/metrics",
)
#: ``REMOTE_ADDR`` when a trusted proxy forwarded something that is not an address: no
#: network contains it, so staff surfaces refuse it, and the audit log says so.
UNKNOWN_ADDRESS = "unknown"


#: Where a reverse proxy on the same host connects from: a deployment whose staff networks are
#: only these sees every request as staff unless the proxy's forwarding is configured.
_LOOPBACK = tuple(
    ipaddress.ip_network(net) for net in ("127.0.0.0/8", "::1/128", "::ffff:127.0.0.0/104")
)


def parse_networks(value: str, name: str = "staff_networks") -> tuple[IPNetwork, ...]:
    """A comma-separated list of CIDRs from ``MEDCHAT_<NAME>`` (``ConfigurationError`` names
    the variable and the part that is not one)."""
    networks = []
    for part in value.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            networks.append(ipaddress.ip_network(part, strict=False))
        except ValueError as exc:
            raise ConfigurationError(f"MEDCHAT_{name.upper()}: {part!r} is not a CIDR") from exc
    return tuple(networks)


def _within(net: IPNetwork, outer: IPNetwork) -> bool:
    """``net`` lies inside ``outer``; never across IPv4 and IPv6 (``subnet_of`` refuses those)."""
    if isinstance(net, ipaddress.IPv4Network) and isinstance(outer, ipaddress.IPv4Network):
        return net.subnet_of(outer)
    if isinstance(net, ipaddress.IPv6Network) and isinstance(outer, ipaddress.IPv6Network):
        return net.subnet_of(outer)
    return False


def is_loopback_only(networks: tuple[IPNetwork, ...]) -> bool:
    """Every network lies within the loopback ranges (a proxy on the same host)."""
    return all(any(_within(net, loop) for loop in _LOOPBACK) for net in networks)


def is_staff_path(path: str) -> bool:
    return any(path == prefix or path.startswith(prefix + "/") for prefix in STAFF_PATH_PREFIXES)


def in_networks(address: str | None, networks: Iterable[IPNetwork]) -> bool:
    """Whether ``address`` (IPv4, IPv6 or IPv4-mapped IPv6) lies in one of ``networks``."""
    if not address:
        return False
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip.version == net.version and ip in net for net in networks)


#: How much of an IPv6 address rate limits count as one client: a /64, the smallest prefix a
#: site is given (RFC 6177), within which any host may take any of 2^64 addresses.
RATE_LIMIT_IPV6_PREFIX = 64


def rate_limit_address(address: str | None) -> str:
    """The part of a client address that per-address limits count.

    An IPv4 address is itself (an IPv4-mapped IPv6 address too); an IPv6 address is its /64
    (``2001:db8:1:1::/64``): counted address by address, one subscriber's prefix had 2^64
    budgets. What is not an address is counted as it is.
    """
    if not address:
        return "unknown"
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/{RATE_LIMIT_IPV6_PREFIX}", strict=False))
    return str(ip)


def require_allowed_network(address: str | None, networks: Iterable[IPNetwork]) -> None:
    """Raise ``NetworkNotAllowed`` unless ``address`` lies in one of ``networks``."""
    if not in_networks(address, networks):
        raise NetworkNotAllowed


def forwarded_client(
    peer: str | None, forwarded_for: str | None, proxies: Sequence[IPNetwork], hops: int
) -> tuple[str | None, int]:
    """The client's address and how many ``X-Forwarded-For`` hops were believed for it.

    Walks the header from the right: the last entry was written by the proxy that connected
    to us, so it is believed only if ``peer`` is a configured proxy; the one before it only
    if that entry is a configured proxy too, and so on, ``hops`` times at most. An entry that
    is not an IP address ends the walk at ``UNKNOWN_ADDRESS``.
    """
    address = peer
    chain = [part.strip() for part in (forwarded_for or "").split(",")]
    chain = [part for part in chain if part]
    believed = 0
    while believed < hops and chain and in_networks(address, proxies):
        address = chain.pop()
        believed += 1
        try:
            ipaddress.ip_address(address)
        except ValueError:
            return UNKNOWN_ADDRESS, believed
    return address, believed


class TrustedProxies:
    """WSGI middleware: ``REMOTE_ADDR`` (and the scheme) as the trusted proxies saw them.

    Applied by the app factory only when ``MEDCHAT_TRUSTED_PROXY_NETWORKS`` is set; the peer
    the proxy connected from is kept in ``medchat.proxy_peer``. ``X-Forwarded-Proto`` is
    read at the same hop as the address, from the same trusted proxies.
    """

    def __init__(self, app: Callable[..., Any], proxies: Sequence[IPNetwork], hops: int) -> None:
        self.app = app
        self.proxies = tuple(proxies)
        self.hops = hops

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        peer = environ.get("REMOTE_ADDR")
        address, believed = forwarded_client(
            peer, environ.get("HTTP_X_FORWARDED_FOR"), self.proxies, self.hops
        )
        if believed:
            environ["medchat.proxy_peer"] = peer
            environ["REMOTE_ADDR"] = address
            protos = [p.strip() for p in environ.get("HTTP_X_FORWARDED_PROTO", "").split(",")]
            if len(protos) >= believed and protos[-believed] in ("http", "https"):
                environ["wsgi.url_scheme"] = protos[-believed]
        return self.app(environ, start_response)
