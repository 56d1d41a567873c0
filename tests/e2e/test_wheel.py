"""The wheel, installed where no checkout is: it migrates a fresh database and serves the console.

``deploy/Dockerfile`` runs ``pip install .`` and keeps only ``wsgi.py`` and the gunicorn
config beside the virtualenv, so whatever the package reads at run time (the console's
templates and stylesheet, Alembic's scripts) must be inside the wheel. A checkout hides a
missing file: ``import medchat`` finds the source tree, where everything is. So this test builds
the wheel from the checkout's sources, installs it into a fresh virtualenv in a temporary
directory, and from a working directory outside the checkout runs ``medchat db upgrade``
against a fresh SQLite database and serves ``/readyz``, ``/console/login`` and its stylesheet
with gunicorn, the way the container does.

Offline, on purpose:

- The wheel is built with ``--no-build-isolation`` when this interpreter has a setuptools that
  builds wheels (the ``dev`` extra installs one, so ``make test`` and CI never need an index);
  otherwise pip builds it in isolation, fetching setuptools from the configured index, and
  where that index cannot be reached the test skips naming the reason, unless
  ``MEDCHAT_REQUIRE_WHEEL_BUILD`` is set (``.ci/run``), where it fails.
- The fresh venv gets pip from ``ensurepip`` (bundled) and the wheel is installed with
  ``--no-index --no-deps`` before anything else is visible to it, so pip sees only the wheel.
- The dependencies then come from where this interpreter finds them (its ``sys.path`` less
  the checkout), named in a ``.pth`` file of the fresh venv. A plain path line in a ``.pth``
  file is appended to ``sys.path`` after the venv's own site-packages and the ``.pth`` files
  of that directory are not run, so the editable install of the checkout (a ``.pth`` hook
  there) stays inert and ``medchat`` resolves to the wheel's copy: the test asserts so.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import venv
import zipfile
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("medchat", "access_control")
REQUIRE = "MEDCHAT_REQUIRE_WHEEL_BUILD"
NO_INDEX = re.compile(
    r"(No matching distribution found|Could not find a version that satisfies) .*setuptools"
)


def _offline_build_possible() -> bool:
    """This interpreter's setuptools meets ``[build-system]`` and can write wheels itself."""
    try:
        version = metadata.version("setuptools")
    except metadata.PackageNotFoundError:
        return False
    major, minor = (int(part) for part in re.findall(r"\d+", version)[:2])
    if (major, minor) < (69, 0):
        return False
    # setuptools 70.1 carries bdist_wheel; older ones need the ``wheel`` package.
    return (major, minor) >= (70, 1) or _importable("wheel.bdist_wheel")


def _importable(name: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


def _sources(destination: Path) -> Path:
    """What the build reads, copied: no stale ``build/`` or ``*.egg-info`` of the checkout
    can leak into the wheel, and the checkout gets none."""
    junk = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for name in PACKAGES:
        shutil.copytree(ROOT / name, destination / name, ignore=junk)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, destination / name)
    return destination


def _build_wheel(source: Path, output: Path) -> Path:
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", str(output)]
    if _offline_build_possible():
        command += ["--no-build-isolation", "--no-index"]
    result = subprocess.run(
        [*command, str(source)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**_clean_environment(), "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
    )
    if result.returncode != 0:
        log = result.stdout + result.stderr
        if NO_INDEX.search(log) and not os.environ.get(REQUIRE):
            pytest.skip(
                "building the wheel needs setuptools>=70.1 here (pip install -e '.[dev]') "
                "or a package index to fetch it from, and neither is available"
            )
        pytest.fail(f"pip wheel failed:\n{log}")
    (wheel,) = output.glob("medchat-*.whl")
    return wheel


def _clean_environment() -> dict[str, str]:
    """This process's environment without what would point Python back at the checkout."""
    return {
        name: value
        for name, value in os.environ.items()
        if name not in {"PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP"}
        and not name.startswith("MEDCHAT_")
    }


def _package_files(source: Path) -> set[str]:
    return {
        path.relative_to(source).as_posix()
        for name in PACKAGES
        for path in (source / name).rglob("*")
        if path.is_file()
    }


def _fresh_venv(location: Path, wheel: Path) -> Path:
    venv.EnvBuilder(with_pip=True, system_site_packages=False, clear=True).create(location)
    python = location / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "--no-index", "--no-deps", "--quiet", str(wheel)],
        check=True,
        timeout=120,
        env={**_clean_environment(), "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
    )
    # Only now the dependencies: pip above saw nothing but the fresh venv.
    site_packages = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True,
            capture_output=True,
            text=True,
            env=_clean_environment(),
        ).stdout.strip()
    )
    (site_packages / "medchat-test-dependencies.pth").write_text("\n".join(_dependency_paths()))
    return python


