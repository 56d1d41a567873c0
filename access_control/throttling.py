"""Brute-force limits on sign-in: per client address and, progressively, per account.

Flask-Limiter counts in shared storage (``MEDCHAT_RATELIMIT_STORAGE_URI``: ``memory://`` for
one process, ``redis://`` for many hosts), so every process stays stateless. The per-account
limits count failed attempts only and tighten with the window (5 in 15 minutes, 10 an hour,
20 a day): that is the progressive lockout. The account key is the e-mail's blind index, so
unknown and known addresses are limited alike and no address is written to the storage.
"""

from __future__ import annotations

from flask import Response, request
from flask_limiter import Limiter

#: Every sign-in style request from one address.
PER_ADDRESS = "30 per minute; 300 per hour"
#: Failed attempts against one account, whatever address they come from.
PER_ACCOUNT_FAILURES = "5 per 15 minutes; 10 per hour; 20 per day"


def client_address() -> str:
    """The client address after ``ProxyFix`` (spoofed headers are ignored without proxies)."""
    return request.remote_addr or "unknown"


def is_failed_attempt(response: Response) -> bool:
    """Only wrong credentials, wrong codes and bad tokens count toward a lockout."""
    return response.status_code == 401


limiter = Limiter(key_func=client_address, headers_enabled=True, strategy="fixed-window")
