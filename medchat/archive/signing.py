"""The archive-signing key: sealed-archive records are signed outside the database and checked
against a public key the deployment pins (SECURITY-MODEL "Deletion, sealed archive").

Threat: someone who can write the database edits a ledger record, recomputes every hash after
it and re-signs the chain with an Ed25519 key of their own. The private key lives only in
``MEDCHAT_KEY_DIR/archive-signing.key`` (a 32-byte RFC 8032 seed), and every check uses the
public key pinned in the configuration (``MEDCHAT_ARCHIVE_SIGNING_PUBLIC_KEY``), never one read
from the row being checked, so a re-signed chain fails. Production refuses to start when the pin
is missing or is not the public key of the private key it holds; development derives the pin
from the key file. The same public key is published (``GET /api/v1/archive/public-key``) so an
exported record or bundle verifies offline, with no database and no secret.

Signed messages are domain-separated (``crypto.associated_data`` with a label per use), so a
record signature can never pass as a bundle signature or the other way round. The ledger head
is MAC'd (its column holds 32 bytes, not a 64-byte signature) with a key derived by HKDF from
the same seed, so only the holder of the signing key can move the head.
"""

from __future__ import annotations

from dataclasses import dataclass

from access_control import crypto, signatures
from access_control.signatures import SigningKeyHandle
from medchat.errors import ConfigurationError

ALGORITHM = "Ed25519"
_HEAD_MAC_INFO = b"medchat/archive-head-mac/v1"


@dataclass(frozen=True, repr=False)
class ArchiveSigner:
    """The opened archive-signing key and the public key it must match (the pin)."""

    key: SigningKeyHandle
    public_key: bytes
    head_mac_key: bytes

    def __repr__(self) -> str:
        return f"ArchiveSigner(fingerprint={self.fingerprint[:16]})"

    @property
    def fingerprint(self) -> str:
        """64 hex digits naming the public key; stored as ``signing_key_id`` on each record."""
        return signatures.signing_key_fingerprint(self.public_key)

    def sign(self, label: str, *parts: crypto.Part) -> bytes:
        """The Ed25519 signature of the domain label and the unambiguously encoded parts."""
        return signatures.sign(self.key, crypto.associated_data(label, *parts))


def verify_signed(public_key: bytes, signature: bytes, label: str, *parts: crypto.Part) -> None:
    """Raise ``IntegrityCheckFailed`` unless ``signature`` is ``sign(label, *parts)`` under
    ``public_key`` (the pinned or published key, never one taken from the signed data)."""
    signatures.verify_signature(public_key, signature, crypto.associated_data(label, *parts))


def public_key_from_hex(value: str) -> bytes:
    """A 32-byte Ed25519 public key from 64 hex digits; ``ValueError`` otherwise."""
    raw = bytes.fromhex(value.strip())
    if len(raw) != signatures.PUBLIC_KEY_SIZE:
        raise ValueError("an Ed25519 public key is 32 bytes (64 hex digits)")
    return raw


def load_archive_signer(seed: bytes, pinned_hex: str, *, production: bool) -> ArchiveSigner:
    """Open the signing seed and check it against the pinned public key.

    Raises ``ConfigurationError`` when the pin does not match the key (any environment), and
    in production when there is no pin: a host whose key file was swapped must not sign.
    """
    try:
        key = signatures.load_signing_key(seed)
    except crypto.DecryptionFailed as exc:
        raise ConfigurationError("archive-signing.key does not hold a 32-byte seed") from exc
    derived = key.public_key_bytes
    if not pinned_hex:
        if production:
            raise ConfigurationError(
                "refusing to start in production: MEDCHAT_ARCHIVE_SIGNING_PUBLIC_KEY is not set "
                "(pin the key 'medchat archive public-key' prints)"
            )
        pinned = derived
    else:
        pinned = public_key_from_hex(pinned_hex)
        if not crypto.constant_time_equal(pinned, derived):
            raise ConfigurationError(
                "refusing to start: MEDCHAT_ARCHIVE_SIGNING_PUBLIC_KEY is not the public key of "
                "archive-signing.key in MEDCHAT_KEY_DIR"
            )
    head_mac_key = crypto.hkdf_sha256(seed, salt=b"", info=_HEAD_MAC_INFO, length=crypto.KEY_SIZE)
    return ArchiveSigner(key=key, public_key=pinned, head_mac_key=head_mac_key)
