"""What a gunicorn worker imports when it starts: medchat, nothing else.

``deploy/gunicorn.conf.py`` imports the third-party libraries once in the master
(``PRELOADED_LIBRARIES``, ``on_starting``), so that a worker started after a restart
(``max_requests``, a crash) only imports medchat and builds the app: while it starts, the
connections it should serve wait on the other workers (``requests_per_connection``). Two
promises, each in a fresh interpreter:

- the master's imports start no thread and open no socket (a fork would copy a thread's
  state without the thread, and share a socket between processes);
- building the app afterwards imports no third-party package the master has not: a new
  dependency of the app joins the list, or this fails with its name.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

_PROBE = r"""
import importlib, json, os, runpy, sys, threading

config = runpy.run_path(os.path.join("deploy", "gunicorn.conf.py"))
for name in config["PRELOADED_LIBRARIES"]:
    importlib.import_module(name)
threads = threading.active_count()  # before the app, whose own (the limiter's) may run
sockets = []
for fd in os.listdir("/proc/self/fd"):
    try:
        if os.readlink(f"/proc/self/fd/{fd}").startswith("socket:"):
            sockets.append(fd)
    except OSError:  # the listing's own descriptor, closed by now
        pass
before = {name.partition(".")[0] for name in sys.modules}
from medchat import create_app

app = create_app()
after = {name.partition(".")[0] for name in sys.modules}
print(json.dumps({
    "threads": threads,
    "sockets": sockets,
    "app": type(app).__name__,
    "new_packages": sorted(after - before - set(sys.stdlib_module_names)),
}))
"""


@pytest.mark.skipif(not os.path.exists("/proc/self/fd"), reason="reads /proc (Linux)")
def test_the_master_preloads_every_third_party_package_a_worker_imports(tmp_path: Path):
    environment = {
        **{name: value for name, value in os.environ.items() if not name.startswith("MEDCHAT_")},
        "MEDCHAT_ENV": "development",
        "MEDCHAT_KEY_DIR": str(tmp_path / "keys"),
        "MEDCHAT_DATABASE_URL": f"sqlite:///{tmp_path / 'medchat.sqlite3'}",
        "PYTHONPATH": str(ROOT),
    }
    run = subprocess.run(
        [sys.executable, "-c", _PROBE],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    found = json.loads(run.stdout.strip().splitlines()[-1])
    assert found["app"] == "MedchatFlask"
    assert found["threads"] == 1
    assert found["sockets"] == []
    assert found["new_packages"] == ["access_control", "medchat"]
