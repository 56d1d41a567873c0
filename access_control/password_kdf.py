"""Password-sealed secrets: a personal private key opens only with its owner's password.

SECURITY-MODEL key hierarchy 3. Threat: a database dump guessed offline. Every key made from a
password starts with scrypt (RFC 7914) over the password and a random 16-byte salt, so each
guess costs memory and time; never from the bcrypt hash, which the database holds. The cost
parameters travel with the salt (in the blob, in the password hash), so they can be raised
later (open with the old ones, re-seal with the new) and a blob written with absurd ones is
refused before any work is done, so a forged row cannot make a login allocate gigabytes.

One scrypt run per sign-in: the scrypt output (``Stretched``) is never a key itself; HKDF-SHA256
with a label of its own makes the key that seals the private key here, and the bcrypt input of
the password hash (``access_control.passwords``) from the same output. The account's hash and
its personal key share one salt, and a ``Password`` remembers the scrypt runs it has done, so
checking the hash and then opening the key costs one scrypt and one bcrypt.

Blob: ``version (1) || log2 N (1) || r (1) || p (1) || salt (16) || nonce (12) ||
AES-256-GCM ciphertext+tag``, the header bound as associated data together with the caller's
``aad`` (whose key this is). Version 2 (written now) seals under ``HKDF(scrypt output,
info=_SEAL_INFO)``; version 1 (written before) under the scrypt output itself, still opened
and re-sealed as version 2 at the next sign-in. No key id is stored: one derived from the
password would be a second guessing oracle, and the salt already names the derived key.

Part of the crypto core with ``crypto`` (symmetric), ``hybrid_kem`` and ``signatures``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Final

from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from access_control.crypto import (
    KEY_SIZE,
    NONCE_SIZE,
    TAG_SIZE,
    DecryptionFailed,
    RandomBytes,
    SecretHandle,
    _aesgcm_decrypt_from_parts,
    _aesgcm_encrypt_from_parts,
    associated_data,
    hkdf_sha256,
)

#: The version this code seals; ``_LEGACY_BLOB_VERSION`` blobs still open.
PASSWORD_BLOB_VERSION: Final = 0x02
_LEGACY_BLOB_VERSION: Final = 0x01
SALT_SIZE: Final = 16
_HEADER_SIZE: Final = 1 + 3 + SALT_SIZE + NONCE_SIZE
_DOMAIN: Final = "medchat/password-seal/v1"
#: HKDF labels: one scrypt output, two unrelated keys (the other is ``passwords``'s).
_SEAL_INFO: Final = b"medchat/password-seal/v2/key"

#: Bounds for parameters read from a blob (and accepted at all): 2**10 is too cheap to be
#: worth storing; 2**20 with r=8 already needs 1 GiB per login.
MIN_LOG2_N: Final = 10
MAX_LOG2_N: Final = 20
_MAX_R: Final = 16
_MAX_P: Final = 4
_MAX_MEMORY: Final = 1 << 30


@dataclass(frozen=True)
class ScryptParams:
    """scrypt cost: N = 2**log2_n, block size r, parallelism p (RFC 7914 section 2).

    The default log2_n=17 (128 MiB, about 0.4 s) matches the production setting
    ``scrypt_log2_n``; tests use 10. Raises ``ValueError`` outside the accepted bounds.
    """

    log2_n: int = 17
    r: int = 8
    p: int = 1

    def __post_init__(self) -> None:
        """Refuse parameters outside the bounds ``open_with_password`` accepts."""
        if not MIN_LOG2_N <= self.log2_n <= MAX_LOG2_N:
            raise ValueError(f"scrypt log2_n must be in [{MIN_LOG2_N}, {MAX_LOG2_N}]")
        if not 1 <= self.r <= _MAX_R or not 1 <= self.p <= _MAX_P:
            raise ValueError(f"scrypt needs 1 <= r <= {_MAX_R} and 1 <= p <= {_MAX_P}")
        if self.memory_bytes > _MAX_MEMORY:
            raise ValueError("scrypt parameters would need more than 1 GiB")

    @property
    def n(self) -> int:
        """The CPU/memory cost N."""
        return 1 << self.log2_n

    @property
    def memory_bytes(self) -> int:
        """Memory one derivation needs (128 * r * N bytes)."""
        return 128 * self.r * self.n


def _derive(password: str, salt: bytes, params: ScryptParams) -> bytes:
    # UTF-8 without normalisation, exactly as access_control.passwords reads it, so the
    # password that logs in is the password that opens.
    kdf = Scrypt(salt=salt, length=KEY_SIZE, n=params.n, r=params.r, p=params.p)
    return kdf.derive(password.encode("utf-8"))


class Stretched(SecretHandle):
    """One scrypt run: a password stretched with a salt at a cost. Never a key by itself.

    ``key(label)`` derives a key for one purpose (HKDF-SHA256, RFC 5869), so what seals the
    private key and what bcrypt hashes are unrelated to each other, yet both cost the guesser
    this scrypt run. The salt and cost are public (they are stored beside what they made).
    """

    __slots__ = ("_output", "params", "salt")

    def __init__(self, salt: bytes, params: ScryptParams, output: bytes) -> None:
        if len(salt) != SALT_SIZE or len(output) != KEY_SIZE:
            raise ValueError("a stretched password is a 16-byte salt and a 32-byte output")
        self.salt = bytes(salt)
        self.params = params
        self._output = bytes(output)

    def __repr__(self) -> str:
        return f"Stretched(log2_n={self.params.log2_n}, salt={self.salt.hex()})"

    def key(self, label: bytes) -> bytes:
        """A 32-byte key for the purpose ``label`` names."""
        return hkdf_sha256(self._output, salt=b"", info=label, length=KEY_SIZE)

    def secret_output(self) -> bytes:
        """The scrypt output itself. Secret: only to be sealed at once (the console's
        pending step, ``medchat.identity.console_sessions``) or to open a version 1 blob."""
        return self._output


class Password(SecretHandle):
    """A password given in this request, and the scrypt work already done on it.

    Signing in checks the password hash and then opens the personal key: one ``Password``
    passed from one to the other makes that one scrypt run, because ``stretched`` remembers
    each (salt, cost) it ran for. ``account`` is the run the account's stored hash is made
    from, set by ``PasswordHasher`` when a hash verifies or is made: sealing uses it, so the
    hash and the key keep sharing their salt. A ``Password`` made from carried runs alone
    (``text=None``) opens only what those runs open and raises ``DecryptionFailed`` for
    anything else. ``runner`` runs each scrypt: the process's bound on password work
    (``access_control.password_work``), set by ``PasswordHasher`` when it first sees this
    password, so a later run (opening a key sealed with another salt) is bounded too.
    """

    __slots__ = ("_fresh", "_memo", "_text", "account", "runner")

    def __init__(self, text: str | None, remembered: Iterable[Stretched] = ()) -> None:
        self._text = text
        self._memo: dict[tuple[bytes, ScryptParams], Stretched] = {
            (run.salt, run.params): run for run in remembered
        }
        self._fresh: dict[ScryptParams, Stretched] = {}
        self.account: Stretched | None = None
        self.runner: Callable[..., Any] | None = None

    def __repr__(self) -> str:
        return f"Password(runs={len(self._memo)})"

    @classmethod
    def of(cls, value: str | Password) -> Password:
        """``value`` itself, or a new ``Password`` for a plain string."""
        return value if isinstance(value, Password) else cls(value)

    @property
    def is_empty(self) -> bool:
        return self._text == ""

    def utf8(self) -> bytes:
        """The password's UTF-8 bytes: for checking a hash made before the scrypt pre-hash."""
        if self._text is None:
            raise DecryptionFailed
        return self._text.encode("utf-8")

    def stretched(self, salt: bytes, params: ScryptParams) -> Stretched:
        """scrypt over this password with ``salt`` and ``params``, run once per pair."""
        run = self._memo.get((salt, params))
        if run is None:
            if self._text is None:
                raise DecryptionFailed
            if self.runner is not None:
                output = self.runner(_derive, self._text, salt, params)
            else:
                output = _derive(self._text, salt, params)
            run = Stretched(salt, params, output)
            self._memo[(salt, params)] = run
        return run

    def fresh(self, params: ScryptParams, random_bytes: RandomBytes = os.urandom) -> Stretched:
        """The run a new hash or seal of this password uses: a new salt, made once per cost."""
        run = self._fresh.get(params)
        if run is None:
            run = self._fresh[params] = self.stretched(random_bytes(SALT_SIZE), params)
        return run

    def for_sealing(
        self, params: ScryptParams, random_bytes: RandomBytes = os.urandom
    ) -> Stretched:
        """The account's run when it is of this cost (hash and key share it), else a fresh one."""
        if self.account is not None and self.account.params == params:
            return self.account
        return self.fresh(params, random_bytes)

    def runs(self) -> tuple[Stretched, ...]:
        """Every scrypt run done so far (what the console carries to its TOTP step)."""
        return tuple(self._memo.values())


