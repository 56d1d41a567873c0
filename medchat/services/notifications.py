"""Notifications that carry no health content (issue 17 item 1): writing them, and consent.

An event that a member (or a clinician) should hear of writes outbox rows in its own
transaction (``enqueue``): one per channel the recipient opted into, each holding only the
event's kind, the recipient's account id and an opaque event id. A rolled-back event leaves
no row; ``medchat notify run`` (``services.notify_worker``) delivers what committed. Nothing
here or in the rows names the question, its subject, its author or the member.

Opting in per channel is consent (``NotificationPreferences``): off until the member turns it
on, each change audited with the member as subject and listed in their export. A sign-in
from a new device is a security notice: it is mailed whatever the preferences, as the
password-change notice is (``services.notices``).
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import requests
from sqlalchemy import bindparam, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from access_control import web_push
from medchat import audit
from medchat.errors import Conflict, NotFound, ValidationFailed
from medchat.models import (
    Channel,
    KnownDevice,
    NotificationKind,
    NotificationOutbox,
    NotificationPreference,
    PushSubscription,
)
from medchat.services.context import ServiceContext
from medchat.storage.row_integrity import intact

#: Channels a member opts into; the webhook only where the deployment configured one.
MEMBER_CHANNELS = (Channel.PUSH, Channel.EMAIL, Channel.WEBHOOK)
MAX_SUBSCRIPTIONS = 10
MAX_ENDPOINT = 2048


def enqueue(
    session: Session,
    runtime: ServiceContext,
    kind: NotificationKind,
    account_id: uuid.UUID,
    *,
    channels: tuple[Channel, ...] | None = None,
    ref_id: uuid.UUID | None = None,
    event_id: uuid.UUID | None = None,
) -> int:
    """Write the outbox rows of one event (in the caller's transaction); returns how many.

    ``channels`` None: those the account opted into. A security notice names its own.
    """
    if channels is None:
        channels = NotificationPreferences(session, runtime).enabled(account_id)
    now = runtime.clock.now()
    event = event_id or uuid.uuid4()
    for channel in channels:
        session.add(
            NotificationOutbox(
                event_id=event,
                kind=kind,
                account_id=account_id,
                channel=channel,
                ref_id=ref_id,
                created_at=now,
                attempts=0,
                next_attempt_at=now,
            )
        )
    return len(channels)


#: An account's preference rows, built once (building a statement costs more than running it).
_PREFERENCES = select(NotificationPreference).where(
    NotificationPreference.account_id == bindparam("account_id")
)


class NotificationPreferences:
    """A member's opt-in per channel: consent, so audited and exported."""

    def __init__(self, session: Session, runtime: ServiceContext) -> None:
        self.session = session
        self.runtime = runtime

    def available(self) -> tuple[Channel, ...]:
        """Every channel may be chosen (one schema for every deployment); the webhook only
        notifies where ``MEDCHAT_NOTIFY_WEBHOOK_URL`` is set."""
        return MEMBER_CHANNELS

    def _rows(self, account_id: uuid.UUID) -> dict[str, NotificationPreference]:
        rows = intact(self.session, _PREFERENCES, {"account_id": account_id})
        return {row.channel: row for row in rows}

    def state(self, account_id: uuid.UUID) -> dict[str, Any]:
        rows = self._rows(account_id)
        return {
            channel.value: {
                "enabled": bool(rows.get(channel) and rows[channel].enabled),
                "updated_at": rows[channel].updated_at if channel in rows else None,
            }
            for channel in self.available()
        }

    def enabled(self, account_id: uuid.UUID) -> tuple[Channel, ...]:
        """The channels to notify by: chosen, and (the webhook) configured."""
        rows = self._rows(account_id)
        configured = bool(self.runtime.settings.notify_webhook_url)
        return tuple(
            c
            for c in self.available()
            if c in rows and rows[c].enabled and (c != Channel.WEBHOOK or configured)
        )

    def set(self, account_id: uuid.UUID, choices: dict[str, bool]) -> dict[str, Any]:
        """Turn channels on or off; each change is one audited consent decision."""
        offered = {channel.value for channel in self.available()}
        unknown = sorted(set(choices) - offered)
        if unknown:
            raise ValidationFailed(
                details={name: ["Not a notification channel here."] for name in unknown}
            )
        rows = self._rows(account_id)
        now = self.runtime.clock.now()
        for channel, enabled in sorted(choices.items()):
            row = rows.get(channel)
            if row is not None and row.enabled == enabled:
                continue
            if row is None:
                row = NotificationPreference(account_id=account_id, channel=channel)
                self.session.add(row)
            row.enabled, row.updated_at = enabled, now
            audit.record(
                self.session,
                "notification.consent",
                target_type="account",
                target_id=account_id,
                subject_id=account_id,
                details={"channel": channel, "enabled": enabled},
            )
        try:
            # A savepoint: two first choices of one channel at once meet the unique key.
            with self.session.begin_nested():
                self.session.flush()
        except IntegrityError:
            raise Conflict("Another change of these settings came first; try again.") from None
        return self.state(account_id)

    def export(self, account_id: uuid.UUID) -> dict[str, Any]:
        """What the member's export lists: the choices and how many push subscriptions."""
        subscriptions = self.session.scalar(
            select(func.count())
            .select_from(PushSubscription)
            .where(PushSubscription.account_id == account_id)
        )
        return {"channels": self.state(account_id), "push_subscriptions": subscriptions or 0}


def _b64url(value: str, size: int, field: str) -> bytes:
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError):
        raise ValidationFailed(details={field: ["Not base64url."]}) from None
    if len(raw) != size:
        raise ValidationFailed(details={field: [f"Must decode to {size} bytes."]})
    return raw


