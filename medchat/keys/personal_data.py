"""Personal data at rest: e-mail, first and last name, birth date, sex, phone and insurance
number are never stored in clear, and e-mail addresses are found through a keyed blind index.

SECURITY-MODEL "What counts as content": these fields are not medical content but a database
dump alone must name nobody. Each value is sealed (AES-256-GCM) under the profile key from
``MEDCHAT_KEY_DIR`` with the account id and field name as associated data, so a ciphertext
moved to another account or field does not open. The first name, birth date and sex are
what a clinician may know of a patient (``medchat.services.patient_view``): sealed all the
same, so a stolen database does not hand them out with the account ids beside them; the
server opens them for whoever may see them. A birth date is sealed as its ISO form.
"""

from __future__ import annotations

import unicodedata
import uuid
from datetime import date
from typing import overload

from access_control import crypto
from access_control.key_directory import ServerKeys

_PURPOSE = "medchat/personal-data/v1"


def normalise_email(email: str) -> str:
    """Compare addresses case-insensitively and after Unicode normalisation."""
    return unicodedata.normalize("NFKC", email).strip().lower()


class ProfileCipher:
    """Seals and opens personal fields; computes the e-mail blind index."""

    def __init__(self, keys: ServerKeys) -> None:
        self._profile_key = keys.profile
        self._index_key = keys.blind_index

    def __repr__(self) -> str:
        return "ProfileCipher()"

    def email_index(self, email: str) -> bytes:
        return crypto.blind_index(self._index_key, normalise_email(email))

    # A value seals to bytes, an absent one stays absent: the overloads tell callers which.
    @overload
    def seal(self, account_id: uuid.UUID, field: str, value: str) -> bytes: ...
    @overload
    def seal(self, account_id: uuid.UUID, field: str, value: None) -> None: ...
    @overload
    def seal(self, account_id: uuid.UUID, field: str, value: str | None) -> bytes | None: ...
    def seal(self, account_id: uuid.UUID, field: str, value: str | None) -> bytes | None:
        if value is None:
            return None
        aad = crypto.associated_data(_PURPOSE, account_id, field)
        return crypto.seal(self._profile_key, value.encode("utf-8"), aad)

    @overload
    def open(self, account_id: uuid.UUID, field: str, sealed: bytes) -> str: ...
    @overload
    def open(self, account_id: uuid.UUID, field: str, sealed: None) -> None: ...
    @overload
    def open(self, account_id: uuid.UUID, field: str, sealed: bytes | None) -> str | None: ...
    def open(self, account_id: uuid.UUID, field: str, sealed: bytes | None) -> str | None:
        """Raises ``crypto.DecryptionFailed`` if the value was moved or altered."""
        if sealed is None:
            return None
        aad = crypto.associated_data(_PURPOSE, account_id, field)
        return crypto.open_sealed(self._profile_key, sealed, aad).decode("utf-8")

    def seal_date(self, account_id: uuid.UUID, field: str, value: date) -> bytes:
        return self.seal(account_id, field, value.isoformat())

    def open_date(self, account_id: uuid.UUID, field: str, sealed: bytes | None) -> date | None:
        """Raises ``crypto.DecryptionFailed`` if the value was moved or altered."""
        opened = self.open(account_id, field, sealed)
        return None if opened is None else date.fromisoformat(opened)
