"""A member's own view of their profile: every field, decrypted, for them alone; and its
correction (the right to rectification, docs/data-rights.md).

A correction goes through the same rules as registration (``MemberDetailsSchema``) and is
stored the way registration stores it: every field sealed under the profile key with the
account id and field name as associated data (``medchat.keys.personal_data``). The first name,
birth date and sex are what a clinician sees (``medchat.services.patient_view`` opens them from
the same columns, so the clinician's view follows at once). The audit entry names the changed
fields, never their values.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from access_control.roles import Role
from medchat import audit
from medchat.errors import Conflict, Forbidden
from medchat.identity.principal import Principal
from medchat.models import Account
from medchat.services.context import ServiceContext

#: Fields kept sealed under the profile key (registration seals the same ones, by name), in
#: ``<field>_ciphertext``. The birth date is sealed as its ISO form (``seal_date``).
SEALED_ON_ACCOUNT = ("first_name", "last_name")
SEALED_ON_PROFILE = ("birth_date", "sex", "phone", "insurance_number")


class ProfileService:
    def __init__(self, session: Session, runtime: ServiceContext) -> None:
        self.session = session
        self.profiles = runtime.profiles

    def own_profile(self, account: Account) -> dict[str, Any]:
        profile = account.profile
        open_ = self.profiles.open
        return {
            "id": account.id,
            "email": open_(account.id, "email", account.email_ciphertext),
            "first_name": open_(account.id, "first_name", account.first_name_ciphertext),
            "last_name": open_(account.id, "last_name", account.last_name_ciphertext),
            "birth_date": (
                self.profiles.open_date(account.id, "birth_date", profile.birth_date_ciphertext)
                if profile
                else None
            ),
            "sex": open_(account.id, "sex", profile.sex_ciphertext) if profile else None,
            "phone": open_(account.id, "phone", profile.phone_ciphertext) if profile else None,
            "insurance_number": (
                open_(account.id, "insurance_number", profile.insurance_number_ciphertext)
                if profile
                else None
            ),
            "role": account.role,
            "mfa_enabled": account.has_totp,
            "created_at": account.created_at,
        }

    def rectify(self, actor: Principal, changes: dict[str, Any]) -> dict[str, Any]:
        """Apply the validated ``changes`` and return the new profile.

        Only values that differ are written (and named in the ``profile.update`` entry); a
        correction that changes nothing writes nothing and is not audited. Raises
        ``Forbidden`` for anyone but a member.
        """
        if actor.role != Role.MEMBER:
            raise Forbidden
        self.rectify_account(actor.account, changes)
        return self.own_profile(actor.account)

    def rectify_account(
        self, account: Account, changes: dict[str, Any], *, ticket: str | None = None
    ) -> list[str]:
        """Apply ``changes`` to a member's account, for the member or for the data protection
        officer acting on a mailed request (``ticket``, audited); the changed field names."""
        if account.role != Role.MEMBER:
            raise Forbidden
        profile = account.profile
        if profile is None:  # pragma: no cover - every member registers with a profile
            raise Conflict("This account has no member profile.")
        current = self.own_profile(account)
        changed = sorted(name for name, value in changes.items() if current.get(name) != value)
        for name in changed:
            value = changes[name]
            if name == "birth_date":
                profile.birth_date_ciphertext = self.profiles.seal_date(account.id, name, value)
            elif name in SEALED_ON_ACCOUNT:
                setattr(account, f"{name}_ciphertext", self.profiles.seal(account.id, name, value))
            elif name in SEALED_ON_PROFILE:
                setattr(profile, f"{name}_ciphertext", self.profiles.seal(account.id, name, value))
            else:  # pragma: no cover - the schema lets no other field through
                raise Forbidden
        if changed:
            self.session.flush()
            audit.record(
                self.session,
                "profile.update",
                target_type="account",
                target_id=account.id,
                subject_id=account.id,
                details={"fields": changed, **({"ticket": ticket} if ticket else {})},
            )
        return changed
