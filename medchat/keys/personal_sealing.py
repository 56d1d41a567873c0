"""Texts only their owner's session opens: sealed under a key derived from the owner's
personal private key (``Keyring.derive_secret``), never from anything the server keeps.

Used for a clinician's canned replies (``medchat.services.reply_templates``): their own
words, possibly medical, that nobody else needs, not the physician role and not the server.
Each field's associated data names its label, owner, record and field, so a value moved to
another record, field or owner opens nothing.
"""

from __future__ import annotations

import uuid

from access_control import crypto
from access_control.keyring import Keyring

_LABEL = "medchat/personal-text/v1"


class PersonalSeal:
    """Seals and opens one owner's texts of one kind (``purpose``)."""

    def __init__(self, keyring: Keyring, purpose: str) -> None:
        self._owner = keyring.account_id
        self._purpose = purpose
        self._key = crypto.AeadKey(keyring.derive_secret(f"{_LABEL}/{purpose}"))

    def __repr__(self) -> str:
        return f"PersonalSeal(owner={self._owner}, purpose={self._purpose!r})"

    def _aad(self, record_id: uuid.UUID, field: str) -> bytes:
        return crypto.associated_data(_LABEL, self._purpose, self._owner, record_id, field)

    def seal(self, record_id: uuid.UUID, field: str, text: str) -> bytes:
        return self._key.seal(text.encode("utf-8"), self._aad(record_id, field))

    def open(self, record_id: uuid.UUID, field: str, sealed: bytes) -> str:
        """Raises ``crypto.DecryptionFailed`` for a value moved, altered or not the owner's."""
        return self._key.open(sealed, self._aad(record_id, field)).decode("utf-8")
