"""Console forms: every field labelled, every form CSRF-protected (Flask-WTF)."""

from __future__ import annotations

from flask_wtf import FlaskForm
from flask_wtf.file import FileField, FileRequired
from wtforms import HiddenField, PasswordField, SelectField, StringField, TextAreaField
from wtforms.fields.choices import SelectChoice  # type: ignore[attr-defined]
from wtforms.validators import DataRequired, EqualTo, Length, Optional


class LoginForm(FlaskForm):
    email = StringField("E-mail", validators=[DataRequired(), Length(max=254)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=1024)])
    #: Shown when the account is locked: the password and the code together still sign in.
    code = StringField(
        "Code from your authenticator app (or a recovery code)",
        validators=[Optional(), Length(min=6, max=32)],
    )


class TotpForm(FlaskForm):
    code = StringField(
        "Code from your authenticator app (or a recovery code)",
        validators=[DataRequired(), Length(min=6, max=32)],
    )


class EnrollForm(FlaskForm):
    enrollment_token = StringField("Enrollment token", validators=[DataRequired(), Length(max=200)])
    password = PasswordField("New password", validators=[DataRequired(), Length(max=1024)])
    confirm = PasswordField(
        "Repeat the password",
        validators=[DataRequired(), EqualTo("password", message="The passwords differ.")],
    )


class EnrollConfirmForm(FlaskForm):
    enrollment_token = StringField("Enrollment token", validators=[DataRequired(), Length(max=200)])
    code = StringField(
        "Code from your authenticator app", validators=[DataRequired(), Length(min=6, max=32)]
    )


class PasswordChangeForm(FlaskForm):
    current_password = PasswordField("Current password", validators=[DataRequired()])
    new_password = PasswordField("New password", validators=[DataRequired(), Length(max=1024)])
    confirm = PasswordField(
        "Repeat the new password",
        validators=[DataRequired(), EqualTo("new_password", message="The passwords differ.")],
    )


class ReplyForm(FlaskForm):
    body = TextAreaField("Your answer", validators=[DataRequired(), Length(max=10000)])


class AttachForm(FlaskForm):
    file = FileField("Attach a file (PDF, PNG, JPEG, HEIC)", validators=[FileRequired()])


class GrantForm(FlaskForm):
    """Confirms a grant to the key whose fingerprint the page showed (sent back with it)."""

    fingerprint = HiddenField(validators=[DataRequired(), Length(min=32, max=200)])


class ActionForm(FlaskForm):
    """A button-only form (close, logout): just the CSRF token."""


#: How each hand-over reason reads in the console (codes: ``medchat.services.claims``).
REASON_LABELS = {
    "shift_end": "End of my shift",
    "specialty": "Needs another specialty",
    "second_opinion": "Second opinion",
    "workload": "Workload",
    "other": "Other",
}


class HandoffForm(FlaskForm):
    """Hand one's claim to a colleague: a reason from a list, never free text (health data)."""

    to = SelectField("Colleague", validators=[DataRequired()])
    reason = SelectField(
        "Reason",
        choices=[SelectChoice(code, label) for code, label in REASON_LABELS.items()],
        validators=[DataRequired()],
    )
