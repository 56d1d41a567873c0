"""A key file the service cannot read is named in one line, with its owner, mode and the fix
(issue 13 item 5), never a traceback: at start (``build_service_context``) and from the CLI
(``medchat keys check``, which gunicorn's master runs before it forks a worker)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from access_control.errors import ConfigurationError
from access_control.key_directory import KEY_NAMES, load_server_keys


def _make_unreadable(directory: Path) -> Path:
    """A key path that cannot be read as a file, whoever runs the test (root reads any mode)."""
    path = directory / f"{KEY_NAMES[0]}.key"
    path.unlink()
    path.mkdir()
    return path


def test_an_unreadable_key_file_is_one_line_naming_the_file_owner_mode_and_fix(tmp_path):
    load_server_keys(tmp_path, create_missing=True)
    path = _make_unreadable(tmp_path)

    with pytest.raises(ConfigurationError) as raised:
        load_server_keys(tmp_path, create_missing=False)

    message = str(raised.value)
    assert "\n" not in message
    assert f"cannot read key file {path}" in message
    assert "owner " in message and "mode " in message
    assert "chown " in message and "chmod 0400" in message


def test_the_command_line_says_it_in_one_line(tmp_path):
    load_server_keys(tmp_path, create_missing=True)
    _make_unreadable(tmp_path)
    env = {
        "PATH": "/usr/bin:/bin",
        "MEDCHAT_ENV": "development",
        "MEDCHAT_KEY_DIR": str(tmp_path),
        "MEDCHAT_DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
    }
    done = subprocess.run(
        [sys.executable, "-m", "medchat", "keys", "check"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert done.returncode != 0
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    assert "cannot read key file" in lines[0]


def _check(tmp_path: Path, **extra: str) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": "/usr/bin:/bin",
        "MEDCHAT_ENV": "development",
        "MEDCHAT_KEY_DIR": str(tmp_path),
        "MEDCHAT_DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        **extra,
    }
    return subprocess.run(
        [sys.executable, "-m", "medchat", "keys", "check", "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


def test_keys_check_passes_on_loadable_keys_and_names_a_pin_mismatch_in_one_line(tmp_path):
    """What gunicorn's master runs before it forks (deploy/gunicorn.conf.py, issue 13 item 6)."""
    load_server_keys(tmp_path, create_missing=True)

    done = _check(tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"ok": True, "key_dir": str(tmp_path)}

    mismatch = _check(tmp_path, MEDCHAT_ARCHIVE_SIGNING_PUBLIC_KEY="ab" * 32)
    assert mismatch.returncode == 1
    lines = [line for line in mismatch.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), mismatch.stderr
    assert "archive" in lines[0].lower()
