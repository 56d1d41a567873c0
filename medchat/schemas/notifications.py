"""Bodies of the member's notification settings and Web Push subscriptions (docs/api.md)."""

from __future__ import annotations

from typing import Any

import marshmallow as ma
from marshmallow import fields, validate, validates_schema

from medchat.schemas.common import JsonBoolean, Pattern, StrictSchema, UtcDateTime

#: base64url without padding (browsers send it so); the decoded size is checked by the service.
_B64URL = r"^[A-Za-z0-9_-]+={0,2}$"


class ChannelStateSchema(ma.Schema):
    enabled = fields.Boolean(required=True)
    updated_at = UtcDateTime(allow_none=True, required=True)


class NotificationSettingsSchema(ma.Schema):
    """One entry per channel (``webhook`` notifies only where the deployment set one up)."""

    push = fields.Nested(ChannelStateSchema, required=True)
    email = fields.Nested(ChannelStateSchema, required=True)
    webhook = fields.Nested(ChannelStateSchema, required=True)


class NotificationSettingsUpdateSchema(StrictSchema):
    """Channels to turn on (``true``) or off; channels left out keep their state. An empty
    body is a 422 (a consent decision that decides nothing is a client mistake)."""

    class Meta(StrictSchema.Meta):
        json_schema = {"minProperties": 1}

    @validates_schema
    def _something_to_decide(self, data: dict[str, bool], **_kwargs: Any) -> None:
        if not data:
            raise ma.ValidationError("Give at least one channel.", "_schema")

    # JSON's true or false, never 0, 1 or "yes": consent is not guessed (``JsonBoolean``).
    push = JsonBoolean()
    email = JsonBoolean()
    webhook = JsonBoolean()


class PushKeysSchema(StrictSchema):
    p256dh = fields.String(
        required=True,
        validate=[validate.Length(min=86, max=88), Pattern(_B64URL, "Not base64url.")],
        metadata={
            "description": "The subscription's public key: an uncompressed point of P-256 "
            "(65 bytes, base64url); any other bytes are a 422."
        },
    )
    auth = fields.String(
        required=True,
        validate=[validate.Length(min=22, max=24), Pattern(_B64URL, "Not base64url.")],
        metadata={"description": "The subscription's authentication secret (16 bytes)."},
    )


class PushSubscriptionCreateSchema(StrictSchema):
    """A browser's ``PushSubscription.toJSON()`` (``expirationTime`` is accepted and unused)."""

    endpoint = fields.String(
        required=True,
        validate=validate.Length(min=12, max=2048),
        metadata={
            "description": "The push service's URL for this browser: https, on a push "
            "service's host (MEDCHAT_PUSH_SERVICE_HOSTS; FCM, Mozilla, Apple and Windows by "
            "default), no credentials or fragment; any other URL is a 422."
        },
    )
    keys = fields.Nested(PushKeysSchema, required=True)
    expirationTime = fields.Integer(strict=True, allow_none=True, load_default=None)


class PushSubscriptionSchema(ma.Schema):
    id = fields.UUID(required=True)
    created_at = UtcDateTime(required=True)


class VapidKeySchema(ma.Schema):
    public_key = fields.String(
        required=True,
        metadata={"description": "`applicationServerKey` for `PushManager.subscribe` (base64url)."},
    )
