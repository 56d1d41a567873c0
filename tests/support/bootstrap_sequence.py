"""The production bootstrap sequence, read from its one source: ``deploy/bootstrap.sh``.

The script's head holds the sequence between ``# -- sequence --`` and ``# -- end --``; the
docs quote it in a fenced block (``tests/unit/test_bootstrap_docs.py``) and the bootstrap test
runs it line by line (``tests/e2e/test_bootstrap.py``).
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "deploy" / "bootstrap.sh"
BEGIN, END = "# -- sequence --", "# -- end --"


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
