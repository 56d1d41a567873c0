"""The refusals the primitives raise, each carrying its contract code and HTTP status.

``access_control`` knows nothing of Flask or of the rest of medchat, yet its refusals (a weak
password, a network not allowed, a failed pin, a missing permission, a spent failure budget)
reach clients as contract errors. So the base of every client-visible error and these refusals
are defined here (and the outage answer, ``DependencyDown``, which the bound on password work
raises when it is full), and ``medchat.errors`` (the taxonomy services raise) builds on them and
names them again: one class each, importable from either place.
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


class ValidationFailed(MedchatError):
    code, status, message = "validation_error", 422, "Some fields are invalid."


class WeakPassword(ValidationFailed):
    code, message = "weak_password", "The password is too weak."


class NotAuthenticated(MedchatError):
    code, status, message = "not_authenticated", 401, "Authentication is required."


class Forbidden(MedchatError):
    code, status, message = "forbidden", 403, "You are not allowed to do this."


class MfaSessionRequired(Forbidden):
    code, message = "mfa_required", "This action needs a session that passed two-factor sign-in."


class NetworkNotAllowed(Forbidden):
    code, message = "network_not_allowed", "This service is not reachable from your network."


class RateLimited(MedchatError):
    code, status, message = "rate_limited", 429, "Too many attempts; try again later."


class KeyIntegrityFailure(MedchatError):
    """A key failed its pin, tag or commitment check: refuse rather than seal or read.

    409: the stored state conflicts with what the server vouched for (a row altered in the
    database), not a fault of ours to retry; never a 500 (API.md "Conventions")."""

    code, status, message = "key_integrity_failed", 409, "A key failed its integrity check."


class DependencyDown(MedchatError):
    """The database, the rate limiter's storage or the key files are unavailable: 503 with
    ``Retry-After``, since the same request will work once they are back (never a 500, which
    says the fault is ours). ``medchat.storage.outages`` decides which failures are outages."""

    code, status, message = (
        "dependency_down",
        503,
        "A service this needs is unavailable for a moment; try again shortly.",
    )


class PasswordWorkBusy(DependencyDown):
    """Every slot for password hashing in this process is taken (``access_control.password_work``):
    503 ``dependency_down`` with ``details.dependency`` ``"password_work"`` and ``Retry-After``,
    before any password is looked at, the same for every account, known or not."""

    message = "Too many sign-ins are being checked right now; try again in a moment."
