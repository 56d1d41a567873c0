"""``/api/v1/me/notifications`` and ``/api/v1/me/push-subscriptions``: a member's consent to
notifications per channel and their browsers' Web Push subscriptions; ``/api/v1/push/vapid-key``
for the app to subscribe. What a notification carries: ``medchat.services.notify_channels``."""

from __future__ import annotations

import uuid
from typing import Any

from access_control.permissions import Permission
from medchat.api.blueprint import Blueprint
from medchat.schemas.notifications import (
    NotificationSettingsSchema,
    NotificationSettingsUpdateSchema,
    PushSubscriptionCreateSchema,
    PushSubscriptionSchema,
    VapidKeySchema,
)
from medchat.services.notifications import NotificationPreferences, PushSubscriptions
from medchat.web.context import db_session, runtime
from medchat.web.guard import requires, signed_in

bp = Blueprint("notifications", __name__, url_prefix="/api/v1", description="Member notifications")


@bp.route("/me/notifications", methods=["GET"])
@requires(Permission.MEMBER_PROFILE)
@bp.response(200, NotificationSettingsSchema)
def notification_settings() -> dict[str, Any]:
    """Which channels the member opted into (all off until they turn one on)."""
    return NotificationPreferences(db_session(), runtime()).state(signed_in().id)


@bp.route("/me/notifications", methods=["PUT"])
@requires(Permission.MEMBER_PROFILE_UPDATE)
@bp.arguments(NotificationSettingsUpdateSchema)
@bp.response(200, NotificationSettingsSchema)
def update_notification_settings(data: dict[str, bool]) -> dict[str, Any]:
    """Opt in or out per channel: consent, audited and in the export. A channel this
    deployment does not offer is a 422."""
    return NotificationPreferences(db_session(), runtime()).set(signed_in().id, data)


@bp.route("/me/push-subscriptions", methods=["POST"])
@requires(Permission.MEMBER_PROFILE_UPDATE)
@bp.arguments(PushSubscriptionCreateSchema)
@bp.response(201, PushSubscriptionSchema)
def subscribe(data: dict[str, Any]) -> Any:
    """Register this browser's Web Push subscription (https endpoint, P-256 key, 16-byte
    secret; the same endpoint again replaces its keys). At most 10 per member."""
    view = PushSubscriptions(db_session(), runtime()).register(
        signed_in().id, data["endpoint"], data["keys"]["p256dh"], data["keys"]["auth"]
    )
    return {"id": view.id, "created_at": view.created_at}


@bp.route("/me/push-subscriptions/<uuid:subscription_id>", methods=["DELETE"])
@requires(Permission.MEMBER_PROFILE_UPDATE)
@bp.response(204)
def unsubscribe(subscription_id: uuid.UUID) -> None:
    """Remove a subscription: nothing is pushed there again. 404 for any other id."""
    PushSubscriptions(db_session(), runtime()).remove(signed_in().id, subscription_id)


@bp.route("/push/vapid-key", methods=["GET"])
@requires(Permission.PUBLIC)
@bp.response(200, VapidKeySchema)
def vapid_key() -> dict[str, str]:
    """The server's VAPID public key (RFC 8292), for ``PushManager.subscribe``."""
    return {"public_key": PushSubscriptions(db_session(), runtime()).vapid_public_key()}
