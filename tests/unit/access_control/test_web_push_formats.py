"""The VAPID key's derivation and encodings written out (``access_control.web_push``).

``tests/unit/test_web_push.py`` shows the pair is one pair and stable; a round trip cannot see
the derivation change (another HKDF label, length or reduction would still give a pair), and
every subscription a browser made would stop receiving pushes. Here the key is derived again
from RFC 5869 and the P-256 order by hand, and the encodings are checked byte for byte.
"""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from access_control import web_push

SEED = bytes(range(100, 132))
P256_ORDER = int("FFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551", 16)


def expected_scalar(seed: bytes) -> int:
    wide = HKDF(
        algorithm=hashes.SHA256(), length=48, salt=None, info=b"medchat/vapid-p256/v1"
    ).derive(seed)
    return int.from_bytes(wide, "big") % (P256_ORDER - 1) + 1


def test_the_private_scalar_is_hkdf_of_the_seed_reduced_into_the_group():
    """``_private_key`` 10, 17, 19, 27-29 (label, length, reduction) and ``vapid_private_raw``
    3, 4, 10 (the encoding: 32 bytes big-endian, base64url without padding)."""
    raw = web_push.vapid_private_raw(SEED)
    assert len(raw) == 43 and "=" not in raw
    assert base64.urlsafe_b64decode(raw + "=") == expected_scalar(SEED).to_bytes(32, "big")


def test_the_public_key_is_the_uncompressed_point_without_padding():
    """``vapid_public_key`` 7, 8: 65 bytes, 87 characters."""
    public = web_push.vapid_public_key(SEED)
    point = (
        ec.derive_private_key(expected_scalar(SEED), ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    )
    assert public == base64.urlsafe_b64encode(point).decode().rstrip("=")
    assert len(public) == 87


@pytest.mark.parametrize("size", [0, 31])
def test_a_seed_shorter_than_32_bytes_is_refused_by_name(size):
    """``_private_key`` 3-6: the message says what is wrong."""
    with pytest.raises(ValueError, match=r"^the VAPID seed needs at least 32 bytes$"):
        web_push.vapid_public_key(bytes(size))
    assert web_push.vapid_public_key(bytes(32))
