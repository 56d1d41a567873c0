"""The refusals particular to one operation, as the OpenAPI document names them.

``medchat.api.openapi`` lists for each operation the statuses every operation of its kind can
answer; this table adds, by endpoint, the codes one operation answers besides (a conflict of
its own, a role key it needs, a restriction that freezes it), appended to the generic text of
the status. Kept apart from the document's machinery because it grows with every route.
"""

from __future__ import annotations

_WEAK = "the password is too weak (`weak_password`, with zxcvbn's feedback in `details`)"
_NOT_A_MEMBER = "staff accounts cannot do this (`forbidden`)"
_ROLE_KEY = "the session does not hold the role key (`role_key_required`)"
_IDEMPOTENCY = "the `Idempotency-Key` was used with another body (`conflict`)"
_RESTRICTED = "the member restricted processing (`processing_restricted`)"
_FROZEN = (
    "the member restricted processing and the conversation is no longer open "
    "(`processing_restricted`)"
)
_HISTORY = "the history is being re-sealed after a password reset (`history_pending`)"

#: Codes particular to one operation (by endpoint), appended to the generic text.
_CLAIM = (
    "answering needs the caller's live claim: none or an expired one (`claim_required`), a "
    "colleague's (`claimed_by_other`, `details.claimed_by`)"
)
EXTRA: dict[str, dict[int, str]] = {
    "auth.register": {403: "registration is closed (`forbidden`)", 422: _WEAK},
    "auth.token": {
        401: "wrong e-mail or password (`invalid_credentials`), a code is needed "
        "(`mfa_required`) or wrong (`invalid_mfa_code`)",
        403: "two-factor enrollment is required first (`mfa_enrollment_required`)",
        429: "also while the account is locked after failed attempts",
    },
    "auth.refresh": {401: "the refresh token is spent, expired or revoked (`invalid_token`)"},
    "auth.enroll": {
        401: "the enrollment token is spent, expired or unknown (`invalid_enrollment_token`)",
        422: _WEAK,
    },
    "auth.enroll_confirm": {
        401: "the enrollment token is spent, expired or unknown (`invalid_enrollment_token`), "
        "or the code is wrong (`invalid_mfa_code`)",
        409: "enrollment was not started (`conflict`)",
    },
    "auth.change_password": {
        401: "the current password is wrong (`invalid_credentials`)",
        422: _WEAK,
    },
    "auth.mfa_enroll": {
        401: "the password is wrong (`invalid_credentials`)",
        409: "two-factor sign-in is already set up (`conflict`)",
    },
    "auth.mfa_confirm": {
        401: "the code is wrong (`invalid_mfa_code`)",
        409: "enrollment was not started (`conflict`)",
    },
    "auth.mfa_remove": {
        401: "the password or the code is wrong",
        409: "staff must keep two-factor sign-in, or it is not set up (`conflict`)",
    },
    "auth.password_reset_confirm": {
        401: "the reset token is spent, expired or unknown (`invalid_reset_token`), or the "
        "code is wrong (`invalid_mfa_code`)",
        422: _WEAK,
    },
    "member.rectify": {403: _NOT_A_MEMBER},
    "member.change_email": {
        401: "the password is wrong (`invalid_credentials`)",
        403: _NOT_A_MEMBER,
    },
    "member.confirm_email": {
        403: _NOT_A_MEMBER,
        409: "the token is spent, expired or unknown (`invalid_email_token`), or the address "
        "was taken meanwhile (`email_taken`)",
    },
    "member.delete_account": {401: "the password is wrong (`invalid_credentials`)"},
    "member.grant_consent": {
        409: "the version is not the one `GET /api/v1/consent` serves now "
        "(`consent_version_not_current`, `details.current_version`)"
    },
    "conversations.start": {
        403: "no consent (`consent_required`), or consent to an older text "
        "(`consent_outdated`, `details.current_version`): consent again first; " + _RESTRICTED,
        409: _IDEMPOTENCY,
    },
    "conversations.conversation": {409: _HISTORY},
    "conversations.messages": {409: _HISTORY},
    "conversations.send": {
        403: f"consent withdrawn (`consent_required`), {_RESTRICTED}",
        409: f"the conversation is closed (`conflict`), {_IDEMPOTENCY}, {_HISTORY}",
    },
    "attachments.upload_attachment": {
        403: f"consent withdrawn (`consent_required`), {_RESTRICTED}",
        409: f"the conversation is closed (`conflict`), {_IDEMPOTENCY}",
        413: "or an image has more pixels than allowed (`image_too_large`)",
        415: "the bytes are not PDF, PNG, JPEG or HEIC, or the part's type names another",
        422: "or the file cannot be read (`unreadable_file`)",
    },
    "attachments.upload_clinician_attachment": {
        403: f"{_ROLE_KEY}, {_FROZEN}",
        409: f"the conversation is closed (`conflict`), {_IDEMPOTENCY}, {_CLAIM}",
        413: "or an image has more pixels than allowed (`image_too_large`)",
        415: "the bytes are not PDF, PNG, JPEG or HEIC, or the part's type names another",
        422: "or the file cannot be read (`unreadable_file`)",
    },
    "attachments.download_attachment": {409: _HISTORY},
    "attachments.download_clinician_attachment": {403: f"{_ROLE_KEY}, {_FROZEN}"},
    "clinician.queue": {403: _ROLE_KEY},
    "clinician.conversation": {403: f"{_ROLE_KEY}, {_FROZEN}"},
    "clinician.messages": {
        403: f"{_ROLE_KEY}, {_FROZEN}",
        409: "the content was re-sealed meanwhile",
    },
    "clinician.reply": {
        403: f"{_ROLE_KEY}, {_FROZEN}",
        409: f"the conversation is closed (`conflict`), {_IDEMPOTENCY}, {_CLAIM}",
    },
    "clinician.mark_read": {403: _ROLE_KEY},
    "clinician.claim": {
        403: _ROLE_KEY,
        409: "a colleague holds a live claim (`claimed_by_other`, `details.claimed_by`), or "
        "the conversation is closed (`conflict`)",
    },
    "clinician.release_claim": {
        403: _ROLE_KEY,
        409: "the caller holds no live claim (`claim_required`) or a colleague does "
        "(`claimed_by_other`), or the conversation is closed (`conflict`)",
    },
    "clinician.hand_over": {
        403: _ROLE_KEY,
        409: "the caller holds no live claim (`claim_required`) or a colleague does "
        "(`claimed_by_other`), or the conversation is closed (`conflict`)",
        422: "`to` is not an active colleague",
    },
    "clinician.close": {403: f"{_ROLE_KEY}, {_FROZEN}", 409: "already closed (`conflict`)"},
    "clinician.draft": {403: _ROLE_KEY},
    "clinician.save_draft": {403: _ROLE_KEY, 409: "the conversation is closed (`conflict`)"},
    "clinician.discard_draft": {403: _ROLE_KEY},
    "clinician.templates": {
        403: "a session without the caller's personal key (`personal_key_required`)"
    },
    "clinician.create_template": {
        403: "a session without the caller's personal key (`personal_key_required`)",
        409: "100 templates already (`conflict`)",
    },
    "colleagues.grant_physician_key": {
        403: _ROLE_KEY,
        409: "the colleague's key is not the fingerprint compared (`conflict`)",
    },
    "colleagues.grant_archive_key": {
        403: _ROLE_KEY,
        409: "the colleague's key is not the fingerprint compared (`conflict`)",
    },
    "colleagues.revoke_physician_key": {
        401: "the password is wrong (`invalid_credentials`)",
        409: "the last active holder (`last_key_holder`)",
    },
    "colleagues.revoke_archive_key": {
        401: "the password is wrong (`invalid_credentials`)",
        409: "the last active holder (`last_key_holder`)",
    },
    "admin.create_account": {409: "the address is taken (`conflict`)"},
    "admin.disable_account": {409: "the last key holder (`last_key_holder`), or deleted"},
    "admin.reset_account": {409: "a member, a disabled account, or oneself (`conflict`)"},
    "compliance.request_retrieval": {409: "the content was destroyed (`conflict`)"},
    "compliance.approve": {
        403: "one's own request (`forbidden`)",
        409: "already approved (`conflict`)",
    },
    "compliance.content": {
        403: "not approved, expired, or another officer's request (`forbidden`)",
        409: "the archive does not match its ledger (`archive_integrity_failed`)",
    },
}
# The data protection officer names the member by address: none active answers 404.
for _dpo_act in ("export", "erasure", "restriction", "rectification"):
    EXTRA[f"dpo.{_dpo_act}"] = {404: "no active member has this address (`not_found`)"}
# The same rules hold for the attachment and the export of an opened retrieval.
EXTRA["compliance.attachment"] = EXTRA["compliance.export"] = EXTRA["compliance.content"]
