"""``medchat archive``: ``verify`` names the first bad record (exit 1), ``verify-bundle`` checks
an export offline against the published key only, ``public-key`` prints the key to pin."""

from __future__ import annotations

import json

import pytest

from medchat.archive.bundle import bundle_bytes
from medchat.services.retrieval import RetrievalService
from tests.support.accounts import make_member
from tests.support.archive import archive_colleague, flip_byte, seal
from tests.support.cli import cli_runner
from tests.support.conversations import start_conversation
from tests.support.messaging import care_team
from tests.support.sessions import sign_in

JUSTIFICATION = "Regulator inquiry 2026/44 about this exchange."


@pytest.fixture
def cli(app):
    runner = cli_runner(app)

    def invoke(*args: str, **kwargs):
        return runner.invoke(args=list(args), **kwargs)

    return invoke


@pytest.fixture
def sealed(runtime):
    """A care team, a member and one sealed conversation (ledger record 1)."""
    team = care_team(runtime)
    member = sign_in(runtime, make_member(runtime)).principal
    started = start_conversation(runtime, member, subject="Knee", bodies=["It hurts", "Still"])
    record = seal(runtime, member, started.id)
    return team, started, record


@pytest.fixture
def bundle_file(runtime, sealed, tmp_path):
    team, _, record = sealed
    a = sign_in(runtime, team.compliance).principal
    b = sign_in(runtime, archive_colleague(runtime, team.compliance)).principal
    with runtime.database.transaction() as session:
        retrieval = RetrievalService(session, runtime).request(a, record.id, JUSTIFICATION)
    with runtime.database.transaction() as session:
        RetrievalService(session, runtime).approve(b, retrieval.id)
    with runtime.database.transaction() as session:
        bundle = RetrievalService(session, runtime).export(a, retrieval.id)
    path = tmp_path / "bundle.json"
    path.write_bytes(bundle_bytes(bundle))  # as the export endpoint serves it
    return path


def test_verify_prints_the_head_and_exits_0(cli, runtime, sealed):
    result = cli("archive", "verify", "--json")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert (payload["ok"], payload["records"], payload["first_bad"]) == (True, 1, None)
    assert payload["head_seq"] == 1 and payload["head_hash"] == sealed[2].record_hash.hex()
    text = cli("archive", "verify")
    assert f"head 1 {sealed[2].record_hash.hex()}" in text.stdout


def test_verify_names_the_first_bad_record_and_exits_1(cli, runtime, sealed):
    _, started, record = sealed
    flip_byte(runtime, "messages", "body_ciphertext", started.message_ids[1])

    result = cli("archive", "verify", "--json")
    assert result.exit_code == 1
    payload = json.loads(result.stdout)
    assert (payload["ok"], payload["first_bad"], payload["first_bad_seq"]) == (
        False,
        str(record.id),
        1,
    )
    assert str(record.id) in result.stderr


def test_verify_bundle_accepts_an_export_with_the_published_key(cli, runtime, bundle_file):
    key = runtime.archive_signer.public_key.hex()
    result = cli("archive", "verify-bundle", str(bundle_file), "--public-key", key, "--json")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["ok"] and payload["messages"] == 2
    assert payload["fingerprint"] == runtime.archive_signer.fingerprint


def test_verify_bundle_reads_the_key_from_the_environment(cli, runtime, bundle_file):
    env = {"MEDCHAT_ARCHIVE_SIGNING_PUBLIC_KEY": runtime.archive_signer.public_key.hex()}
    result = cli("archive", "verify-bundle", str(bundle_file), env=env)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("bundle ok")


def test_verify_bundle_refuses_one_edited_byte(cli, runtime, bundle_file):
    text = bundle_file.read_text(encoding="utf-8")
    bundle_file.write_text(text.replace("It hurts", "It hurtz"), encoding="utf-8")
    key = runtime.archive_signer.public_key.hex()

    result = cli("archive", "verify-bundle", str(bundle_file), "--public-key", key)
    assert result.exit_code == 1
    assert "signature" in result.stderr


