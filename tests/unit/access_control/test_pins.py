"""Role-key pins on their own: the environment's list, the pin file, and what each refuses.

The pins are what stops a database writer from planting a role public key of their own
(SECURITY-MODEL 9), so each rule is tested here without a database: the services' tests
(tests/unit/services/test_role_keys.py, test_rotation_resume.py) show the same rules in use.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from access_control.errors import ConfigurationError, KeyIntegrityFailure
from access_control.pins import PIN_FILE, RolePins, parse_pins

A = "a" * 64
B = "b" * 64
C = "c" * 64


def test_the_environments_list_is_read_by_role_in_lower_case() -> None:
    pins = parse_pins(f" physician:{A.upper()}, ,archive:{B},physician:{C} ")
    assert pins == {"physician": frozenset({A, C}), "archive": frozenset({B})}


def test_an_empty_list_pins_nothing_for_either_role() -> None:
    assert parse_pins("") == {"physician": frozenset(), "archive": frozenset()}


@pytest.mark.parametrize(
    "entry",
    [
        f"nurse:{A}",
        f"physician:{A[:63]}",
        f"physician:{A}0",
        A,
        f"physician{A}",
        f"physician:{A[:63]}X",
        f"physician::{A[:63]}",
    ],
    ids=["unknown role", "short", "long", "no role", "no colon", "not hex", "two colons"],
)
def test_an_entry_that_is_not_a_role_and_a_full_fingerprint_is_refused_by_name(
    entry: str,
) -> None:
    with pytest.raises(ConfigurationError) as refused:
        parse_pins(f"archive:{B},{entry}")
    assert str(refused.value) == f"MEDCHAT_ROLE_KEY_PINS: cannot read {entry!r}"


def test_pins_from_the_environment_are_fixed_and_the_file_is_not_read(tmp_path: Path) -> None:
    (tmp_path / PIN_FILE).write_text(json.dumps({"physician": [B]}))
    pins = RolePins(tmp_path, f"physician:{A}")
    assert pins.fixed
    assert pins.is_pinned("physician", A.upper())
    assert not pins.is_pinned("physician", B)
    assert not pins.is_pinned("archive", A)


def test_without_the_environment_the_file_is_the_source(tmp_path: Path) -> None:
    pins = RolePins(tmp_path, None)
    assert not pins.fixed
    assert pins.path == tmp_path / PIN_FILE
    assert pins.current() == {"physician": frozenset(), "archive": frozenset()}
    assert not pins.is_pinned("physician", A)
    assert not RolePins(tmp_path, "").fixed


def test_added_pins_are_written_sorted_lower_case_and_readable_by_the_owner_only(
    tmp_path: Path,
) -> None:
    pins = RolePins(tmp_path)
    pins.add("physician", [B.upper(), A])
    pins.add("archive", [C])
    path = tmp_path / PIN_FILE
    # Indented: an operator reads it to compare the pins with the fingerprints they expect.
    assert path.read_text() == json.dumps({"physician": [A, B], "archive": [C]}, indent=2)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert not (tmp_path / "role-pins.tmp").exists()
    assert pins.is_pinned("physician", B)
    assert RolePins(tmp_path).current() == {
        "physician": frozenset({A, B}),
        "archive": frozenset({C}),
    }


def test_a_retired_pin_is_gone_and_the_others_stay(tmp_path: Path) -> None:
    pins = RolePins(tmp_path)
    pins.add("physician", [A, B])
    pins.add("archive", [C])
    pins.retire("physician", [A.upper()])
    assert json.loads((tmp_path / PIN_FILE).read_text()) == {"physician": [B], "archive": [C]}
    assert not pins.is_pinned("physician", A)
    assert pins.is_pinned("physician", B)


def test_a_change_of_the_file_by_another_process_is_seen_at_once(tmp_path: Path) -> None:
    pins = RolePins(tmp_path)
    pins.add("physician", [A])
    assert pins.is_pinned("physician", A)
    RolePins(tmp_path).retire("physician", [A])  # another process's rotation
    assert not pins.is_pinned("physician", A)
    path = tmp_path / PIN_FILE
    path.write_text(json.dumps({"physician": [B.upper()]}))
    assert pins.is_pinned("physician", B)
    assert pins.current()["archive"] == frozenset()


def test_the_file_is_read_again_only_when_its_stamp_changes(tmp_path: Path) -> None:
    """The stamp (inode, modification time, size) decides: bytes rewritten in place with the
    time put back are not read, so each request costs a stat, not a parse."""
    pins = RolePins(tmp_path)
    pins.add("physician", [A])
    assert pins.is_pinned("physician", A)
    path = tmp_path / PIN_FILE
    before = path.stat()
    with path.open("r+", encoding="utf-8") as handle:
        handle.write(path.read_text().replace(A, B))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert pins.is_pinned("physician", A)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns + 1))
    assert pins.is_pinned("physician", B)
    assert not pins.is_pinned("physician", A)


def test_an_unpinned_key_is_refused_by_role(tmp_path: Path) -> None:
    pins = RolePins(tmp_path)
    pins.add("archive", [A])
    assert not pins.is_pinned("nurse", A)  # a role without pins pins nothing
    pins.require_pinned("archive", A)
    with pytest.raises(KeyIntegrityFailure) as refused:
        pins.require_pinned("physician", A)
    assert str(refused.value) == "The physician role key is not pinned by this deployment."


def test_fixed_pins_cannot_be_added_to_and_are_not_retired(tmp_path: Path) -> None:
    pins = RolePins(tmp_path, f"physician:{A}")
    with pytest.raises(ConfigurationError) as refused:
        pins.add("physician", [B])
    assert str(refused.value) == (
        "role keys are pinned in MEDCHAT_ROLE_KEY_PINS: add the new fingerprint there"
    )
    pins.retire("physician", [A])
    assert pins.is_pinned("physician", A)
    assert not (tmp_path / PIN_FILE).exists()
