"""Settings: production defaults are the strong ones, and production refuses weakened ones."""

from __future__ import annotations

import ipaddress

import bcrypt
import pytest

from access_control.password_kdf import ScryptParams
from access_control.passwords import PasswordHasher
from medchat.config import Settings
from medchat.errors import ConfigurationError

PG = "postgresql+psycopg://medchat@db/medchat"
PRODUCTION = {
    "MEDCHAT_ENV": "production",
    "MEDCHAT_DATABASE_URL": PG,
    "MEDCHAT_STAFF_NETWORKS": "10.20.0.0/16",
}


def test_production_defaults_hash_passwords_at_bcrypt_cost_12():
    settings = Settings.from_env(PRODUCTION)
    assert settings.bcrypt_rounds == 12
    assert settings.scrypt_log2_n >= 17
    assert settings.cookie_secure is True
    hasher = PasswordHasher(settings.bcrypt_rounds, ScryptParams(log2_n=settings.scrypt_log2_n))
    hashed = hasher.hash("quokka-harbor-lantern-42")
    # scrypt at the production cost, then bcrypt cost 12 over its output (never the password).
    assert hashed.startswith(b"$msb1$ln=17,r=8,p=1$")
    assert hashed[-60:].startswith(b"$2b$12$")
    assert not bcrypt.checkpw(b"quokka-harbor-lantern-42", hashed[-60:])
    assert hasher.verify("quokka-harbor-lantern-42", hashed)


@pytest.mark.parametrize(
    "override",
    [
        {"MEDCHAT_BCRYPT_ROUNDS": "4"},
        {"MEDCHAT_SCRYPT_LOG2_N": "10"},
        {"MEDCHAT_COOKIE_SECURE": "false"},
        {"MEDCHAT_DATABASE_URL": "sqlite:///var/medchat.sqlite3"},
        {"MEDCHAT_STAFF_NETWORKS": ""},
    ],
    ids=["bcrypt", "scrypt", "cookies", "sqlite", "no-staff-network"],
)
def test_production_refuses_weakened_settings(override):
    with pytest.raises(ConfigurationError, match="refusing to start in production"):
        Settings.from_env({**PRODUCTION, **override})


def test_production_refuses_to_start_without_its_own_staff_networks():
    """The loopback default is development's; behind a same-host nginx it opens the console."""
    unset = {k: v for k, v in PRODUCTION.items() if k != "MEDCHAT_STAFF_NETWORKS"}
    with pytest.raises(ConfigurationError, match="MEDCHAT_STAFF_NETWORKS is not set"):
        Settings.from_env(unset)
    with pytest.raises(ConfigurationError, match="MEDCHAT_STAFF_NETWORKS is not set"):
        Settings.from_env({}, overrides={"env": "production", "database_url": PG})
    assert Settings.from_env({}).staff_networks  # development keeps its default


@pytest.mark.parametrize("loopback", ["127.0.0.0/8,::1/128", "127.0.0.1/32", "::1/128"])
def test_production_refuses_loopback_only_staff_networks_without_the_proxy_settings(loopback):
    environ = {**PRODUCTION, "MEDCHAT_STAFF_NETWORKS": loopback}
    with pytest.raises(ConfigurationError, match=r"loopback only.*TRUSTED_PROXY_NETWORKS"):
        Settings.from_env(environ)

    behind_nginx = Settings.from_env(
        {
            **environ,
            "MEDCHAT_TRUSTED_PROXY_NETWORKS": "127.0.0.1/32",
            "MEDCHAT_TRUSTED_PROXIES": "1",
        }
    )
    assert behind_nginx.trusted_proxies == 1


def test_production_accepts_staff_networks_beyond_loopback_without_a_proxy():
    settings = Settings.from_env(
        {**PRODUCTION, "MEDCHAT_STAFF_NETWORKS": "127.0.0.1/32,10.0.0.0/8"}
    )
    assert settings.trusted_proxy_networks == ()


