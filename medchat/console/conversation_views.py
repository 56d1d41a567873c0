"""Console pages for the queue and a conversation, on the clinician services.

Every page calls ``ClinicianConversationService`` (or ``AttachmentService``), exactly as the
clinician API does: the same row checks, the same minimal patient view, the same audit
entries for each read. Pages work without JavaScript: each action is a form post followed by
a redirect (post/redirect/get), so reloading never repeats an action.
"""

from __future__ import annotations

import uuid
from typing import Any

from flask import abort, redirect, render_template, request, url_for

# wtforms 3.3 has it (tuples are deprecated); its type stubs do not yet.
from wtforms.fields.choices import SelectChoice  # type: ignore[attr-defined]

from access_control.permissions import Permission
from medchat.console import bp
from medchat.console.forms import REASON_LABELS, ActionForm, AttachForm, HandoffForm, ReplyForm
from medchat.errors import MedchatError
from medchat.identity.principal import Principal
from medchat.models import ConversationStatus
from medchat.schemas.cursors import (
    decode_activity_cursor,
    decode_seq_cursor,
    encode_activity_cursor,
    encode_cursor,
)
from medchat.services.attachments import AttachmentService, Upload
from medchat.services.clinician_conversations import CLAIM_FILTERS, ClinicianConversationService
from medchat.services.drafts import DraftService
from medchat.services.read_markers import ReadMarkers
from medchat.services.reply_templates import ReplyTemplateService
from medchat.web.context import db_session, runtime
from medchat.web.guard import requires, signed_in
from medchat.web.responses import download_response

TABS = (
    (ConversationStatus.OPEN, "Waiting"),
    (ConversationStatus.ANSWERED, "Answered"),
    (ConversationStatus.CLOSED, "Closed"),
)
#: The queue's claim filters as the console names them (``?claim=``).
CLAIM_TABS = tuple(zip(CLAIM_FILTERS, ("All", "Unclaimed", "Claimed", "Mine"), strict=True))
PAGE_SIZE = 25
MESSAGES_PER_PAGE = 50


def _service() -> ClinicianConversationService:
    return ClinicianConversationService(db_session(), runtime())


@bp.get("/queue")
@requires(Permission.CLINICIAN_CONVERSATIONS)
def queue() -> Any:
    """The three tabs: waiting (oldest first), answered, closed; unread ones marked; each
    filtered all / unclaimed / claimed / mine, with who holds each question."""
    status = request.args.get("status", ConversationStatus.OPEN)
    claim = request.args.get("claim", "all")
    if status not in {tab for tab, _ in TABS} or claim not in CLAIM_FILTERS:
        abort(404)
    principal = signed_in()
    page = _service().queue(
        principal,
        status=status,
        limit=PAGE_SIZE,
        after=decode_activity_cursor(request.args.get("cursor")),
        claim=claim,
    )
    unread = ReadMarkers(db_session()).unread(principal.id, [item.id for item in page.items])
    next_url = None
    if page.next_cursor is not None:
        next_url = url_for(
            "console.queue",
            status=status,
            claim=claim,
            cursor=encode_activity_cursor(page.next_cursor),
        )
    return render_template(
        "console/queue.html",
        tabs=TABS,
        claim_tabs=CLAIM_TABS,
        claim=claim,
        status=status,
        items=page.items,
        unread=unread,
        next_url=next_url,
    )


@bp.get("/conversations/<uuid:conversation_id>")
@requires(Permission.CLINICIAN_CONVERSATIONS)
def conversation(conversation_id: uuid.UUID) -> Any:
    """Messages oldest first (the latest page by default), reply, attach, close."""
    principal = signed_in()
    service = _service()
    case = service.case(principal, conversation_id)
    before = decode_seq_cursor(request.args.get("before"))
    page = service.messages(principal, conversation_id, limit=MESSAGES_PER_PAGE, cursor=before)
    messages = list(reversed(page.items))
    earlier_url = None
    if page.next_cursor is not None:
        earlier_url = url_for(
            "console.conversation",
            conversation_id=conversation_id,
            before=encode_cursor(page.next_cursor),
        )
    if before is None:  # the latest page: read through (audited, as the API's mark is)
        service.mark_read(principal, conversation_id)
    reply_form = ReplyForm()
    templates = []
    if case.status != "closed":
        draft = DraftService(db_session(), runtime()).find(principal, conversation_id)
        reply_form.body.data = draft.body if draft else None
        templates = ReplyTemplateService(db_session(), runtime()).list(principal)
        chosen = next((t for t in templates if str(t.id) == request.args.get("template")), None)
        if chosen is not None:  # "Use": the answer starts from the canned reply
            reply_form.body.data = chosen.body
    handoff_form = HandoffForm()
    handoff_form.to.choices = _colleagues(service, principal)
    return render_template(
        "console/conversation.html",
        case=case,
        handoff_form=handoff_form,
        claim_form=ActionForm(),
        reasons=REASON_LABELS,
        messages=messages,
        earlier_url=earlier_url,
        reply_form=reply_form,
        templates=templates,
        attach_form=AttachForm(),
        close_form=ActionForm(),
        notice=request.args.get("notice"),
    )


