"""The served OpenAPI document is the truth: schemathesis finds no check failing anywhere.

One run per role (a member, a clinician, a compliance officer), each over every operation
with every phase and every check on (``tests.contract.harness``): not only "no 5xx" but the
documented status codes, media types, headers and bodies, valid input accepted, invalid
input refused with a 4xx, authentication not ignored, unsupported methods answered 405. The
three runs together stay within three minutes on two cores (``MAX_EXAMPLES``); the counts
are printed (``-s``) and written to ``test-artifacts/contract.txt``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.contract.harness import run_contract

MAX_EXAMPLES = 15
#: A request slower than this is a failure (``max_response_time``): generous for a loaded
#: machine, tight enough to catch a query whose cost grows with the data.
MAX_RESPONSE_SECONDS = 10.0
ARTIFACT = Path(__file__).resolve().parents[2] / "test-artifacts" / "contract.txt"


@pytest.mark.parametrize("role", ["member", "clinician", "compliance"])
def test_schemathesis_finds_no_contract_violation(world, role):
    result = run_contract(
        world.app,
        role,
        world.auth(role),
        max_examples=MAX_EXAMPLES,
        max_response_seconds=MAX_RESPONSE_SECONDS,
    )
    report = result.report()
    print(report)
    ARTIFACT.parent.mkdir(exist_ok=True)
    with ARTIFACT.open("a") as artifact:
        artifact.write(report + "\n")

    assert result.cases > 1000, report
    assert result.errors == [], report
    assert sum(result.failures.values()) == 0, report