def _dependency_paths() -> list[str]:
    """Where this process finds its libraries: its ``sys.path`` less any directory that
    holds the checkout's packages (the checkout itself, which ``PYTHONPATH`` or pytest put
    there) and anything that is not a directory. A virtualenv inside the checkout (``make
    test`` makes ``.venv`` there) stays: its site-packages holds dependencies, and the
    editable install's hook in it is a ``.pth`` file, which is not run from a path line."""
    paths = (Path(entry).resolve() for entry in sys.path if entry)
    return [
        str(path)
        for path in paths
        if path.is_dir() and path != ROOT and not (path / "medchat" / "__init__.py").exists()
    ]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _get(port: int, path: str, log: Path) -> tuple[int, str, bytes]:
    """One GET; a dropped connection (a worker that failed even to render its error page)
    fails the test with the server's log."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.getheader("Content-Type", ""), response.read()
    except (OSError, http.client.HTTPException) as exc:
        pytest.fail(f"GET {path}: {exc!r}\n{log.read_text()}")
    finally:
        connection.close()


def _wait_until_up(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"gunicorn exited with {process.returncode}:\n{log.read_text()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    pytest.fail(f"gunicorn did not start listening in 30 s:\n{log.read_text()}")


@pytest.fixture
def installed(tmp_path: Path) -> Iterator[tuple[Path, Path, Path]]:
    """(the fresh venv's python, its directory, a working directory outside the checkout)."""
    if tmp_path.resolve().is_relative_to(ROOT):
        pytest.fail("the temporary directory must lie outside the checkout")
    source = _sources(tmp_path / "source")
    wheel = _build_wheel(source, tmp_path / "dist")
    with zipfile.ZipFile(wheel) as archive:
        missing = _package_files(source) - set(archive.namelist())
    assert not missing, f"package files left out of the wheel (pyproject package-data): {missing}"
    location = tmp_path / "venv"
    python = _fresh_venv(location, wheel)
    workdir = tmp_path / "run"
    workdir.mkdir()
    yield python, location, workdir


def test_the_installed_wheel_migrates_a_fresh_database_and_serves_the_console(installed):
    python, location, workdir = installed
    database = workdir / "medchat.sqlite3"
    environment = {
        **_clean_environment(),
        "PYTHONNOUSERSITE": "1",
        "MEDCHAT_DATABASE_URL": f"sqlite:///{database}",
        "MEDCHAT_KEY_DIR": str(workdir / "keys"),
        "MEDCHAT_MAIL_URL": f"file://{workdir / 'mail'}",
    }

    where = subprocess.run(
        [
            str(python),
            "-c",
            "import medchat, access_control as ac; print(medchat.__file__, ac.__file__)",
        ],
        cwd=workdir,
        env=environment,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    for module_file in where:
        assert Path(module_file).resolve().is_relative_to(location.resolve()), where

    version = subprocess.run(
        [str(location / "bin" / "medchat"), "--version"],
        cwd=workdir,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert version.stdout == f"medchat {metadata.version('medchat')}\n", version.stderr

    upgrade = subprocess.run(
        [str(location / "bin" / "medchat"), "db", "upgrade", "--json"],
        cwd=workdir,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert upgrade.returncode == 0, upgrade.stdout + upgrade.stderr
    with sqlite3.connect(database) as connection:
        (revision,) = connection.execute("SELECT version_num FROM alembic_version").fetchone()
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master")}
    assert {"accounts", "conversations", "audit_entries"} <= tables
    assert json.loads(upgrade.stdout)["to"] == revision

    # The container's layout: wsgi.py and the gunicorn config beside the installed package.
    shutil.copy2(ROOT / "wsgi.py", workdir / "wsgi.py")
    (workdir / "deploy").mkdir()
    shutil.copy2(ROOT / "deploy" / "gunicorn.conf.py", workdir / "deploy" / "gunicorn.conf.py")
    port = _free_port()
    log = workdir / "gunicorn.log"
    with log.open("wb") as output:
        server = subprocess.Popen(
            [str(python), "-m", "gunicorn", "-c", "deploy/gunicorn.conf.py", "wsgi:app"],
            cwd=workdir,
            env={**environment, "MEDCHAT_BIND": f"127.0.0.1:{port}", "MEDCHAT_WORKERS": "1"},
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            _wait_until_up(port, server, log)
            status, _, body = _get(port, "/readyz", log)
            assert (status, json.loads(body)["status"]) == (200, "ready"), log.read_text()

            status, kind, page = _get(port, "/console/login", log)
            assert status == 200, log.read_text()
            assert kind.startswith("text/html")
            html = page.decode()
            assert "<form" in html
            stylesheets = re.findall(r'<link[^>]+href="([^"]+\.css)"', html)
            assert stylesheets, html
            for href in stylesheets:
                status, kind, _ = _get(port, href, log)
                assert (status, kind.split(";")[0]) == (200, "text/css"), href
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=40)
    assert "TemplateNotFound" not in log.read_text()