def _colleagues(service: ClinicianConversationService, principal: Principal) -> list[Any]:
    """The hand-over choices: the other active clinicians."""
    return [
        SelectChoice(str(account_id), label)
        for account_id, label in service.conversations.claims.colleagues(principal)
    ]


def _back(conversation_id: uuid.UUID, notice: str | None = None) -> Any:
    return redirect(url_for("console.conversation", conversation_id=conversation_id, notice=notice))


def _problem(error: MedchatError) -> Any:
    """Domain refusals (closed, consent withdrawn, bad file) as a page with the same status."""
    return (
        render_template("console/error.html", title="Not possible", message=error.message),
        error.status,
    )


@bp.post("/conversations/<uuid:conversation_id>/reply")
@requires(Permission.CLINICIAN_CONVERSATIONS)
def reply(conversation_id: uuid.UUID) -> Any:
    form = ReplyForm()
    if not form.validate_on_submit():
        return _problem(MedchatError("Write an answer (at most 10,000 characters)."))
    try:
        _service().reply(signed_in(), conversation_id, form.body.data or "")
    except MedchatError as error:
        if error.status in (404, 403) and error.code != "consent_required":
            raise
        return _problem(error)
    return _back(conversation_id, "sent")


@bp.post("/conversations/<uuid:conversation_id>/draft")
@requires(Permission.CLINICIAN_CONVERSATIONS)
def save_draft(conversation_id: uuid.UUID) -> Any:
    """The answer form's "Save draft": the text kept, sealed, for this clinician only."""
    form = ReplyForm()
    if not form.validate_on_submit():
        return _problem(MedchatError("Write something to save (at most 10,000 characters)."))
    try:
        DraftService(db_session(), runtime()).save(
            signed_in(), conversation_id, form.body.data or ""
        )
    except MedchatError as error:
        if error.status in (404, 403):
            raise
        return _problem(error)
    return _back(conversation_id, "draft_saved")


@bp.post("/conversations/<uuid:conversation_id>/attach")
@requires(Permission.CLINICIAN_CONVERSATIONS)
def attach(conversation_id: uuid.UUID) -> Any:
    form = AttachForm()
    if not form.validate_on_submit():
        return _problem(MedchatError("Choose a file to attach."))
    part = form.file.data
    upload = Upload(filename=part.filename, declared_type=part.mimetype, data=part.stream.read())
    try:
        AttachmentService(db_session(), runtime()).upload(signed_in(), conversation_id, upload)
    except MedchatError as error:
        if error.status in (404, 403) and error.code != "consent_required":
            raise
        return _problem(error)
    return _back(conversation_id, "attached")


@bp.post("/conversations/<uuid:conversation_id>/close")
@requires(Permission.CLINICIAN_CONVERSATIONS)
def close(conversation_id: uuid.UUID) -> Any:
    if not ActionForm().validate_on_submit():
        abort(403)
    try:
        _service().close(signed_in(), conversation_id)
    except MedchatError as error:
        if error.status != 409:
            raise
        return _problem(error)
    return _back(conversation_id, "closed")


@bp.post("/conversations/<uuid:conversation_id>/claim")
@requires(Permission.CLINICIAN_CONVERSATIONS)
def claim(conversation_id: uuid.UUID) -> Any:
    """Take the question (or renew one's claim), as ``POST .../claim`` of the API."""
    if not ActionForm().validate_on_submit():
        abort(403)
    try:
        _service().claim(signed_in(), conversation_id)
    except MedchatError as error:
        if error.status != 409:
            raise
        return _problem(error)
    return _back(conversation_id, "claimed")


@bp.post("/conversations/<uuid:conversation_id>/release")
@requires(Permission.CLINICIAN_CONVERSATIONS)
def release(conversation_id: uuid.UUID) -> Any:
    """Give one's claim up: the question is back in the queue."""
    if not ActionForm().validate_on_submit():
        abort(403)
    try:
        _service().release(signed_in(), conversation_id)
    except MedchatError as error:
        if error.status != 409:
            raise
        return _problem(error)
    return _back(conversation_id, "released")


@bp.post("/conversations/<uuid:conversation_id>/handoff")
@requires(Permission.CLINICIAN_CONVERSATIONS)
def handoff(conversation_id: uuid.UUID) -> Any:
    """Hand one's claim to a colleague with a reason from the list."""
    form = HandoffForm()
    principal = signed_in()
    service = _service()
    form.to.choices = _colleagues(service, principal)
    if not form.validate_on_submit():
        if "csrf_token" in form.errors:
            abort(403)
        return _problem(MedchatError("Choose a colleague and a reason."))
    try:
        service.hand_over(principal, conversation_id, uuid.UUID(form.to.data), form.reason.data)
    except MedchatError as error:
        if error.status not in (409, 422):
            raise
        return _problem(error)
    return _back(conversation_id, "handed_over")


@bp.get("/attachments/<uuid:attachment_id>")
@requires(Permission.CLINICIAN_CONVERSATIONS)
def download(attachment_id: uuid.UUID) -> Any:
    """The file as a download (audited as a content read, like the API's)."""
    return download_response(
        AttachmentService(db_session(), runtime()).download(signed_in(), attachment_id)
    )
