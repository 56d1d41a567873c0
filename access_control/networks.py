"""Staff surfaces answer only from allowed networks (SECURITY-MODEL "Authentication").

The client address comes from the WSGI ``REMOTE_ADDR`` after werkzeug's ``ProxyFix`` has
taken exactly ``MEDCHAT_TRUSTED_PROXIES`` hops from ``X-Forwarded-For``; with no trusted proxy
the header is ignored, so a client cannot claim an address by sending it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from medchat.errors import NetworkNotAllowed

STAFF_PATH_PREFIXES = (
    "/console",
    "/api/v1/clinician",
    "/api/v1/compliance",
    "/api/v1/admin",
)


def is_staff_path(path: str) -> bool:
    return any(path == prefix or path.startswith(prefix + "/") for prefix in STAFF_PATH_PREFIXES)


def is_allowed_network(
    address: str | None, networks: Iterable[ipaddress.IPv4Network | ipaddress.IPv6Network]
) -> bool:
    """Whether ``address`` lies in one of ``networks`` (a missing or garbled address: no)."""
    if not address:
        return False
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip.version == net.version and ip in net for net in networks)


def require_allowed_network(
    address: str | None, networks: Iterable[ipaddress.IPv4Network | ipaddress.IPv6Network]
) -> None:
    """Raise ``NetworkNotAllowed`` unless ``address`` lies in one of ``networks``."""
    if not is_allowed_network(address, networks):
        raise NetworkNotAllowed
