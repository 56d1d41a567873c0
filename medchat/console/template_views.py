"""Console: a clinician's canned replies (issue 17, item 5): list, add, delete, and insert one
into an answer.

The same ``ReplyTemplateService`` as the API decides; each form carries a CSRF token. Inserting
needs no JavaScript: the conversation page's "Use" link reloads it with ``?template=<id>``, and
the answer field opens with that text (and the draft, when there is one, stays saved).
"""

from __future__ import annotations

import uuid
from typing import Any

from flask import abort, redirect, request, url_for
from flask_wtf import FlaskForm
from wtforms import StringField, TextAreaField
from wtforms.validators import DataRequired, Length

from access_control.permissions import Permission
from medchat.console import bp
from medchat.console.auth_views import page
from medchat.console.forms import ActionForm
from medchat.errors import MedchatError
from medchat.services.reply_templates import ReplyTemplateService
from medchat.web.context import db_session, runtime
from medchat.web.guard import requires, signed_in

NOTICES = {"added": "The reply was added.", "deleted": "The reply was deleted."}


class TemplateForm(FlaskForm):
    title = StringField("Title", validators=[DataRequired(), Length(max=100)])
    body = TextAreaField("Text", validators=[DataRequired(), Length(max=10000)])


def _service() -> ReplyTemplateService:
    return ReplyTemplateService(db_session(), runtime())


@bp.route("/replies", methods=["GET", "POST"])
@requires(Permission.CLINICIAN_CONVERSATIONS)
def replies() -> Any:
    """The clinician's canned replies, and a form to add one."""
    form = TemplateForm()
    status, error = 200, None
    if form.validate_on_submit():
        try:
            _service().create(signed_in(), form.title.data or "", form.body.data or "")
            return redirect(url_for("console.replies", notice="added"))
        except MedchatError as exc:
            status, error = exc.status, exc.message
    elif request.method == "POST":
        status, error = 400, "Give a title (up to 100 characters) and a text."
    return page(
        "replies.html",
        status,
        form=form,
        delete_form=ActionForm(),
        templates=_service().list(signed_in()),
        notice=NOTICES.get(request.args.get("notice", "")),
        error=error,
    )


@bp.post("/replies/<uuid:template_id>/delete")
@requires(Permission.CLINICIAN_CONVERSATIONS)
def delete_reply(template_id: uuid.UUID) -> Any:
    if not ActionForm().validate_on_submit():
        abort(403)
    _service().delete(signed_in(), template_id)
    return redirect(url_for("console.replies", notice="deleted"))
