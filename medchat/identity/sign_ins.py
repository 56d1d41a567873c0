"""A person's live sign-ins, as they are shown to them: device, when, from where, which is this.

A sign-in is a token family (``identity.tokens``): the API pair a login opens and every pair
its refreshes issue, or one console session. What the list shows decides nothing, so it is
kept coarse and apart from the row tag:

- the device is a label from a fixed vocabulary made from the User-Agent at sign-in
  ("Firefox on Linux"); the User-Agent itself is not stored (it can single out a person);
- the place is a keyed MAC of the sign-in address's network (an IPv4 /24, an IPv6 /48), good
  only for "same network as now"; no address and no geolocation are stored;
- "last used" is the last time the family was issued a token (sign-in or refresh): a write
  on every request would cost more than the answer is worth, and access tokens are short.

Ending a sign-in deletes its rows (``TokenStore.revoke_family``): its tokens stop at once.
"""

from __future__ import annotations

import ipaddress
import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from access_control import crypto
from medchat.models import AuthToken, TokenKind

_NETWORK_LABEL = "medchat/sign-in-network/v1"
#: (User-Agent fragment, label), first match wins: order matters (Edge says "Chrome" too).
_BROWSERS = (
    ("Edg/", "Edge"),
    ("OPR/", "Opera"),
    ("Firefox/", "Firefox"),
    ("Chrome/", "Chrome"),
    ("Safari/", "Safari"),
    ("okhttp", "Android app"),
    ("CFNetwork", "iOS app"),
    ("Dart/", "App"),
    ("curl/", "curl"),
    ("python-requests", "Script"),
)
_SYSTEMS = (
    ("Android", "Android"),
    ("iPhone", "iOS"),
    ("iPad", "iPadOS"),
    ("Windows", "Windows"),
    ("Mac OS X", "macOS"),
    ("Macintosh", "macOS"),
    ("CrOS", "ChromeOS"),
    ("Linux", "Linux"),
)
_KINDS = (TokenKind.ACCESS, TokenKind.REFRESH, TokenKind.CONSOLE)


def device_label(user_agent: str | None) -> str | None:
    """A label from the vocabulary above, or None: never any other text of the User-Agent."""
    if not user_agent:
        return None
    browser = next((label for part, label in _BROWSERS if part in user_agent), None)
    system = next((label for part, label in _SYSTEMS if part in user_agent), None)
    if browser and system:
        return f"{browser} on {system}"
    return browser or system or "Unknown device"


def network_mac(key: bytes, address: str | None) -> bytes | None:
    """A keyed MAC of the address's network, or None for no (or no valid) address."""
    try:
        parsed = ipaddress.ip_address(address or "")
    except ValueError:
        return None
    prefix = 24 if parsed.version == 4 else 48
    network = ipaddress.ip_network(f"{parsed}/{prefix}", strict=False)
    return crypto.mac(key, _NETWORK_LABEL, str(network))


@dataclass(frozen=True)
class SignInView:
    id: uuid.UUID
    kind: str
    device: str | None
    created_at: datetime
    last_used_at: datetime
    same_network: bool
    current: bool


def _live(row: AuthToken, now: datetime) -> bool:
    return row.used_at is None and row.expires_at > now


def live_sign_ins(
    session: Session,
    account_id: uuid.UUID,
    now: datetime,
    *,
    current_family: uuid.UUID | None,
    network: bytes | None,
) -> list[SignInView]:
    """The account's families with a live token, newest use first.

    Rows are loaded as objects, so each one's tag is checked (``storage.row_integrity``).
    """
    rows = session.scalars(
        select(AuthToken)
        .where(AuthToken.account_id == account_id, AuthToken.kind.in_(_KINDS))
        .order_by(AuthToken.created_at)
    ).all()
    families: dict[uuid.UUID, list[AuthToken]] = {}
    for row in rows:
        families.setdefault(row.family_id, []).append(row)
    views = []
    for family_id, members in families.items():
        if not any(_live(row, now) for row in members):
            continue
        newest = members[-1]
        used = max(
            max(row.created_at for row in members),
            max(
                (row.last_used_at for row in members if row.last_used_at),
                default=members[0].created_at,
            ),
        )
        views.append(
            SignInView(
                id=family_id,
                kind="console" if newest.kind == TokenKind.CONSOLE else "api",
                device=newest.device,
                created_at=members[0].created_at,
                last_used_at=used,
                same_network=network is not None and newest.network == network,
                current=family_id == current_family,
            )
        )
    return sorted(views, key=lambda view: view.last_used_at, reverse=True)