@pytest.mark.parametrize(
    ("environ", "named"),
    [
        ({"MEDCHAT_TRUSTED_PROXIES": "1"}, "MEDCHAT_TRUSTED_PROXY_NETWORKS"),
        ({"MEDCHAT_TRUSTED_PROXY_NETWORKS": "10.0.0.1/32"}, "MEDCHAT_TRUSTED_PROXIES"),
        ({"MEDCHAT_TRUSTED_PROXY_NETWORKS": "nginx"}, "MEDCHAT_TRUSTED_PROXY_NETWORKS"),
    ],
    ids=["hop-count-alone", "addresses-without-count", "not-a-cidr"],
)
def test_forwarded_for_is_trusted_only_from_proxy_addresses_and_a_count(environ, named):
    with pytest.raises(ConfigurationError, match=named):
        Settings.from_env(environ)


def test_development_accepts_lowered_costs_for_tests():
    settings = Settings.from_env({}, overrides={"bcrypt_rounds": 4})
    assert settings.bcrypt_rounds == 4


def test_environment_values_are_parsed():
    settings = Settings.from_env(
        {
            "MEDCHAT_STAFF_NETWORKS": "10.0.0.0/8, 2001:db8::/32",
            "MEDCHAT_TRUSTED_PROXIES": "1",
            "MEDCHAT_TRUSTED_PROXY_NETWORKS": "127.0.0.1/32, 10.9.0.0/24",
            "MEDCHAT_RETENTION_DAYS": "365",
            "MEDCHAT_REGISTRATION_OPEN": "no",
        }
    )
    assert settings.staff_networks == (
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("2001:db8::/32"),
    )
    assert settings.trusted_proxies == 1
    assert settings.trusted_proxy_networks == (
        ipaddress.ip_network("127.0.0.1/32"),
        ipaddress.ip_network("10.9.0.0/24"),
    )
    assert settings.retention_days == 365
    assert settings.registration_open is False


@pytest.mark.parametrize(
    "environ",
    [
        {"MEDCHAT_STAFF_NETWORKS": "10.0.0.0/33"},
        {"MEDCHAT_TRUSTED_PROXIES": "one"},
        {"MEDCHAT_TRUSTED_PROXIES": "-1"},
        {"MEDCHAT_TRUSTED_PROXIES": "1"},
        {"MEDCHAT_REGISTRATION_OPEN": "maybe"},
        {"MEDCHAT_ENV": "staging"},
        {"MEDCHAT_UNWRAP_MEMO_SECONDS": "-1"},
        {"MEDCHAT_UNWRAP_MEMO_SECONDS": "901"},
    ],
)
def test_malformed_settings_are_refused(environ):
    with pytest.raises(ConfigurationError):
        Settings.from_env(environ)


def test_the_unwrap_memo_lasts_five_minutes_unless_set_and_zero_turns_it_off():
    assert Settings.from_env({}).unwrap_memo_seconds == 300
    assert Settings.from_env({"MEDCHAT_UNWRAP_MEMO_SECONDS": "0"}).unwrap_memo_seconds == 0


def test_unknown_override_names_are_refused():
    with pytest.raises(ConfigurationError, match="unknown setting"):
        Settings.from_env({}, overrides={"bcrypt_round": 4})


def test_production_never_generates_missing_keys(tmp_path):
    from medchat import create_app

    environ_keys = tmp_path / "empty-keys"
    environ_keys.mkdir()
    with pytest.raises(ConfigurationError, match="missing key file"):
        create_app(
            {
                "env": "production",
                "database_url": "postgresql+psycopg://medchat@db/medchat",
                "key_dir": environ_keys,
                "staff_networks": "10.0.0.0/8",
            }
        )
    assert list(environ_keys.iterdir()) == []


def test_retention_settings_have_documented_defaults():
    settings = Settings.from_env({})
    assert (settings.retention_days, settings.archive_retention_days) == (730, 3650)
    assert settings.retention_seal_expired is False  # the promise: destroyed after 2 years
    assert settings.retention_batch == 500
    assert settings.audit_address_days == 180
    assert Settings.from_env({"MEDCHAT_AUDIT_ADDRESS_DAYS": "30"}).audit_address_days == 30


