"""The archive-signing key lives in ``MEDCHAT_KEY_DIR`` and its public key is pinned by the
deployment: production refuses to start without the pin or with a pin that is not the key's;
development derives it. The retrieval window is a setting with sane bounds."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from access_control import signatures
from access_control.key_directory import load_server_keys
from medchat.archive.signing import load_archive_signer
from medchat.config import Settings
from medchat.errors import ConfigurationError
from medchat.services.context import build_service_context


def production(key_dir: Path, tmp_path: Path, **overrides) -> Settings:
    return Settings.from_env(
        {},
        overrides={
            "env": "production",
            "database_url": "postgresql+psycopg://medchat@db.invalid/medchat",
            "staff_networks": "10.0.0.0/8",
            "key_dir": key_dir,
            "mail_url": f"file://{tmp_path / 'mail'}",
            **overrides,
        },
    )


@pytest.fixture
def keys(tmp_path):
    return load_server_keys(tmp_path / "keys", create_missing=True)


def public_hex(seed: bytes) -> str:
    return signatures.load_signing_key(seed).public_key_bytes.hex()


def test_the_key_directory_holds_a_private_archive_signing_seed(keys):
    path = keys.directory / "archive-signing.key"
    assert path.read_bytes() == keys.archive_signing
    assert len(keys.archive_signing) == 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert keys.archive_signing.hex() not in repr(keys)


def test_development_derives_the_pin_from_the_key(keys):
    signer = load_archive_signer(keys.archive_signing, "", production=False)
    assert signer.public_key.hex() == public_hex(keys.archive_signing)
    assert signer.fingerprint == signatures.signing_key_fingerprint(signer.public_key)
    assert keys.archive_signing.hex() not in repr(signer)


def test_a_matching_pin_is_accepted_in_either_environment(keys):
    pin = public_hex(keys.archive_signing)
    for is_production in (False, True):
        signer = load_archive_signer(keys.archive_signing, pin.upper(), production=is_production)
        assert signer.public_key.hex() == pin


@pytest.mark.parametrize("is_production", [False, True])
def test_a_pin_that_is_not_the_keys_public_key_is_refused(keys, is_production):
    other = public_hex(b"\x01" * 32)
    with pytest.raises(ConfigurationError, match="not the public key"):
        load_archive_signer(keys.archive_signing, other, production=is_production)


def test_production_refuses_to_start_without_the_pin(keys, tmp_path):
    with pytest.raises(ConfigurationError, match="MEDCHAT_ARCHIVE_SIGNING_PUBLIC_KEY"):
        build_service_context(production(keys.directory, tmp_path))


def test_production_refuses_to_start_with_a_swapped_key_file(keys, tmp_path):
    settings = production(
        keys.directory, tmp_path, archive_signing_public_key=public_hex(keys.archive_signing)
    )
    build_service_context(settings).database.dispose()
    (keys.directory / "archive-signing.key").write_bytes(b"\x02" * 32)
    with pytest.raises(ConfigurationError, match="not the public key"):
        build_service_context(settings)


def test_production_never_generates_the_signing_key(tmp_path):
    keys = tmp_path / "keys"
    load_server_keys(keys, create_missing=True)
    (keys / "archive-signing.key").unlink()
    with pytest.raises(ConfigurationError, match=r"archive-signing\.key"):
        build_service_context(production(keys, tmp_path, archive_signing_public_key="00" * 32))
    assert not (keys / "archive-signing.key").exists()


@pytest.mark.parametrize("pin", ["abc", "zz" * 32, "00" * 31])
def test_a_malformed_pin_is_refused(pin):
    with pytest.raises(ConfigurationError, match="64 hex digits"):
        Settings.from_env({"MEDCHAT_ARCHIVE_SIGNING_PUBLIC_KEY": pin})


def test_the_retrieval_window_defaults_to_24_hours_and_is_bounded():
    assert Settings.from_env({}).retrieval_hours == 24
    assert (
        Settings.from_env({"MEDCHAT_RETRIEVAL_HOURS": "4"}).retrieval_ttl.total_seconds()
        == 4 * 3600
    )
    for hours in ("0", "721"):
        with pytest.raises(ConfigurationError, match="RETRIEVAL_HOURS"):
            Settings.from_env({"MEDCHAT_RETRIEVAL_HOURS": hours})
