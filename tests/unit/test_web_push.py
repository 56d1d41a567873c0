"""The VAPID key is derived from ``vapid.key`` (made by ``medchat keys server-init``), and the
private scalar pywebpush signs with matches the public key the app subscribes with."""

from __future__ import annotations

import base64

from click.testing import CliRunner
from cryptography.hazmat.primitives import serialization
from py_vapid import Vapid

from access_control import web_push
from access_control.key_directory import KEY_NAMES


def _raw(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def test_the_vapid_key_pair_of_a_seed_is_one_pair_and_stable():
    seed = bytes(range(32))
    public = web_push.vapid_public_key(seed)
    assert public == web_push.vapid_public_key(seed)
    assert web_push.is_subscription_key(_raw(public))
    signer = Vapid.from_raw(web_push.vapid_private_raw(seed).encode())
    point = signer.public_key.public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    assert point == _raw(public)
    assert web_push.vapid_public_key(bytes(32)) != public


def test_only_points_of_p256_are_subscription_keys():
    good = _raw(web_push.vapid_public_key(b"\x07" * 32))
    assert web_push.is_subscription_key(good)
    assert not web_push.is_subscription_key(b"\x04" + b"\x00" * 64)  # not on the curve
    assert not web_push.is_subscription_key(good[:-1])
    assert not web_push.is_subscription_key(b"\x02" + good[1:])


def test_server_init_creates_the_notification_keys(tmp_path, monkeypatch):
    from medchat.cli import build_cli

    assert {"vapid", "notify-webhook"} <= set(KEY_NAMES)
    monkeypatch.setenv("MEDCHAT_KEY_DIR", str(tmp_path / "keys"))
    result = CliRunner().invoke(build_cli(), ["keys", "server-init"])
    assert result.exit_code == 0, result.output
    for name in ("vapid", "notify-webhook"):
        assert len((tmp_path / "keys" / f"{name}.key").read_bytes()) == 32
