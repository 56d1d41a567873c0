"""A clinician's canned replies (issue 17, item 5): texts they reuse in answers.

Personal: each doctor keeps their own, sealed so that only their session opens them
(``medchat.keys.personal_sealing``), not colleagues, not the server, not a database copy.
Creating, changing and deleting one are audited (the entries name the template, never its
text); they are the doctor's own words, not a member's content, so listing them is not a
content read. A template sealed under an earlier personal key (before a staff reset) opens
for nobody and is left out of the list. At most ``MAX_TEMPLATES`` each.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from access_control import crypto
from medchat import audit
from medchat.errors import (
    Conflict,
    KeyIntegrityFailure,
    NotFound,
    PersonalKeyRequired,
)
from medchat.identity.principal import Principal
from medchat.keys.personal_sealing import PersonalSeal
from medchat.models import ReplyTemplate
from medchat.services.clinician_conversations import ClinicianConversationService
from medchat.services.context import ServiceContext

MAX_TEMPLATES = 100
PURPOSE = "reply-template"


@dataclass(frozen=True)
class TemplateView:
    id: uuid.UUID
    title: str
    body: str
    updated_at: datetime


class ReplyTemplateService:
    def __init__(self, session: Session, runtime: ServiceContext) -> None:
        self.session = session
        self.runtime = runtime

    def _seal(self, actor: Principal) -> tuple[PersonalSeal, uuid.UUID]:
        # Every clinician route asks for the physician key (403 ``role_key_required``): one
        # rule for the whole audience, and without it there is nothing to answer anyway.
        ClinicianConversationService(self.session, self.runtime).require_audience(actor)
        keyring = actor.keyring
        if keyring.personal is None or keyring.personal_key_row_id is None:
            raise PersonalKeyRequired
        return PersonalSeal(keyring, PURPOSE), keyring.personal_key_row_id

    def _view(self, seal: PersonalSeal, row: ReplyTemplate) -> TemplateView:
        try:
            return TemplateView(
                row.id,
                seal.open(row.id, "title", row.title),
                seal.open(row.id, "body", row.body),
                row.updated_at,
            )
        except crypto.DecryptionFailed as exc:
            raise KeyIntegrityFailure("This template does not open: it was altered.") from exc

    def _mine(self, actor: Principal, template_id: uuid.UUID, key_id: uuid.UUID) -> ReplyTemplate:
        row = self.session.get(ReplyTemplate, template_id)
        if row is None or row.owner_id != actor.id or row.personal_key_id != key_id:
            raise NotFound("No such template.")
        return row

    def list(self, actor: Principal) -> list[TemplateView]:
        seal, key_id = self._seal(actor)
        rows = self.session.scalars(
            select(ReplyTemplate)
            .where(ReplyTemplate.owner_id == actor.id, ReplyTemplate.personal_key_id == key_id)
            .order_by(ReplyTemplate.created_at, ReplyTemplate.id)
        ).all()
        views = [self._view(seal, row) for row in rows]
        return sorted(views, key=lambda view: view.title.casefold())

    def get(self, actor: Principal, template_id: uuid.UUID) -> TemplateView:
        seal, key_id = self._seal(actor)
        return self._view(seal, self._mine(actor, template_id, key_id))

    def create(self, actor: Principal, title: str, body: str) -> TemplateView:
        seal, key_id = self._seal(actor)
        held = self.session.scalar(
            select(func.count())
            .select_from(ReplyTemplate)
            .where(ReplyTemplate.owner_id == actor.id)
        )
        if (held or 0) >= MAX_TEMPLATES:
            raise Conflict(f"At most {MAX_TEMPLATES} templates: delete one first.")
        now = self.runtime.clock.now()
        template_id = uuid.uuid4()
        self.session.add(
            ReplyTemplate(
                id=template_id,
                owner_id=actor.id,
                personal_key_id=key_id,
                title=seal.seal(template_id, "title", title),
                body=seal.seal(template_id, "body", body),
                created_at=now,
                updated_at=now,
            )
        )
        self.session.flush()
        self._audit("reply_template.create", template_id)
        return TemplateView(template_id, title, body, now)

    def update(
        self, actor: Principal, template_id: uuid.UUID, title: str, body: str
    ) -> TemplateView:
        seal, key_id = self._seal(actor)
        row = self._mine(actor, template_id, key_id)
        now = self.runtime.clock.now()
        row.title = seal.seal(row.id, "title", title)
        row.body = seal.seal(row.id, "body", body)
        row.updated_at = now
        self._audit("reply_template.update", row.id)
        return TemplateView(row.id, title, body, now)

    def delete(self, actor: Principal, template_id: uuid.UUID) -> None:
        self._seal(actor)
        row = self.session.get(ReplyTemplate, template_id)
        if row is None or row.owner_id != actor.id:
            raise NotFound("No such template.")
        self.session.delete(row)
        self._audit("reply_template.delete", template_id)

    def _audit(self, action: str, template_id: uuid.UUID) -> None:
        audit.record(self.session, action, target_type="reply_template", target_id=template_id)
