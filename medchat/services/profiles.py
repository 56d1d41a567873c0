"""A member's own view of their profile: every field, decrypted, for them alone."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from medchat.models import Account
from medchat.runtime import Runtime


class ProfileService:
    def __init__(self, session: Session, runtime: Runtime) -> None:
        self.session = session
        self.profiles = runtime.profiles

    def own_profile(self, account: Account) -> dict[str, Any]:
        profile = account.profile
        open_ = self.profiles.open
        return {
            "id": account.id,
            "email": open_(account.id, "email", account.email_ciphertext),
            "first_name": account.first_name,
            "last_name": open_(account.id, "last_name", account.last_name_ciphertext),
            "birth_date": profile.birth_date if profile else None,
            "sex": profile.sex if profile else None,
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