def verify_bundle_file(cli, runtime, bundle_file):
    key = runtime.archive_signer.public_key.hex()
    return cli("archive", "verify-bundle", str(bundle_file), "--public-key", key, "--json")


def test_a_duplicate_member_carrying_forged_text_is_refused(cli, runtime, bundle_file):
    """Issue 18 item 4: ``json`` keeps the last of two members, so a forged body placed before
    the real one (what a reader, or a parser keeping the first, sees) verified."""
    exported = bundle_file.read_bytes()
    real = b'"body":"It hurts"'
    assert exported.count(real) == 1
    bundle_file.write_bytes(exported.replace(real, b'"body":"It does not hurt at all",' + real))

    result = verify_bundle_file(cli, runtime, bundle_file)

    assert result.exit_code == 1
    assert json.loads(result.stdout)["ok"] is False
    assert "repeats the member 'body'" in result.stderr


@pytest.mark.parametrize(
    "spelling",
    [
        lambda bundle: json.dumps(
            dict(reversed(bundle.items())), ensure_ascii=False, separators=(",", ":")
        ).encode(),
        lambda bundle: json.dumps(bundle, sort_keys=True, ensure_ascii=False).encode(),
        lambda bundle: json.dumps(bundle, sort_keys=True, indent=2).encode(),
        lambda bundle: bundle_bytes(bundle).replace(b'"seq":1,', b'"seq":1E0,'),
        lambda bundle: bundle_bytes(bundle) + b"\n",
    ],
    ids=["reordered-members", "spaces", "indented-and-escaped", "number-form", "blank-line"],
)
def test_another_spelling_of_the_same_bundle_is_refused(cli, runtime, bundle_file, spelling):
    exported = bundle_file.read_bytes()
    bundle = json.loads(exported)
    respelled = spelling(bundle)
    assert respelled not in (exported, exported[:-1])
    assert json.loads(respelled) == bundle  # the same document, spelt otherwise
    bundle_file.write_bytes(respelled)

    result = verify_bundle_file(cli, runtime, bundle_file)

    assert result.exit_code == 1
    assert "canonical encoding" in result.stderr


def test_the_exported_bytes_verify_with_or_without_the_final_newline(cli, runtime, bundle_file):
    exported = bundle_file.read_bytes()
    assert exported.endswith(b"}\n")
    assert verify_bundle_file(cli, runtime, bundle_file).exit_code == 0
    bundle_file.write_bytes(exported[:-1])
    assert verify_bundle_file(cli, runtime, bundle_file).exit_code == 0


def test_verify_bundle_refuses_a_file_that_is_not_json(cli, runtime, bundle_file):
    bundle_file.write_bytes(b"\xff not json")
    result = verify_bundle_file(cli, runtime, bundle_file)
    assert result.exit_code == 1
    assert "not a UTF-8 JSON document" in result.stderr


def test_verify_bundle_needs_the_published_key(cli, bundle_file, monkeypatch):
    monkeypatch.delenv("MEDCHAT_ARCHIVE_SIGNING_PUBLIC_KEY", raising=False)
    result = cli("archive", "verify-bundle", str(bundle_file))
    assert result.exit_code == 1
    assert "--public-key" in result.stderr
    other = "ab" * 32
    result = cli("archive", "verify-bundle", str(bundle_file), "--public-key", other)
    assert result.exit_code == 1
    assert "names signing key" in result.stderr


def test_public_key_prints_the_key_to_pin(cli, runtime, key_dir):
    result = cli("archive", "public-key", "--json", env={"MEDCHAT_KEY_DIR": str(key_dir)})
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload == {
        "public_key": runtime.archive_signer.public_key.hex(),
        "fingerprint": runtime.archive_signer.fingerprint,
    }
