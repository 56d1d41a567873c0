"""deploy/README.md and README.md show the bootstrap sequence of ``deploy/bootstrap.sh``,
line for line (issue 13 item 4): the docs quote the script, never a sequence of their own."""

from __future__ import annotations

import subprocess

import pytest

from tests.support.bootstrap_sequence import ROOT, SCRIPT, quoted, sequence


def test_the_script_holds_a_sequence_of_its_stages():
    steps = sequence()
    stages = [step.split()[1] for step in steps if step.startswith("deploy/bootstrap.sh")]
    assert stages == ["database", "migrate", "keys", "admin", "role-keys"]


@pytest.mark.parametrize("document", ["deploy/README.md", "README.md"])
def test_the_docs_quote_the_sequence_line_for_line(document):
    assert quoted(ROOT / document) == sequence()


def test_the_script_parses_and_refuses_an_unknown_stage():
    assert subprocess.run(["bash", "-n", str(SCRIPT)], check=False).returncode == 0
    done = subprocess.run(
        ["bash", str(SCRIPT), "nonsense"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 1
    assert "usage: bootstrap.sh database|keys|migrate|admin|role-keys" in done.stderr
