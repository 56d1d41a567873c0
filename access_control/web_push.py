"""The P-256 keys of Web Push: the server's VAPID key (RFC 8292) and a subscription's key.

The VAPID key signs the JWT that tells a push service which server sends (so a stolen
subscription alone cannot push to a member); it is derived from ``vapid.key`` in
``MEDCHAT_KEY_DIR`` (32 random bytes like every server key), never stored in the database.
A subscription's ``p256dh`` key is what the payload is encrypted to (RFC 8291): it must be a
point on the curve, or the browser's key was garbled and nothing could be read.

Part of the crypto core: the one place outside ``crypto`` where P-256 is touched; the payload
encryption itself is ``http_ece``'s (through ``pywebpush``).
"""

from __future__ import annotations

import base64
from typing import Final

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from access_control.crypto import hkdf_sha256

_SEED_INFO: Final = b"medchat/vapid-p256/v1"
#: The order of the P-256 group: a scalar must lie in [1, n-1].
_ORDER: Final = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
PUBLIC_KEY_SIZE: Final = 65
AUTH_SECRET_SIZE: Final = 16


def _private_key(seed: bytes) -> ec.EllipticCurvePrivateKey:
    """The VAPID key of a 32-byte seed: HKDF output reduced into [1, n-1] (bias < 2^-128)."""
    if len(seed) < 32:
        raise ValueError("the VAPID seed needs at least 32 bytes")
    wide = hkdf_sha256(seed, salt=b"", info=_SEED_INFO, length=48)
    scalar = int.from_bytes(wide, "big") % (_ORDER - 1) + 1
    return ec.derive_private_key(scalar, ec.SECP256R1())


def vapid_private_raw(seed: bytes) -> str:
    """The private scalar as base64url (what ``py_vapid.Vapid.from_raw`` takes)."""
    number = _private_key(seed).private_numbers().private_value
    return base64.urlsafe_b64encode(number.to_bytes(32, "big")).rstrip(b"=").decode()


def vapid_public_key(seed: bytes) -> str:
    """The public key as the browser's ``applicationServerKey`` wants it: uncompressed point,
    base64url without padding (65 bytes, 87 characters)."""
    point = (
        _private_key(seed)
        .public_key()
        .public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    )
    return base64.urlsafe_b64encode(point).rstrip(b"=").decode()


def is_subscription_key(point: bytes) -> bool:
    """Whether ``point`` is an uncompressed P-256 point (a browser's ``p256dh``)."""
    if len(point) != PUBLIC_KEY_SIZE or point[0] != 4:
        return False
    try:
        ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point)
    except ValueError:
        return False
    return True
