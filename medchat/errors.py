"""Domain errors: each carries the contract code and HTTP status of API.md "Conventions".

Services raise these and know nothing of HTTP; ``medchat.web.errors`` is the one place that
turns them into ``{"error": {"code", "message"}}`` responses. Messages are written for the
person at the other end and never contain personal or medical data.
"""

from __future__ import annotations

from access_control.errors import (
    ConfigurationError,
    DependencyDown,
    Forbidden,
    KeyIntegrityFailure,
    MedchatError,
    MfaSessionRequired,
    NetworkNotAllowed,
    NotAuthenticated,
    PasswordWorkBusy,
    RateLimited,
    ValidationFailed,
    WeakPassword,
)

__all__ = [
    "ArchiveGated",
    "ArchiveIntegrityFailure",
    "BadRequest",
    "ClaimRequired",
    "ClaimedByOther",
    "ConfigurationError",
    "Conflict",
    "ConsentOutdated",
    "ConsentRequired",
    "ConsentVersionNotCurrent",
    "ContentResealed",
    "DependencyDown",
    "EmailTaken",
    "Forbidden",
    "HistoryPending",
    "ImageTooLarge",
    "InvalidCredentials",
    "InvalidEmailChangeToken",
    "InvalidEnrollmentToken",
    "InvalidMfaCode",
    "InvalidResetToken",
    "InvalidToken",
    "KeyIntegrityFailure",
    "KeysNotInitialized",
    "LastKeyHolder",
    "MedchatError",
    "MfaEnrollmentRequired",
    "MfaRequired",
    "MfaSessionRequired",
    "NetworkNotAllowed",
    "NotAuthenticated",
    "NotFound",
    "PasswordWorkBusy",
    "PayloadTooLarge",
    "ProcessingRestricted",
    "RateLimited",
    "RoleKeyRequired",
    "RowIntegrityFailure",
    "UnreadableFile",
    "UnsupportedMediaType",
    "ValidationFailed",
    "WeakPassword",
]


class BadRequest(MedchatError):
    code, status, message = "bad_request", 400, "The request is malformed."


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


class MfaEnrollmentRequired(Forbidden):
    code, message = "mfa_enrollment_required", "Two-factor enrollment is required first."


class ConsentRequired(Forbidden):
    code, message = "consent_required", "Consent to health messaging is required first."


class ConsentOutdated(ConsentRequired):
    """The member's consent names an older version of the text: asked again before a new
    question (``details.current_version``)."""

    code, message = (
        "consent_outdated",
        "The consent text has changed: read the current version and consent again.",
    )


class ProcessingRestricted(Forbidden):
    """The member restricted processing (or objected): their conversations are frozen."""

    code, message = (
        "processing_restricted",
        "Processing of this member's data is restricted: nothing new may be added, and a "
        "doctor may read only a question still waiting for its answer.",
    )


class RoleKeyRequired(Forbidden):
    code, message = "role_key_required", "Your session does not hold the role key this needs."


class PersonalKeyRequired(Forbidden):
    """A session opened without the caller's personal key (made by the server for a test or a
    tool, never by a sign-in): nothing sealed for this person alone opens in it."""

    code = "personal_key_required"
    message = "Your session does not hold your personal key: sign in again."


class NotFound(MedchatError):
    code, status, message = "not_found", 404, "Not found."


class Conflict(MedchatError):
    code, status, message = "conflict", 409, "The request conflicts with the current state."


class ConsentVersionNotCurrent(Conflict):
    """A grant names a version other than the one the server serves now."""

    code, message = (
        "consent_version_not_current",
        "Consent is given to the current version of the text only.",
    )


class ClaimRequired(Conflict):
    """Answering a question needs the answerer's own claim on it (``services.claims``)."""

    code, message = (
        "claim_required",
        "Claim this question before answering it (or claim it again: your claim expired).",
    )


class ClaimedByOther(Conflict):
    """Another clinician holds the question; ``details`` names them (staff only)."""

    code, message = "claimed_by_other", "A colleague has claimed this question."


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


class RowIntegrityFailure(KeyIntegrityFailure):
    """A row that would make the server act failed its integrity tag: written around the
    service (``medchat.storage.row_integrity``). Refused and audited; nothing acts on it."""

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
    request works once a holder has rotated). ``medchat.keys.rotation_deadline``."""

    code, status, message = (
        "rotation_overdue",
        503,
        "New content cannot be sealed until a role key is rotated.",
    )
