"""What the deployment files promise, read from the files themselves (issue 18 item 8).

Every systemd unit that runs medchat (the server and the jobs that open keys or sign with
server keys) forbids core dumps, and the container's documented run line does too: a core
file would put the opened private keys of a worker on disk. That a worker started by the
real gunicorn configuration is not dumpable is checked by serving it
(``tests/e2e/test_gunicorn_config.py``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
UNITS = sorted((DEPLOY / "systemd").glob("*.service"))


def _service_section(unit: Path) -> dict[str, list[str]]:
    # systemd allows a key more than once (SystemCallFilter=): keep each value.
    values: dict[str, list[str]] = {}
    section = None
    for raw in unit.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        if section == "Service" and "=" in line:
            key, value = line.split("=", 1)
            values.setdefault(key.strip(), []).append(value.strip())
    return values


def test_every_unit_is_found():
    assert {unit.name for unit in UNITS} >= {
        "medchat.service",
        "medchat-retention.service",
        "medchat-audit-anchor.service",
        "medchat-notify.service",
        "medchat-backup.service",
    }


@pytest.mark.parametrize("unit", UNITS, ids=[unit.name for unit in UNITS])
def test_every_medchat_unit_forbids_core_dumps(unit):
    service = _service_section(unit)
    assert any("medchat" in command for command in service["ExecStart"])
    assert service.get("LimitCORE") == ["0"]


def test_the_container_run_line_forbids_core_dumps():
    assert "--ulimit core=0" in (DEPLOY / "Dockerfile").read_text()
