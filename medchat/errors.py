"""Domain errors: each carries the contract code and HTTP status of API.md "Conventions".

Services raise these and know nothing of HTTP; ``medchat.api.errors`` is the one place that
turns them into ``{"error": {"code", "message"}}`` responses. Messages are written for the
person at the other end and never contain personal or medical data.
"""

from __future__ import annotations

from typing import Any


class ConfigurationError(RuntimeError):
    """The service refuses to start: its configuration is missing or unsafe."""


class MedchatError(Exception):
    """Base of every error a client may see. Subclasses fix ``code`` and ``status``."""

    code = "error"
    status = 400
    message = "The request could not be processed."

    def __init__(
        self,
        message: str | None = None,
        *,
        details: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message or self.message)
        self.message = message or self.message
        self.details = details
        self.headers = headers or {}


class BadRequest(MedchatError):
    code, status, message = "bad_request", 400, "The request is malformed."


class ValidationFailed(MedchatError):
    code, status, message = "validation_error", 422, "Some fields are invalid."


class WeakPassword(ValidationFailed):
    code, message = "weak_password", "The password is too weak."


class NotAuthenticated(MedchatError):
    code, status, message = "not_authenticated", 401, "Authentication is required."


class InvalidCredentials(NotAuthenticated):
    code, message = "invalid_credentials", "The email or password is wrong."


class InvalidMfaCode(NotAuthenticated):
    code, message = "invalid_mfa_code", "The one-time code is wrong or was already used."


class MfaRequired(NotAuthenticated):
    code, message = "mfa_required", "A one-time code from the authenticator app is required."


class InvalidToken(NotAuthenticated):
    code, message = "invalid_token", "The token is invalid, expired or revoked."


class InvalidEnrollmentToken(NotAuthenticated):
    code, message = "invalid_enrollment_token", "The enrollment token is spent, expired or unknown."


class InvalidResetToken(NotAuthenticated):
    code, message = "invalid_reset_token", "The reset token is spent, expired or unknown."


class Forbidden(MedchatError):
    code, status, message = "forbidden", 403, "You are not allowed to do this."


class MfaEnrollmentRequired(Forbidden):
    code, message = "mfa_enrollment_required", "Two-factor enrollment is required first."


class MfaSessionRequired(Forbidden):
    code, message = "mfa_required", "This action needs a session that passed two-factor sign-in."


class ConsentRequired(Forbidden):
    code, message = "consent_required", "Consent to health messaging is required first."


class NetworkNotAllowed(Forbidden):
    code, message = "network_not_allowed", "This service is not reachable from your network."


class RoleKeyRequired(Forbidden):
    code, message = "role_key_required", "Your session does not hold the role key this needs."


class NotFound(MedchatError):
    code, status, message = "not_found", 404, "Not found."


class Conflict(MedchatError):
    code, status, message = "conflict", 409, "The request conflicts with the current state."


class LastKeyHolder(Conflict):
    """Revoking or disabling would leave a role key without an active holder (lost for good)."""

    code, message = (
        "last_key_holder",
        "This is the last active holder of the role key; grant it to a colleague first.",
    )


class HistoryPending(Conflict):
    """A member's conversation not yet re-sealed to their new key after a password reset."""

    code, message = (
        "history_pending",
        "This conversation is being restored after your password reset; a doctor's next "
        "session re-seals it to your new key. Try again later.",
    )


class ArchiveGated(Conflict):
    """A sealed record's archive wrap is still gated: it was never sealed by the service."""

    code, message = (
        "archive_gated",
        "This record's archive key is still gated, as for a live conversation: nothing was "
        "opened. The conversation was not sealed by medchat; report it.",
    )


class ContentResealed(Conflict):
    """The conversation was re-sealed to a newer content format, or began a new key epoch,
    while this request read it."""

    code, message = (
        "content_resealed",
        "This conversation was being updated while it was read; try again.",
    )


class InvalidEmailChangeToken(Conflict):
    """A signed-in member's confirmation token that is spent, expired, unknown or another's:
    409 rather than 401, so a client does not take it for an ended session."""

    code, message = "invalid_email_token", "The confirmation token is spent, expired or unknown."


class EmailTaken(Conflict):
    """The confirmed address became another account's after the request (told only to
    whoever holds the token mailed to that address)."""

    code, message = "email_taken", "This address now belongs to another account."


class PayloadTooLarge(MedchatError):
    code, status, message = "payload_too_large", 413, "The upload is too large."


class UnsupportedMediaType(MedchatError):
    code, status, message = "unsupported_media_type", 415, "This type of content is not accepted."


class ImageTooLarge(MedchatError):
    """An image whose dimensions are over ``max_image_pixels``: a decompression bomb (a few
    kilobytes that decode to gigabytes) or a picture too large to clean safely. 413, as for a
    file over the byte limit: the answer to both is a smaller file."""

    code, status, message = "image_too_large", 413, "The image has too many pixels."


class UnreadableFile(MedchatError):
    """A file of an accepted type that its decoder cannot read (damaged, truncated, or a
    password-protected PDF): its metadata cannot be removed, so it is not accepted."""

    code, status, message = (
        "unreadable_file",
        422,
        "The file could not be read; it may be damaged or password-protected.",
    )


class RateLimited(MedchatError):
    code, status, message = "rate_limited", 429, "Too many attempts; try again later."


class KeyIntegrityFailure(MedchatError):
    """A key failed its pin, tag or commitment check: refuse rather than seal or read.

    409: the stored state conflicts with what the server vouched for (a row altered in the
    database), not a fault of ours to retry; never a 500 (API.md "Conventions")."""

    code, status, message = "key_integrity_failed", 409, "A key failed its integrity check."


class RowIntegrityFailure(KeyIntegrityFailure):
    """A row that would make the server act failed its integrity tag: written around the
    service (``medchat.row_integrity``). Refused and audited; nothing acts on it."""

    code, status = "row_integrity_failed", 409
    message = "A stored record failed its integrity check and was refused."
    #: The table of the refused row, for operators (CLI); never sent to HTTP clients.
    table: str | None = None


class ArchiveIntegrityFailure(MedchatError):
    """Archived content or its ledger record was altered: refuse to open or export it (409,
    as ``KeyIntegrityFailure``)."""

    code, status, message = (
        "archive_integrity_failed",
        409,
        "The archived conversation does not match its ledger record.",
    )


class KeysNotInitialized(MedchatError):
    code, status, message = (
        "keys_not_initialized",
        503,
        "The role keys are not initialised yet (medchat keys init).",
    )


class RotationOverdue(MedchatError):
    """A role key's rotation is past its deadline: nothing new is sealed to it (503, like
    ``KeysNotInitialized``: the server's keys, not the request, stand in the way, and the same
    request works once a holder has rotated). ``medchat.rotation_deadline``."""

    code, status, message = (
        "rotation_overdue",
        503,
        "New content cannot be sealed until a role key is rotated.",
    )


class DependencyDown(MedchatError):
    """The database, the rate limiter's storage or the key files are unavailable: 503 with
    ``Retry-After``, since the same request will work once they are back (never a 500, which
    says the fault is ours). ``medchat.dependencies`` decides which failures are outages."""

    code, status, message = (
        "dependency_down",
        503,
        "A service this needs is unavailable for a moment; try again shortly.",
    )