def _ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """``host`` as an IP address, or None for a name."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _loopback(host: str) -> bool:
    ip = _ip(host)
    return host == "localhost" or (ip is not None and ip.is_loopback)


def _allowed_host(host: str, allowed: tuple[str, ...]) -> bool:
    host = host.lower().rstrip(".")
    return any(host == name or host.endswith("." + name) for name in allowed)


#: What an endpoint may be made of: RFC 3986's unreserved and reserved characters and
#: percent escapes. A backslash, a non-ASCII dot or a space is read differently by different
#: URL parsers (``https://127.0.0.1\.fcm.googleapis.com/`` is a push service's host to
#: ``urlsplit`` and 127.0.0.1 to the HTTP client that delivers).
_URL = re.compile(r"[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]+")
#: A host name as DNS spells it (an IP literal is matched by ``ipaddress``).
_HOST = re.compile(
    r"(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.?"
)


def _delivered_to(endpoint: str) -> str | None:
    """The host the HTTP client that delivers (requests, parsing with urllib3) connects to."""
    try:
        url = requests.Request("POST", endpoint).prepare().url
    except (requests.RequestException, ValueError):
        return None
    return urlsplit(url).hostname if url else None


def check_endpoint(endpoint: str, *, production: bool, allowed: tuple[str, ...]) -> str:
    """An https URL on a push service's host (``MEDCHAT_PUSH_SERVICE_HOSTS``): never an
    address of the member's choosing. In development a loopback host is let in too (plain
    http included), for a local push endpoint in tests.

    The host is read twice, by ``urlsplit`` and by urllib3 (what delivers), and the two must
    agree: a URL the two parsers read differently is refused, whatever either makes of it.
    Checked again at each delivery (``notify_channels``), so a row stored before a rule
    tightened is not delivered to.
    """
    problem = None
    try:
        parts = urlsplit(endpoint)
        host = parts.hostname or ""
    except ValueError:
        parts, host = None, ""
    if len(endpoint) > MAX_ENDPOINT or _URL.fullmatch(endpoint) is None:
        problem = "Too long, or holds characters a URL may not (spaces, backslashes, ...)."
    elif (
        parts is None
        or not host
        or parts.username
        or parts.password
        or parts.fragment
        or (_delivered_to(endpoint) or "").rstrip(".") != host.rstrip(".")
        or not (_HOST.fullmatch(host) or _ip(host) is not None)
    ):
        problem = "Must be an absolute URL with a host and nothing else before it."
    elif parts.scheme != "https" and not (
        parts.scheme == "http" and not production and _loopback(host)
    ):
        problem = "Must be an https URL."
    elif not (_allowed_host(host, allowed) or (not production and _loopback(host))):
        problem = "Not a known push service."
    if problem:
        raise ValidationFailed(details={"endpoint": [problem]})
    return endpoint


@dataclass(frozen=True)
class SubscriptionView:
    id: uuid.UUID
    created_at: datetime


class PushSubscriptions:
    """A member's Web Push subscriptions (tagged rows: a planted one is refused)."""

    def __init__(self, session: Session, runtime: ServiceContext) -> None:
        self.session = session
        self.runtime = runtime

    def of(self, account_id: uuid.UUID) -> list[PushSubscription]:
        return intact(
            self.session,
            select(PushSubscription)
            .where(PushSubscription.account_id == account_id)
            .order_by(PushSubscription.created_at),
        )

    def register(
        self, account_id: uuid.UUID, endpoint: str, p256dh: str, auth: str
    ) -> SubscriptionView:
        """Store a browser's subscription (the same endpoint again replaces its keys)."""
        settings = self.runtime.settings
        check_endpoint(
            endpoint, production=settings.is_production, allowed=settings.push_service_hosts
        )
        point = _b64url(p256dh, web_push.PUBLIC_KEY_SIZE, "keys.p256dh")
        if not web_push.is_subscription_key(point):
            raise ValidationFailed(details={"keys.p256dh": ["Not a P-256 public key."]})
        secret = _b64url(auth, web_push.AUTH_SECRET_SIZE, "keys.auth")
        existing = self.of(account_id)
        row = next((sub for sub in existing if sub.endpoint == endpoint), None)
        if row is None:
            if len(existing) >= MAX_SUBSCRIPTIONS:
                raise ValidationFailed(
                    details={
                        "endpoint": [f"At most {MAX_SUBSCRIPTIONS} subscriptions; remove one."]
                    }
                )
            row = PushSubscription(
                account_id=account_id, endpoint=endpoint, created_at=self.runtime.clock.now()
            )
            self.session.add(row)
        row.p256dh, row.auth = point, secret
        self.session.flush()
        audit.record(
            self.session,
            "notification.push_subscribe",
            target_type="push_subscription",
            target_id=row.id,
            subject_id=account_id,
        )
        return SubscriptionView(row.id, row.created_at)

    def remove(self, account_id: uuid.UUID, subscription_id: uuid.UUID) -> None:
        row = self.session.get(PushSubscription, subscription_id)
        if row is None or row.account_id != account_id:
            raise NotFound("No such push subscription.")
        self.session.delete(row)
        audit.record(
            self.session,
            "notification.push_unsubscribe",
            target_type="push_subscription",
            target_id=subscription_id,
            subject_id=account_id,
        )

    def vapid_public_key(self) -> str:
        return web_push.vapid_public_key(self.runtime.keys.vapid)


def note_device(
    session: Session,
    runtime: ServiceContext,
    account_id: uuid.UUID,
    device: str | None,
    family_id: uuid.UUID,
) -> bool:
    """Remember a sign-in's device label; mail the account when it is new (returns whether).

    The first device an account is ever seen on is only remembered: mailing a member about
    their very first sign-in (or the first since this table existed) tells them nothing.
    """
    if not device:
        return False
    known = intact(session, select(KnownDevice).where(KnownDevice.account_id == account_id))
    if any(row.device == device for row in known):
        return False
    try:
        # A savepoint: two sign-ins from the same new device at once both try to add it.
        with session.begin_nested():
            session.add(
                KnownDevice(account_id=account_id, device=device, first_seen_at=runtime.clock.now())
            )
    except IntegrityError:
        return False
    if not known:
        return False
    enqueue(
        session,
        runtime,
        NotificationKind.NEW_DEVICE,
        account_id,
        channels=(Channel.EMAIL,),
        ref_id=family_id,
    )
    return True