def _parse_header(blob: bytes) -> tuple[int, ScryptParams, bytes, bytes]:
    if len(blob) < _HEADER_SIZE + TAG_SIZE or blob[0] not in (
        PASSWORD_BLOB_VERSION,
        _LEGACY_BLOB_VERSION,
    ):
        raise DecryptionFailed
    try:
        params = ScryptParams(log2_n=blob[1], r=blob[2], p=blob[3])
    except ValueError as exc:
        raise DecryptionFailed from exc
    return blob[0], params, blob[4 : 4 + SALT_SIZE], blob[4 + SALT_SIZE : _HEADER_SIZE]


def seal_with_password(
    secret: bytes,
    password: str | Password,
    *,
    aad: bytes,
    params: ScryptParams,
    random_bytes: RandomBytes = os.urandom,
) -> bytes:
    """Encrypt ``secret`` under a key derived from ``password``, with a fresh nonce.

    The salt is the account's (``Password.account``, when of cost ``params``) or a fresh one.
    ``aad`` names what the secret is (e.g. ``associated_data("personal-key", account_id)``);
    the same bytes must be given to open it. Raises ``ValueError`` for an empty password.
    """
    password = Password.of(password)
    if password.is_empty:
        raise ValueError("an empty password protects nothing")
    run = password.for_sealing(params, random_bytes)
    nonce = random_bytes(NONCE_SIZE)
    header = bytes([PASSWORD_BLOB_VERSION, params.log2_n, params.r, params.p]) + run.salt + nonce
    return header + _aesgcm_encrypt_from_parts(
        run.key(_SEAL_INFO), nonce, secret, associated_data(_DOMAIN, header, aad)
    )


