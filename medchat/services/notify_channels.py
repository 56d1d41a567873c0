"""Delivering one outbox row by its channel: Web Push, e-mail, the insurer's webhook.

What each carries, and nothing more (docs/security.md "Notifications"):

- **Web Push**: ``{"id": <event id>, "text": "You have a new message"}``, encrypted to the
  subscription's key (RFC 8291, aes128gcm) and signed with the VAPID key (RFC 8292), so the
  push service (Google, Mozilla, Apple) reads neither. ``Topic`` is the outbox row's id: a
  retried push replaces an undelivered copy at the push service instead of adding one.
- **E-mail**: the same generic text and a link into the app, to the account's own address
  (opened at delivery); no greeting name, no subject of any question. ``Message-ID`` is made
  of the row's id, so a resent copy is the same message to the mail system.
- **Webhook**: ``POST MEDCHAT_NOTIFY_WEBHOOK_URL`` with ``{"id", "event_id", "kind",
  "account_id", "text", "created_at"}``, ``Idempotency-Key: <row id>`` and
  ``X-Medchat-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(notify-webhook.key,
  "<t>." + body)>``.

Every channel sends the outbox row's id as its idempotency key: the worker marks a row
delivered in the transaction that claimed it, so a crash between the send and the commit
(the one window left) sends a copy the receiver can recognise.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging

import requests
from py_vapid import Vapid
from pywebpush import WebPushException, webpush
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from access_control import web_push
from medchat import audit
from medchat.clock import iso_z
from medchat.errors import ValidationFailed
from medchat.models import (
    Account,
    AccountStatus,
    AuthToken,
    Channel,
    Conversation,
    ConversationStatus,
    NotificationKind,
    NotificationOutbox,
    PushSubscription,
)
from medchat.services.accounts import AccountService
from medchat.services.context import ServiceContext
from medchat.services.mail import compose
from medchat.services.notifications import (
    NotificationPreferences,
    PushSubscriptions,
    check_endpoint,
)

log = logging.getLogger("medchat.notify")

GENERIC_TEXT = "You have a new message"
SIGNATURE_HEADER = "X-Medchat-Signature"
HTTP_TIMEOUT = 10.0
PUSH_TTL_SECONDS = 24 * 3600
#: Kinds a member opted into per channel; the others name their channel themselves.
CONSENTED = frozenset(
    {NotificationKind.REPLY, NotificationKind.CLOSED, NotificationKind.HISTORY_PENDING}
)


class DeliveryFailed(Exception):
    """The channel did not take the notification; the worker retries it later."""


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def webhook_signature(key: bytes, timestamp: int, body: bytes) -> str:
    """The ``X-Medchat-Signature`` value of ``body`` sent at ``timestamp``."""
    mac = hmac.new(key, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


class Channels:
    def __init__(self, session: Session, runtime: ServiceContext) -> None:
        self.session = session
        self.runtime = runtime

    def deliver(self, row: NotificationOutbox) -> str:
        """Send ``row``; 'sent' or 'skipped' (nothing to send to, or consent withdrawn).

        Raises ``DeliveryFailed`` when the channel should be tried again.
        """
        account = self.session.get(Account, row.account_id)
        if account is None or account.status != AccountStatus.ACTIVE:
            return "skipped"
        if row.kind in CONSENTED:
            enabled = NotificationPreferences(self.session, self.runtime).enabled(account.id)
            if row.channel not in enabled:
                return "skipped"
        if row.channel == Channel.PUSH:
            return self._push(row)
        if row.channel == Channel.EMAIL:
            return self._email(row, account)
        if row.channel == Channel.WEBHOOK:
            return self._webhook(row)
        return "skipped"

    # -- Web Push ------------------------------------------------------------------------

    def _push(self, row: NotificationOutbox) -> str:
        subscriptions = PushSubscriptions(self.session, self.runtime)
        targets = subscriptions.of(row.account_id)
        if not targets:
            return "skipped"
        vapid = Vapid.from_raw(web_push.vapid_private_raw(self.runtime.keys.vapid).encode())
        payload = json.dumps({"id": str(row.event_id), "text": GENERIC_TEXT})
        failed = delivered = 0
        # No redirects: a push service answers where it was asked, or not at all.
        http = requests.Session()
        http.max_redirects = 0
        for target in targets:
            if not self._still_allowed(target.endpoint):
                self._drop(target, "endpoint_refused")
                continue
            info = {
                "endpoint": target.endpoint,
                "keys": {"p256dh": _b64url(target.p256dh), "auth": _b64url(target.auth)},
            }
            try:
                webpush(
                    info,
                    data=payload,
                    vapid_private_key=vapid,
                    vapid_claims={"sub": self.runtime.settings.notify_vapid_subject},
                    headers={"Topic": row.id.hex, "Idempotency-Key": str(row.id)},
                    ttl=PUSH_TTL_SECONDS,
                    timeout=HTTP_TIMEOUT,
                    requests_session=http,
                )
            except WebPushException as exc:
                status = exc.response.status_code if exc.response is not None else None
                if status in (404, 410):
                    # The browser dropped it (RFC 8030 7.3): nothing will ever arrive there.
                    self._drop(target, f"push_service_{status}")
                    continue
                log.warning("push delivery failed (status %s)", status)
                failed += 1
            except requests.RequestException as exc:
                log.warning("push delivery failed (%s)", type(exc).__name__)
                failed += 1
            else:
                delivered += 1
        if failed:
            raise DeliveryFailed(f"{failed} of {len(targets)} push endpoints did not take it")
        return "sent" if delivered else "skipped"

    def _still_allowed(self, endpoint: str) -> bool:
        """The registration's rule again (``check_endpoint``): the allowed hosts may have
        narrowed, or the row be older than a rule, since it was stored."""
        settings = self.runtime.settings
        try:
            check_endpoint(
                endpoint,
                production=settings.is_production,
                allowed=settings.push_service_hosts,
            )
        except ValidationFailed:
            return False
        return True

    def _drop(self, target: PushSubscription, reason: str) -> None:
        """Delete a subscription nothing will reach again; a data change, so audited."""
        self.session.delete(target)
        audit.record(
            self.session,
            "notification.push_drop",
            subject_id=target.account_id,
            target_type="push_subscription",
            target_id=target.id,
            details={"reason": reason},
        )

    # -- e-mail --------------------------------------------------------------------------

    def _email(self, row: NotificationOutbox, account: Account) -> str:
        address = AccountService(self.session, self.runtime).email_of(account)
        if not address:
            return "skipped"
        subject, body = self._mail_text(row)
        message = compose(address, subject, body, at=self.runtime.clock.now())
        del message["Message-ID"]
        message["Message-ID"] = f"<notification-{row.id}@medchat.invalid>"
        try:
            self.runtime.mailer.send(message)
        except Exception as exc:
            # The type only: SMTP error texts quote addresses, which logs must not hold.
            log.warning("notification mail failed (%s)", type(exc).__name__)
            raise DeliveryFailed(type(exc).__name__) from None
        return "sent"

    def _mail_text(self, row: NotificationOutbox) -> tuple[str, str]:
        link = self.runtime.settings.public_base_url.rstrip("/") + "/"
        if row.kind == NotificationKind.NEW_DEVICE:
            return "New sign-in to your medchat account", self._new_device_text(row)
        if row.kind == NotificationKind.DIGEST:
            waiting = self.session.scalar(
                select(func.count())
                .select_from(Conversation)
                .where(Conversation.status == ConversationStatus.OPEN)
            )
            return (
                "medchat: questions are waiting",
                f"Questions waiting for a doctor now: {waiting or 0}.\n\n"
                f"Open the console to answer them: {link}console\n",
            )
        return (
            "medchat: " + GENERIC_TEXT.lower(),
            f"{GENERIC_TEXT}.\n\nOpen medchat to read it: {link}\n\n"
            "You get this mail because you turned on e-mail notifications; turn them off in\n"
            "the app's settings.\n",
        )

    def _new_device_text(self, row: NotificationOutbox) -> str:
        device, same_network = "an unknown device", False
        if row.ref_id is not None:
            token = self.session.scalars(
                select(AuthToken).where(AuthToken.family_id == row.ref_id).limit(1)
            ).first()
            if token is not None:
                device = token.device or device
                if token.network is not None:
                    same_network = bool(
                        self.session.scalar(
                            select(func.count())
                            .select_from(AuthToken)
                            .where(
                                AuthToken.account_id == row.account_id,
                                AuthToken.family_id != row.ref_id,
                                AuthToken.network == token.network,
                            )
                        )
                    )
        place = (
            "from a network your account signed in from before"
            if same_network
            else "from a network not seen on your account"
        )
        return (
            f"Your medchat account was signed in to on {iso_z(row.created_at)} from a device\n"
            f"not seen on it before ({device}), {place}.\n\n"
            "If this was you, there is nothing to do. If not, change your password at once and\n"
            "end that sign-in in the app (Settings, Sign-ins).\n"
        )

    # -- webhook -------------------------------------------------------------------------

    def _webhook(self, row: NotificationOutbox) -> str:
        url = self.runtime.settings.notify_webhook_url
        if not url:
            return "skipped"
        body = json.dumps(
            {
                "id": str(row.id),
                "event_id": str(row.event_id),
                "kind": row.kind,
                "account_id": str(row.account_id),
                "text": GENERIC_TEXT,
                "created_at": iso_z(row.created_at),
            },
            separators=(",", ":"),
        ).encode()
        timestamp = int(self.runtime.clock.now().timestamp())
        headers = {
            "Content-Type": "application/json",
            "Idempotency-Key": str(row.id),
            SIGNATURE_HEADER: webhook_signature(self.runtime.keys.notify_webhook, timestamp, body),
        }
        try:
            answer = requests.post(
                url, data=body, headers=headers, timeout=HTTP_TIMEOUT, allow_redirects=False
            )
        except requests.RequestException as exc:
            log.warning("webhook delivery failed (%s)", type(exc).__name__)
            raise DeliveryFailed(type(exc).__name__) from None
        if not 200 <= answer.status_code < 300:
            log.warning("webhook delivery failed (status %s)", answer.status_code)
            raise DeliveryFailed(str(answer.status_code))
        return "sent"


__all__ = ["GENERIC_TEXT", "SIGNATURE_HEADER", "Channels", "DeliveryFailed"]
