"""Opened conversation keys remembered in process memory, usable only by the session that
opened them (SECURITY-MODEL key hierarchy 2, 5 and 11).

An HPKE unwrap with ML-KEM-768 + X25519 (and deriving the private key from its seed) is the
largest piece of cryptography in a read or a send, and a session asks for the same
conversation's DEK again and again. This memo keeps, per process, the result of
``unwrap(session's private key, wrap) -> DEK`` for a few minutes, so that the next request of
the same session skips the unwrap. What it keeps, and why that changes none of the promises:

- **Sealed to the session.** An entry's DEK is sealed (AES-256-GCM) under a key derived from
  the bearer token, which only the client holds, and the session-keyring server key, as the
  keyring is (``Keyring.memo_key``); the server keeps the token's hash, never the token.
  Between requests the process holds ciphertext only, exactly as the database holds the
  session's keyring; another session's request cannot open it. (The server key is no wall
  here, since this process holds it too; it is mixed in because it is free and keeps one rule
  for everything sealed to a session.)
- **Never instead of a check.** A request reaches the memo only after its token row was
  found live (revocation, logout and expiry delete or end that row, so they stop the next
  request at once, whatever the memo holds), after the row check, with the wrap it would
  have opened read from the database in this request: the entry is found by a hash of those
  exact wrap bytes, the session's token row, the conversation and the holder, so a deleted,
  replaced or moved wrap is a miss. The DEK it returns is checked against the conversation's
  key commitment and key-set tag like every unwrapped one.
- **Memory only, bounded, short-lived.** Nothing is written anywhere (no database row, no
  file, no shared cache); entries live ``MEDCHAT_UNWRAP_MEMO_SECONDS`` (300 by default, 0 turns
  the memo off), at most ``capacity`` of them (least recently used go first), and every entry
  of an account is dropped when this process revokes its sessions (logout, password change,
  revocation). A process that did not revoke keeps sealed entries it can no longer use, until
  they expire.
"""

from __future__ import annotations

import hashlib
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from typing import NoReturn

from access_control import crypto
from access_control.keyring import Keyring

_INDEX_LABEL = "medchat/unwrap-memo-index/v1"
_AAD_LABEL = "medchat/unwrap-memo/v1"
DEFAULT_CAPACITY = 4096


class UnwrapMemo:
    """A bounded, expiring map (session, conversation, holder, wrap) -> DEK sealed to the
    session. Thread-safe; refuses pickling (it is process memory by definition)."""

    def __init__(
        self,
        ttl_seconds: float,
        *,
        capacity: int = DEFAULT_CAPACITY,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl_seconds = ttl_seconds
        self.capacity = capacity
        self._monotonic = monotonic
        self._lock = threading.Lock()
        #: index -> (expires at, account id, sealed DEK)
        self._entries: OrderedDict[bytes, tuple[float, uuid.UUID, bytes]] = OrderedDict()

    def __reduce__(self) -> NoReturn:
        raise TypeError("the unwrap memo is process memory and cannot be pickled")

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def enabled(self) -> bool:
        return self.ttl_seconds > 0 and self.capacity > 0

    @staticmethod
    def _place(
        keyring: Keyring, conversation_id: uuid.UUID, holder: str, wrap: bytes
    ) -> tuple[bytes, bytes]:
        wrap_hash = hashlib.sha256(wrap).digest()
        parts = (keyring.session_id, keyring.account_id, conversation_id, holder, wrap_hash)
        return crypto.digest(_INDEX_LABEL, *parts), crypto.associated_data(_AAD_LABEL, *parts)

    def recall(
        self, keyring: Keyring, conversation_id: uuid.UUID, holder: str, wrap: bytes
    ) -> bytes | None:
        """The DEK this session opened from exactly ``wrap`` before, or ``None``.

        ``None`` also for a keyring not opened from a session token, an expired entry, or one
        that does not open under this session's memo key. The caller still checks the DEK
        against the conversation's commitment.
        """
        memo_key = keyring.memo_key
        if memo_key is None or not self.enabled:
            return None
        index, aad = self._place(keyring, conversation_id, holder, wrap)
        with self._lock:
            entry = self._entries.get(index)
            if entry is None:
                return None
            if entry[0] <= self._monotonic():
                del self._entries[index]
                return None
            self._entries.move_to_end(index)
        try:
            return crypto.open_sealed(memo_key, entry[2], aad)
        except crypto.DecryptionFailed:
            return None

    def remember(
        self, keyring: Keyring, conversation_id: uuid.UUID, holder: str, wrap: bytes, dek: bytes
    ) -> None:
        """Keep ``dek`` (just unwrapped from ``wrap`` and checked) sealed to this session."""
        memo_key = keyring.memo_key
        if memo_key is None or not self.enabled:
            return
        index, aad = self._place(keyring, conversation_id, holder, wrap)
        sealed = crypto.seal(memo_key, dek, aad)
        with self._lock:
            self._entries[index] = (
                self._monotonic() + self.ttl_seconds,
                keyring.account_id,
                sealed,
            )
            self._entries.move_to_end(index)
            while len(self._entries) > self.capacity:
                self._entries.popitem(last=False)

    def forget_account(self, account_id: uuid.UUID) -> None:
        """Drop every entry of the account's sessions (their tokens are being revoked)."""
        with self._lock:
            for index in [i for i, e in self._entries.items() if e[1] == account_id]:
                del self._entries[index]

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
