"""Server-held keys live in ``MEDCHAT_KEY_DIR``, never in the database.

These keys protect personal data at rest, the blind e-mail index, the audit chain's MACs,
the console cookie signature, key-integrity tags and the sealed-archive ledger's signatures
(``archive-signing``: a 32-byte Ed25519 private seed, RFC 8032; its public key is pinned in
the configuration, ``medchat.archive.signing``). None of them opens medical content: that
needs a private key that exists only inside an authenticated request (SECURITY-MODEL "Key
hierarchy"); a signing key can only vouch for records, never open them. A stolen database
without this directory names nobody and cannot have its audit chain recomputed.

In development missing keys are generated (file mode 0600); in production they must exist,
so a fresh, empty key directory is refused instead of silently creating new keys that would
make existing data unreadable.
"""

from __future__ import annotations

import os
import pwd
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from access_control.errors import ConfigurationError

KEY_NAMES = (
    "profile",
    "blind-index",
    "audit-mac",
    "session-signing",
    "integrity",
    "archive-signing",
    "session-keyring",
    "archive-gate",
    "audit-anchor",
    "vapid",
    "notify-webhook",
)
KEY_BYTES = 32


@dataclass(frozen=True, repr=False)
class ServerKeys:
    """The symmetric keys read from the key directory. ``repr`` shows no key material."""

    profile: bytes
    blind_index: bytes
    audit_mac: bytes
    session_signing: bytes
    integrity: bytes
    #: Ed25519 private seed (RFC 8032) that signs sealed-archive records and export bundles.
    archive_signing: bytes
    #: Mixed with each session token to seal its keyring: a database copy plus a stolen token
    #: opens nothing without this directory (SECURITY-MODEL key hierarchy 10, "Sessions").
    session_keyring: bytes
    #: Seals the archive wrap of a live conversation; sealing a conversation removes the gate,
    #: so the archive key opens sealed records only (SECURITY-MODEL key hierarchy 10).
    archive_gate: bytes
    #: Ed25519 seed (RFC 8032) that signs audit-chain anchors (``medchat audit anchor``).
    audit_anchor: bytes
    #: Seed of the P-256 VAPID key that signs Web Push requests (``access_control.web_push``).
    vapid: bytes
    #: HMAC-SHA256 key of the notification webhook's signature (``services/notify_channels``).
    notify_webhook: bytes
    directory: Path

    def __repr__(self) -> str:
        return f"ServerKeys(directory={str(self.directory)!r})"

    def __reduce__(self) -> NoReturn:
        raise TypeError("server keys must not be pickled")


def unreadable(path: Path, error: OSError) -> ConfigurationError:
    """One line for an operator: which file, why, whose it is and its mode, and the fix
    (issue 13 item 5), instead of the traceback of a failed read."""
    try:
        stat = path.stat()
        try:
            owner = pwd.getpwuid(stat.st_uid).pw_name
        except KeyError:
            owner = str(stat.st_uid)
        found = f"owner {owner}, mode {stat.st_mode & 0o7777:04o}"
    except OSError:
        found = "owner and mode unknown"
    try:
        user = pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        user = str(os.geteuid())
    return ConfigurationError(
        f"cannot read key file {path} ({error.strerror or type(error).__name__}; {found}): "
        f"it must be a file the service's user ({user}) can read, e.g. "
        f"'chown {user} {path} && chmod 0400 {path}'"
    )


def _read_or_create(path: Path, create: bool) -> bytes:
    if path.exists():
        try:
            data = path.read_bytes()
        except OSError as error:
            raise unreadable(path, error) from None
        if len(data) != KEY_BYTES:
            raise ConfigurationError(f"{path} does not hold a {KEY_BYTES}-byte key")
        return data
    if not create:
        raise ConfigurationError(
            f"missing key file {path}: production never generates keys; "
            "create them with 'medchat keys server-init' and distribute them to every host"
        )
    data = secrets.token_bytes(KEY_BYTES)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    return data


def load_server_keys(directory: Path, *, create_missing: bool) -> ServerKeys:
    """Read the server keys, generating missing ones only when ``create_missing``."""
    if create_missing:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    elif not directory.is_dir():
        raise ConfigurationError(f"MEDCHAT_KEY_DIR {directory} does not exist")
    values = {
        name.replace("-", "_"): _read_or_create(directory / f"{name}.key", create_missing)
        for name in KEY_NAMES
    }
    return ServerKeys(directory=directory, **values)