def password_blob_params(blob: bytes) -> ScryptParams:
    """The parameters a blob was sealed with (to decide whether to re-seal with higher ones).

    Raises ``DecryptionFailed`` if the blob is malformed or names parameters out of bounds.
    """
    return _parse_header(blob)[1]


def stretch_for_blob(blob: bytes, password: str | Password) -> Stretched:
    """The scrypt run that opens ``blob`` (done now unless ``password`` remembers it).

    Opens nothing: the console runs it at the password step and carries the result, sealed,
    to the TOTP step, where the key is opened. Raises ``DecryptionFailed`` for a malformed
    blob or parameters out of bounds (before any work).
    """
    _version, params, salt, _nonce = _parse_header(blob)
    return Password.of(password).stretched(salt, params)


def sealed_under(blob: bytes, run: Stretched) -> bool:
    """Whether ``blob`` is of the current version and sealed with ``run``'s salt and cost."""
    try:
        version, params, salt, _nonce = _parse_header(blob)
    except DecryptionFailed:
        return False
    return version == PASSWORD_BLOB_VERSION and params == run.params and salt == run.salt


def open_with_password(blob: bytes, password: str | Password, *, aad: bytes) -> bytes:
    """Open a blob made by ``seal_with_password``, with the parameters stored in it.

    Raises ``DecryptionFailed`` for a wrong password, other ``aad``, any altered byte, or
    parameters out of bounds (checked before scrypt runs).
    """
    version, params, salt, nonce = _parse_header(blob)
    run = Password.of(password).stretched(salt, params)
    key = run.secret_output() if version == _LEGACY_BLOB_VERSION else run.key(_SEAL_INFO)
    return _aesgcm_decrypt_from_parts(
        key, nonce, blob[_HEADER_SIZE:], associated_data(_DOMAIN, blob[:_HEADER_SIZE], aad)
    )
