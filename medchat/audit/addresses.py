"""Network addresses in the audit log: sealed, committed to by a keyed hash, erased in time.

An address says where a person was, so it is personal data; the log keeps it only as long as
``MEDCHAT_AUDIT_ADDRESS_DAYS`` (default 180) for investigating abuse. An entry of format 3 holds
no clear address:

- ``address_sealed``: 16 random bytes (the salt) and the address, sealed (AES-256-GCM) under
  the profile key of ``MEDCHAT_KEY_DIR`` with the entry id as associated data, so it does not
  open in another entry;
- ``address_hash``: ``HMAC(audit-mac key, salt, address)``, which the entry hash covers in place
  of the address. Keyed, so a database copy cannot confirm a guessed address; salted with a
  value that lives only inside the sealed column, so once that column is erased not even the
  server's keys can find the address again by trying all 2^32 IPv4 addresses against it.

Erasing (``medchat.audit.address_erasure``, run by the retention job) sets ``address_sealed``
to NULL: the entry hash, which covers only the commitment, still verifies, and editing the
commitment still fails it.
A sealed address is shown only after its commitment is checked (``reveal``).

Entries written before (formats 1 and 2) have their address in clear in the hash. They keep it,
verifying as before, until the same age; then the erasure checks the entry's hash with the address,
clears the address and writes ``address_erasure_mac``: an HMAC under the audit-mac key over the
entry's stored hash and every other field, which verification checks in place of recomputing
the hash (``legacy_erasure_holds``). Rewriting those entries into format 3 instead would change
their hashes and with them every later link and every signed anchor. An entry whose hash does
not hold is left as it is (``verify`` names it) rather than vouched for.
"""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass
from typing import Any

from access_control import crypto
from medchat.models import AuditEntry

_SEAL_PURPOSE = "medchat/audit-address/v1"
_COMMITMENT_LABEL = "medchat/audit-address-commitment/v1"
_ERASED_LABEL = "medchat/audit-address-erased/v1"
_SALT_BYTES = 16


@dataclass(frozen=True, repr=False)
class AddressKeys:
    """``seal``: the profile key; ``commit``: the audit-mac key (both outside the database)."""

    seal: bytes
    commit: bytes


def protect(
    keys: AddressKeys, entry_id: uuid.UUID, address: str | None
) -> tuple[bytes | None, bytes | None]:
    """(``address_hash``, ``address_sealed``) of a new entry; (None, None) without address."""
    if address is None:
        return None, None
    salt = secrets.token_bytes(_SALT_BYTES)
    commitment = crypto.mac(keys.commit, _COMMITMENT_LABEL, salt, address)
    aad = crypto.associated_data(_SEAL_PURPOSE, entry_id)
    return commitment, crypto.seal(keys.seal, salt + address.encode("utf-8"), aad)


def reveal(keys: AddressKeys, entry: AuditEntry) -> str | None:
    """The entry's address while it is kept: a legacy clear one, or the sealed one when it
    opens and matches the commitment the chain covers; ``None`` once erased (or if moved)."""
    if entry.format < 3:
        return entry.address
    if entry.address_sealed is None or entry.address_hash is None:
        return None
    try:
        opened = crypto.open_sealed(
            keys.seal, entry.address_sealed, crypto.associated_data(_SEAL_PURPOSE, entry.id)
        )
    except crypto.DecryptionFailed:
        return None
    salt, address = opened[:_SALT_BYTES], opened[_SALT_BYTES:].decode("utf-8")
    expected = crypto.mac(keys.commit, _COMMITMENT_LABEL, salt, address)
    return address if crypto.constant_time_equal(expected, entry.address_hash) else None


def is_erased(entry: AuditEntry) -> bool:
    """Whether the entry had an address that retention erased."""
    if entry.format < 3:
        return entry.address_erasure_mac is not None
    return entry.address_hash is not None and entry.address_sealed is None


def erasure_mac(key: bytes, columns: dict[str, Any], stored_hash: bytes) -> bytes:
    """The MAC ``address_erasure_mac`` holds for a format 1 or 2 entry, ``columns`` without
    the address."""
    return crypto.mac(key, _ERASED_LABEL, *_erasure_parts(columns, stored_hash))


def _erasure_parts(columns: dict[str, Any], stored_hash: bytes) -> tuple[Any, ...]:
    return (
        stored_hash,
        columns["format"],
        columns["chain"],
        columns["position"],
        columns["seq"],
        columns["id"],
        columns["at"].isoformat(),
        columns["actor_id"],
        columns["actor_role"],
        columns["action"],
        columns["outcome"],
        columns["target_type"],
        columns["target_id"],
        columns["subject_id"],
        columns["details"],
    )


def legacy_erasure_holds(
    key: bytes, columns: dict[str, Any], stored_hash: bytes, erasure_mac_: bytes
) -> bool:
    """Whether a format 1 or 2 entry whose address was erased is as it was when erased."""
    if columns["address"] is not None:
        return False
    expected = crypto.mac(key, _ERASED_LABEL, *_erasure_parts(columns, stored_hash))
    return crypto.constant_time_equal(expected, erasure_mac_)
