"""The production bootstrap sequence, read from its one source: ``deploy/bootstrap.sh``.

The script's head holds the sequence between ``# -- sequence --`` and ``# -- end --``; the
docs quote it in a fenced block (``tests/unit/test_bootstrap_docs.py``) and the bootstrap test
runs it line by line (``tests/e2e/test_bootstrap.py``), with the helpers below: the host's
environment file made from the example, and a stand-in for ``systemd-run``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "deploy" / "bootstrap.sh"
BEGIN, END = "# -- sequence --", "# -- end --"
EXAMPLE = ROOT / "deploy" / "systemd" / "medchat.env.example"


def sequence() -> list[str]:
    """The sequence's lines, without the comment prefix of the script's head."""
    lines = SCRIPT.read_text().splitlines()
    start, stop = lines.index(BEGIN), lines.index(END)
    steps = [line.removeprefix("#").strip() for line in lines[start + 1 : stop]]
    return [step for step in steps if step]


def quoted(document: Path) -> list[str]:
    """The lines of the fenced block after the marker ``<!-- bootstrap sequence -->`` in
    ``document`` (indented or not: a block inside a list item counts)."""
    lines = [line.strip() for line in document.read_text().splitlines()]
    marker = lines.index("<!-- bootstrap sequence -->")
    fence = next(i for i in range(marker + 1, len(lines)) if lines[i].startswith("```"))
    close = next(i for i in range(fence + 1, len(lines)) if lines[i].startswith("```"))
    return [line.strip() for line in lines[fence + 1 : close] if line.strip()]


#: The stand-in for ``systemd-run -p EnvironmentFile=...``: ENVFILE... -- COMMAND...
RUN_AS = """import os, sys
files, command = sys.argv[1 : sys.argv.index("--")], sys.argv[sys.argv.index("--") + 1 :]
env = {k: os.environ[k] for k in ("PATH", "HOME", "LANG", "PYTHONPATH") if k in os.environ}
for name in files:
    for line in open(name).read().splitlines():
        if line.strip() and not line.lstrip().startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            env[key.strip()] = value
os.chdir(os.environ["MEDCHAT_HOME"])
os.execvpe(command[0], command, env)
"""


def env_file(path: Path, values: dict[str, str | None]) -> None:
    """The example with this host's values: a None drops the line, new names are added."""
    lines, seen = [], set()
    for line in EXAMPLE.read_text().splitlines():
        name = line.split("=", 1)[0] if re.match(r"^[A-Z_]+=", line) else None
        if name in values:
            seen.add(name)
            if values[name] is not None:
                lines.append(f"{name}={values[name]}")
            continue
        lines.append(line)
    lines += [f"{name}={value}" for name, value in values.items() if name not in seen and value]
    path.write_text("\n".join(lines) + "\n")


def user() -> str:
    import pwd

    return pwd.getpwuid(os.geteuid()).pw_name


def group() -> str:
    import grp

    return grp.getgrgid(os.getegid()).gr_name


def show(step: str, output: str = "") -> None:
    """A line of the sequence and what it printed (``pytest -s``: the closing note quotes it)."""
    print(f"\n$ {step}")
    if output.strip():
        print(output.rstrip())
