"""Server keys on disk (``access_control.key_directory``): made owner-only when missing (and
only where that is allowed), read back unchanged, refused by name when short, missing or
unreadable. The unreadable case's one-line message: ``tests/unit/test_key_directory_errors.py``.
"""

from __future__ import annotations

import os
import pickle
import pwd
import stat

import pytest

from access_control.errors import ConfigurationError
from access_control.key_directory import KEY_BYTES, KEY_NAMES, load_server_keys, unreadable


@pytest.fixture(autouse=True)
def usual_umask():
    """The modes below are the code's, not a umask's: a permissive umask shows a missing one."""
    before = os.umask(0o022)
    yield
    os.umask(before)


def test_missing_keys_are_made_owner_only_in_a_directory_made_owner_only(tmp_path):
    """``load_server_keys`` 1, 4, 6, 7, 9 and ``_read_or_create`` 13, 20, 23."""
    directory = tmp_path / "nested" / "keys"
    keys = load_server_keys(directory, create_missing=True)

    assert keys.directory == directory
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    for name in KEY_NAMES:
        path = directory / f"{name}.key"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert len(path.read_bytes()) == KEY_BYTES
        assert getattr(keys, name.replace("-", "_")) == path.read_bytes()


def test_keys_are_read_back_as_they_are(tmp_path):
    """``_read_or_create`` 6: a key of the right length is read, not refused."""
    first = load_server_keys(tmp_path, create_missing=True)
    again = load_server_keys(tmp_path, create_missing=False)
    assert [getattr(again, n.replace("-", "_")) for n in KEY_NAMES] == [
        getattr(first, n.replace("-", "_")) for n in KEY_NAMES
    ]


def test_a_short_key_file_is_refused_by_name(tmp_path):
    """``_read_or_create`` 7."""
    load_server_keys(tmp_path, create_missing=True)
    path = tmp_path / f"{KEY_NAMES[0]}.key"
    path.write_bytes(bytes(KEY_BYTES - 1))
    with pytest.raises(ConfigurationError, match=rf"^{path} does not hold a 32-byte key$"):
        load_server_keys(tmp_path, create_missing=False)


def test_production_never_makes_a_missing_key_and_says_how_to(tmp_path):
    """``_read_or_create`` 9-11 and ``load_server_keys`` 11."""
    with pytest.raises(ConfigurationError, match=r"^MEDCHAT_KEY_DIR .* does not exist$"):
        load_server_keys(tmp_path / "absent", create_missing=False)
    path = tmp_path / f"{KEY_NAMES[0]}.key"
    with pytest.raises(ConfigurationError) as raised:
        load_server_keys(tmp_path, create_missing=False)
    assert str(raised.value) == (
        f"missing key file {path}: production never generates keys; "
        "create them with 'medchat keys server-init' and distribute them to every host"
    )
    assert list(tmp_path.iterdir()) == []


def test_the_unreadable_message_names_owner_mode_user_and_the_reason(tmp_path):
    """``unreadable`` 2-18, whole."""
    path = tmp_path / "vapid.key"
    path.write_bytes(bytes(KEY_BYTES))
    path.chmod(0o640)
    user = pwd.getpwuid(os.geteuid()).pw_name
    owner = pwd.getpwuid(path.stat().st_uid).pw_name
    message = str(unreadable(path, PermissionError(13, "Permission denied")))
    assert message == (
        f"cannot read key file {path} (Permission denied; owner {owner}, mode 0640): "
        f"it must be a file the service's user ({user}) can read, e.g. "
        f"'chown {user} {path} && chmod 0400 {path}'"
    )
    gone = str(unreadable(tmp_path / "gone.key", OSError()))
    assert "(OSError; owner and mode unknown)" in gone


def test_server_keys_never_print_nor_pickle(tmp_path):
    keys = load_server_keys(tmp_path, create_missing=True)
    assert repr(keys) == f"ServerKeys(directory={str(tmp_path)!r})"
    with pytest.raises(TypeError, match=r"^server keys must not be pickled$"):
        pickle.dumps(keys)


def test_owners_and_users_without_a_name_are_given_by_number(tmp_path, monkeypatch):
    """``unreadable`` 4, 5, 14, 15: a uid the system has no name for (a container's)."""
    path = tmp_path / "vapid.key"
    path.write_bytes(bytes(KEY_BYTES))
    path.chmod(0o400)

    def nameless(uid: int) -> pwd.struct_passwd:
        raise KeyError(uid)

    monkeypatch.setattr(pwd, "getpwuid", nameless)
    message = str(unreadable(path, PermissionError(13, "Permission denied")))
    owner, user = path.stat().st_uid, os.geteuid()
    assert f"(Permission denied; owner {owner}, mode 0400)" in message
    assert f"the service's user ({user}) can read, e.g. 'chown {user} {path}" in message
