"""The member's portability export: everything held about them that they can read.

Right of access and portability (docs/data-rights.md; API.md ``GET /api/v1/me/export``): the
member's own full profile, the versioned history of their consents, and every live
conversation of theirs with its subject, status, times, decrypted messages and attachment
metadata (id, file name, type, size; the bytes stay behind ``GET /api/v1/attachments/{id}``).
A clinician appears by display name only, as on messages. It ends with what an erasure would
leave behind, why and for how long (``medchat.services.kept_after_deletion``).

Sealed conversations are not exported: the member deleted them and they left the member's
interface (SECURITY-MODEL "Deletion, sealed archive"). A conversation whose history waits to
be re-sealed to the member's new key after a password reset cannot be decrypted yet; it is
listed with ``readable`` false and ``history_pending`` true (metadata only) rather than left
out, so the member knows to export again later. A conversation that fails an integrity check
is listed the same way with ``unavailable`` ``integrity_failed`` (refused and audited,
``conversation_refusals``), and the rest of the export is served.

Each conversation's DEK is opened once, with the member's session key, and its messages are
read in one query (plus one for attachment metadata and one for clinicians' names), so the
cost grows with conversations, never with a query per message. The export is audited
(``member.export``) with the member as subject; ``medchat.schemas.fhir_bundle`` reshapes it as FHIR.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from access_control.roles import Role
from medchat import audit
from medchat.errors import Forbidden
from medchat.identity.principal import Principal
from medchat.models import LIVE_STATUSES, Consent, Conversation
from medchat.services.context import ServiceContext
from medchat.services.conversation_refusals import INTEGRITY_FAILED
from medchat.services.conversation_views import HISTORY_PENDING, ConversationView
from medchat.services.conversations import ConversationService
from medchat.services.kept_after_deletion import KeptItem, kept_after_deletion
from medchat.services.notifications import NotificationPreferences
from medchat.services.profiles import ProfileService
from medchat.services.restrictions import RestrictionService

FORMATS = ("json", "fhir")


@dataclass
class ExportedConversation:
    view: ConversationView
    closed_at: datetime | None

    @property
    def history_pending(self) -> bool:
        return self.view.unavailable == HISTORY_PENDING

    def as_dict(self) -> dict[str, Any]:
        view = self.view
        return {
            "id": view.id,
            "subject": view.subject,
            "status": view.status,
            "created_at": view.created_at,
            "last_message_at": view.last_message_at,
            "status_since": view.status_since,
            "closed_at": self.closed_at,
            "readable": view.readable,
            "history_pending": self.history_pending,
            "unavailable": view.unavailable,
            "messages": view.messages,
        }


@dataclass
class MemberExport:
    exported_at: datetime
    profile: dict[str, Any]
    consents: list[dict[str, Any]]
    #: Every restriction of processing and objection, oldest first (``services.restrictions``).
    restrictions: list[dict[str, Any]] = field(default_factory=list)
    #: What an erasure would leave behind, why and for how long (``kept_after_deletion``).
    kept_after_deletion: tuple[KeptItem, ...] = ()
    conversations: list[ExportedConversation] = field(default_factory=list)
    notifications: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "exported_at": self.exported_at,
            "profile": self.profile,
            "consents": self.consents,
            "conversations": [c.as_dict() for c in self.conversations],
            "notifications": self.notifications,
            "restrictions": self.restrictions,
            "kept_after_deletion": [item.as_dict() for item in self.kept_after_deletion],
        }


class ExportService:
    def __init__(self, session: Session, runtime: ServiceContext) -> None:
        self.session = session
        self.runtime = runtime
        self.conversations = ConversationService(session, runtime)

    def export(self, actor: Principal, *, format: str = "json") -> MemberExport:
        """Everything the member can read, oldest conversation first; audited.

        Raises ``Forbidden`` for anyone but a member.
        """
        if actor.role != Role.MEMBER:
            raise Forbidden
        result = MemberExport(
            exported_at=self.runtime.clock.now(),
            profile=ProfileService(self.session, self.runtime).own_profile(actor.account),
            consents=self._consents(actor),
            notifications=NotificationPreferences(self.session, self.runtime).export(actor.id),
            restrictions=RestrictionService(self.session, self.runtime).history(actor.id),
            kept_after_deletion=kept_after_deletion(self.runtime.settings),
        )
        rows = self.session.scalars(
            select(Conversation)
            .where(Conversation.member_id == actor.id, Conversation.status.in_(LIVE_STATUSES))
            .order_by(Conversation.created_at, Conversation.id)
        )
        for conversation in rows:
            result.conversations.append(self._conversation(actor, conversation))
        audit.record(
            self.session,
            "member.export",
            target_type="account",
            target_id=actor.id,
            subject_id=actor.id,
            details={
                "format": format,
                "conversations": len(result.conversations),
                "pending": sum(c.history_pending for c in result.conversations),
                "refused": sum(
                    c.view.unavailable == INTEGRITY_FAILED for c in result.conversations
                ),
            },
        )
        return result

    def _consents(self, actor: Principal) -> list[dict[str, Any]]:
        """Every consent decision, grants and withdrawals, oldest first (rows are never
        deleted: ``ConsentService``)."""
        rows = self.session.scalars(
            select(Consent)
            .where(Consent.account_id == actor.id)
            .order_by(Consent.granted_at, Consent.id)
        )
        return [
            {
                "purpose": row.purpose,
                "version": row.version,
                "granted_at": row.granted_at,
                "withdrawn_at": row.withdrawn_at,
            }
            for row in rows
        ]

    def _conversation(self, actor: Principal, conversation: Conversation) -> ExportedConversation:
        view = self.conversations.listed(actor, conversation, with_messages=True)
        return ExportedConversation(view, conversation.closed_at)