def test_retention_settings_are_read_from_the_environment():
    settings = Settings.from_env(
        {
            "MEDCHAT_RETENTION_SEAL_EXPIRED": "yes",
            "MEDCHAT_ARCHIVE_RETENTION_DAYS": "4000",
            "MEDCHAT_RETENTION_BATCH": "50",
        }
    )
    assert settings.retention_seal_expired is True
    assert settings.archive_retention_days == 4000
    assert settings.retention_batch == 50


@pytest.mark.parametrize(
    ("environ", "named"),
    [
        ({"MEDCHAT_RETENTION_SEAL_EXPIRED": "sometimes"}, "MEDCHAT_RETENTION_SEAL_EXPIRED"),
        ({"MEDCHAT_RETENTION_DAYS": "0"}, "MEDCHAT_RETENTION_DAYS"),
        ({"MEDCHAT_RETENTION_DAYS": "-30"}, "MEDCHAT_RETENTION_DAYS"),
        ({"MEDCHAT_RETENTION_DAYS": "two years"}, "MEDCHAT_RETENTION_DAYS"),
        ({"MEDCHAT_ARCHIVE_RETENTION_DAYS": "0"}, "MEDCHAT_ARCHIVE_RETENTION_DAYS"),
        ({"MEDCHAT_AUDIT_ADDRESS_DAYS": "0"}, "MEDCHAT_AUDIT_ADDRESS_DAYS"),
        ({"MEDCHAT_ARCHIVE_RETENTION_DAYS": "36501"}, "MEDCHAT_ARCHIVE_RETENTION_DAYS"),
        ({"MEDCHAT_RETENTION_BATCH": "0"}, "MEDCHAT_RETENTION_BATCH"),
        ({"MEDCHAT_RETENTION_BATCH": "20001"}, "MEDCHAT_RETENTION_BATCH"),
        ({"MEDCHAT_RETENTION_BATCH": "many"}, "MEDCHAT_RETENTION_BATCH"),
    ],
)
def test_malformed_retention_settings_are_refused_naming_the_variable(environ, named):
    with pytest.raises(ConfigurationError, match=named):
        Settings.from_env(environ)


def test_password_work_defaults_to_one_slot_and_is_bounded():
    settings = Settings.from_env({})
    assert (settings.password_work_slots, settings.password_work_wait_ms) == (1, 1000)
    read = Settings.from_env(
        {"MEDCHAT_PASSWORD_WORK_SLOTS": "3", "MEDCHAT_PASSWORD_WORK_WAIT_MS": "250"}
    )
    assert (read.password_work_slots, read.password_work_wait_ms) == (3, 250)
    for environ in (
        {"MEDCHAT_PASSWORD_WORK_SLOTS": "0"},
        {"MEDCHAT_PASSWORD_WORK_SLOTS": "65"},
        {"MEDCHAT_PASSWORD_WORK_WAIT_MS": "-1"},
        {"MEDCHAT_PASSWORD_WORK_WAIT_MS": "30001"},
    ):
        with pytest.raises(ConfigurationError, match=next(iter(environ))):
            Settings.from_env(environ)


def test_the_image_pixel_limit_is_read_and_bounded_by_pillows_own():
    from PIL import Image

    from medchat.config import PILLOW_MAX_IMAGE_PIXELS

    # Pillow's limit is left at its default, so its own check stays the looser net.
    assert Image.MAX_IMAGE_PIXELS == PILLOW_MAX_IMAGE_PIXELS
    assert Settings.from_env({}).max_image_pixels == 50_000_000
    assert Settings.from_env({"MEDCHAT_MAX_IMAGE_PIXELS": "1000"}).max_image_pixels == 1000
    for bad in ("0", str(PILLOW_MAX_IMAGE_PIXELS + 1), "many"):
        with pytest.raises(ConfigurationError, match="MEDCHAT_MAX_IMAGE_PIXELS"):
            Settings.from_env({"MEDCHAT_MAX_IMAGE_PIXELS": bad})
