"""Notifications that carry no health content (issue 17 item 1): what to send, to whom, where.

- ``notification_outbox``: one row per event and channel, written in the transaction of the
  event (a reply, a close, history pending after a reset, a sign-in from a new device) and
  delivered by ``medchat notify run``. It holds the event's kind and the recipient's account
  id, never content, a subject or a name; where to deliver (the address, the subscriptions) is
  read at delivery. A row makes the server send mail and pushes: **tagged**, so a database
  writer cannot plant one, and ``delivered_at`` is under the tag, so clearing it cannot make a
  delivered row go out again.
- ``push_subscriptions``: a browser's Web Push endpoint and keys; tagged (a planted one would
  make the server push to a stranger's endpoint).
- ``notification_preferences``: the member's opt-in per channel (consent: audited, exported);
  tagged (a planted opt-in would start mail the member refused).
- ``known_devices``: the device labels an account signed in from, so a sign-in from a new one
  is mailed; tagged (a planted label would silence that mail).
"""

from __future__ import annotations

import enum
import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, Index, LargeBinary, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from medchat.db import Base, new_id
from medchat.models.integrity import TaggedRow, tagged


class Channel(enum.StrEnum):
    PUSH = "push"
    EMAIL = "email"
    WEBHOOK = "webhook"


class NotificationKind(enum.StrEnum):
    REPLY = "reply"
    CLOSED = "closed"
    HISTORY_PENDING = "history_pending"
    NEW_DEVICE = "new_device"
    DIGEST = "digest"


class NotificationOutbox(TaggedRow, Base):
    __tablename__ = "notification_outbox"
    # What is sent, to whom, by which channel, and whether it went; the retry schedule
    # (``attempts``, ``next_attempt_at``) only times it.
    __row_integrity__ = tagged(
        "id", "event_id", "kind", "account_id", "channel", "ref_id", "created_at", "delivered_at"
    )
    __table_args__ = (
        # One row per event, channel and recipient: a digest enqueued by two hosts is one.
        UniqueConstraint("event_id", "channel", "account_id", name="uq_notification_event"),
        Index("ix_notification_due", "delivered_at", "next_attempt_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    #: Opaque: the one id a push or webhook carries, shared by an event's channels.
    event_id: Mapped[uuid.UUID]
    kind: Mapped[str] = mapped_column(String(24))
    account_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), index=True
    )
    channel: Mapped[str] = mapped_column(String(16))
    #: The sign-in family of a ``new_device`` notice (its device label is read at delivery).
    ref_id: Mapped[uuid.UUID | None]
    created_at: Mapped[datetime]
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime]
    delivered_at: Mapped[datetime | None]


class PushSubscription(TaggedRow, Base):
    __tablename__ = "push_subscriptions"
    __row_integrity__ = tagged("id", "account_id", "endpoint", "p256dh", "auth")

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    account_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), index=True
    )
    endpoint: Mapped[str] = mapped_column(String(2048))
    p256dh: Mapped[bytes] = mapped_column(LargeBinary(65))
    auth: Mapped[bytes] = mapped_column(LargeBinary(16))
    created_at: Mapped[datetime]


class NotificationPreference(TaggedRow, Base):
    __tablename__ = "notification_preferences"
    __row_integrity__ = tagged("id", "account_id", "channel", "enabled")
    __table_args__ = (UniqueConstraint("account_id", "channel", name="uq_notification_choice"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    channel: Mapped[str] = mapped_column(String(16))
    enabled: Mapped[bool]
    updated_at: Mapped[datetime]


class KnownDevice(TaggedRow, Base):
    __tablename__ = "known_devices"
    __row_integrity__ = tagged("id", "account_id", "device")
    __table_args__ = (UniqueConstraint("account_id", "device", name="uq_known_device"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    device: Mapped[str] = mapped_column(String(64))
    first_seen_at: Mapped[datetime]


__all__ = [
    "Channel",
    "KnownDevice",
    "NotificationKind",
    "NotificationOutbox",
    "NotificationPreference",
    "PushSubscription",
]
