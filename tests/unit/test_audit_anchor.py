"""Audit anchors (SECURITY-MODEL "Audit"): the signed chain head, kept outside the database,
catches what the chain alone cannot.

The attack of issue 11 (finding 8), through SQL as the owner role could do it (it has DELETE on
``audit_entries``): save the ``chain_heads`` row at some point (its MAC is genuine), let the
chain grow, delete the tail and put the saved row back. ``audit verify`` passes on that chain,
and these tests show it; ``audit verify --anchor`` does not. Anchors themselves are refused
when forged (another key) or edited (a different sequence), and a good one passes.
"""

from __future__ import annotations

import json
import secrets

import pytest
from sqlalchemy import select

from access_control import crypto, signatures
from medchat import audit
from medchat.audit.anchor import AnchorSigner, read_anchors
from medchat.models import AuditEntry, ChainHead
from tests.support.cli import cli_runner
from tests.support.tampering import execute_sql

ANCHOR_FIELDS = {"format", "heads", "anchored_at", "public_key", "signature"}
VERIFY_FIELDS = {"ok", "entries", "first_bad", "reason", "head_seq", "head_hash", "anchor"}


@pytest.fixture
def app(make_app):
    """One chain, so an anchor holds one head (tests/unit/services/test_audit_chains.py
    anchors several)."""
    return make_app(audit_chains=1)


@pytest.fixture
def cli(app):
    runner = cli_runner(app)

    def invoke(*args: str, **kwargs):
        return runner.invoke(args=list(args), **kwargs)

    return invoke


def one_json_object(output: str) -> dict:
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1, output
    payload = json.loads(lines[0])
    assert isinstance(payload, dict)
    return payload


def write_entries(runtime, count: int) -> None:
    for _ in range(count):
        with runtime.database.transaction() as session:
            audit.record(session, "test.action", target_type="thing", target_id="t")


def saved_head(runtime) -> dict:
    """The head row as the owner role can copy it (a backup, a ``SELECT``)."""
    with runtime.database.transaction() as session:
        head = session.get(ChainHead, audit.AUDIT_CHAIN)
        return {"seq": head.seq, "entry_hash": head.entry_hash, "mac": head.mac}


def truncate_and_restore(runtime, head: dict) -> None:
    """Delete every entry after the saved head and put the saved head row back."""
    execute_sql(runtime, "DELETE FROM audit_entries WHERE seq > :seq", seq=head["seq"])
    execute_sql(
        runtime,
        "UPDATE chain_heads SET seq = :seq, entry_hash = :entry_hash, mac = :mac "
        "WHERE chain = 'audit'",
        **head,
    )


def anchor_to(cli, path) -> dict:
    result = cli("audit", "anchor", "--output", str(path), "--json")
    assert result.exit_code == 0, result.output
    document = one_json_object(result.stdout)
    # These tests run on one chain (the fixture): "seq" is that chain's anchored position.
    (head,) = document["heads"]
    return {**document, "seq": head["seq"], "entry_hash": head["entry_hash"]}


def with_head(document: dict, seq: int, hash_hex: str) -> dict:
    """The anchor document with its one head changed (an attacker's edit)."""
    fields = {k: v for k, v in document.items() if k not in ("seq", "entry_hash")}
    return {**fields, "heads": [{"chain": "audit", "seq": seq, "entry_hash": hash_hex}]}


def entry_hash(runtime, seq: int) -> bytes:
    with runtime.database.transaction() as session:
        return session.scalar(select(AuditEntry.entry_hash).where(AuditEntry.seq == seq))


def test_anchor_prints_one_signed_json_document(cli, runtime):
    write_entries(runtime, 3)
    runtime.clock.advance(minutes=7)

    result = cli("audit", "anchor", "--json")

    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    document = one_json_object(result.stdout)
    assert set(document) == ANCHOR_FIELDS
    assert document["format"] == "medchat/audit-anchor/v2"
    assert document["heads"] == [
        {"chain": "audit", "seq": 3, "entry_hash": entry_hash(runtime, 3).hex()}
    ]
    assert document["anchored_at"] == runtime.clock.now().isoformat().replace("+00:00", "Z")
    public_key = signatures.load_signing_key(runtime.keys.audit_anchor).public_key_bytes
    assert document["public_key"] == public_key.hex()
    # The signed message, built here from the documented parts (domain label first).
    message = crypto.associated_data(
        "medchat/audit-anchor/v2", document["anchored_at"], 1, "audit", 3, entry_hash(runtime, 3)
    )
    signatures.verify_signature(public_key, bytes.fromhex(document["signature"]), message)
    assert runtime.keys.audit_anchor.hex() not in result.stdout


def test_anchor_text_output_carries_the_line_too(cli, runtime):
    write_entries(runtime, 1)
    result = cli("audit", "anchor")
    assert result.exit_code == 0, result.output
    summary, line = result.stdout.strip().splitlines()
    assert summary.startswith("audit chains anchored at 1 entries over 1 head(s) ")
    assert set(json.loads(line)) == ANCHOR_FIELDS


def test_truncation_with_an_older_genuine_head_passes_plain_verify_but_not_the_anchor(
    cli, runtime, tmp_path
):
    anchors = tmp_path / "anchors.jsonl"
    write_entries(runtime, 3)
    older = saved_head(runtime)
    write_entries(runtime, 3)
    assert anchor_to(cli, anchors)["seq"] == 6

    truncate_and_restore(runtime, older)

    plain = cli("audit", "verify", "--json")
    assert plain.exit_code == 0, plain.output  # the gap the anchor closes
    assert one_json_object(plain.stdout)["ok"] is True
    assert one_json_object(plain.stdout)["head_seq"] == 3

    anchored = cli("audit", "verify", "--anchor", str(anchors), "--json")
    assert anchored.exit_code == 1
    payload = one_json_object(anchored.stdout)
    assert set(payload) == VERIFY_FIELDS
    assert payload["ok"] is False
    assert payload["first_bad"] == 4
    assert "ends at entry 3" in payload["reason"] and "records entry 6" in payload["reason"]
    assert payload["anchor"] is None
    reason = anchored.stderr.strip()
    assert reason.startswith("error:") and "\n" not in reason and "removed" in reason


def test_a_chain_that_grew_again_after_the_truncation_diverges_from_the_anchor(
    cli, runtime, tmp_path
):
    anchors = tmp_path / "anchors.jsonl"
    write_entries(runtime, 3)
    older = saved_head(runtime)
    write_entries(runtime, 2)
    anchor_to(cli, anchors)
    truncate_and_restore(runtime, older)
    write_entries(runtime, 4)  # the service appends on top of the restored head: 4..7

    assert cli("audit", "verify").exit_code == 0

    result = cli("audit", "verify", "--anchor", str(anchors), "--json")
    assert result.exit_code == 1
    payload = one_json_object(result.stdout)
    with runtime.database.transaction() as session:  # the entry now at the anchored position
        now_at_5 = session.scalar(select(AuditEntry.seq).where(AuditEntry.position == 5))
    assert payload["first_bad"] == now_at_5
    assert "entry 5 does not have the hash anchored" in payload["reason"]


def test_a_good_anchor_passes_and_is_reported(cli, runtime, tmp_path):
    anchors = tmp_path / "anchors.jsonl"
    write_entries(runtime, 2)
    first = anchor_to(cli, anchors)
    runtime.clock.advance(hours=1)
    write_entries(runtime, 3)
    second = anchor_to(cli, anchors)
    write_entries(runtime, 1)  # entries after the latest anchor are fine

    result = cli("audit", "verify", "--anchor", str(anchors), "--json")

    assert result.exit_code == 0, result.output
    payload = one_json_object(result.stdout)
    assert set(payload) == VERIFY_FIELDS
    assert payload["ok"] is True and payload["head_seq"] == 6
    assert payload["anchor"] == {
        "seq": 5,
        "heads": {"audit": 5},
        "anchored_at": second["anchored_at"],
    }
    assert first["seq"] == 2
    assert len(read_anchors(anchors.read_text())) == 2
    text = cli("audit", "verify", "--anchor", str(anchors))
    assert text.exit_code == 0
    assert f"anchor of {second['anchored_at']} (5 entries) checked" in text.stdout


def test_plain_verify_reports_no_anchor(cli, runtime):
    write_entries(runtime, 1)
    result = cli("audit", "verify", "--json")
    assert result.exit_code == 0, result.output
    payload = one_json_object(result.stdout)
    assert set(payload) == VERIFY_FIELDS and payload["anchor"] is None


def _forged_by_another_key(runtime, document: dict) -> dict:
    """The attacker signs the head of their choice with a key of their own."""
    other = AnchorSigner(secrets.token_bytes(32))
    with runtime.database.transaction() as session:
        forged = other.sign_heads(session, runtime.keys.audit_mac, runtime.clock.now())
    return with_head(forged.as_document(), 3, entry_hash(runtime, 3).hex())


def _forged_with_own_key_named(runtime, document: dict) -> dict:
    other = AnchorSigner(secrets.token_bytes(32))
    with runtime.database.transaction() as session:
        return other.sign_heads(session, runtime.keys.audit_mac, runtime.clock.now()).as_document()


def _edited_sequence(runtime, document: dict) -> dict:
    return with_head(document, 3, entry_hash(runtime, 3).hex())


def _edited_time(runtime, document: dict) -> dict:
    return {
        **with_head(document, document["seq"], document["entry_hash"]),
        "anchored_at": "2020-01-01T00:00:00Z",
    }


@pytest.mark.parametrize(
    "forge", [_forged_by_another_key, _forged_with_own_key_named, _edited_sequence, _edited_time]
)
def test_a_forged_or_edited_anchor_is_refused(cli, runtime, tmp_path, forge):
    """With the head really at 6, a forged "anchor at 3" would bless a truncation to 3."""
    write_entries(runtime, 6)
    genuine = anchor_to(cli, tmp_path / "genuine.jsonl")
    forged = tmp_path / "forged.jsonl"
    forged.write_text(json.dumps(forge(runtime, genuine)) + "\n", encoding="utf-8")

    result = cli("audit", "verify", "--anchor", str(forged), "--json")

    assert result.exit_code == 1
    payload = one_json_object(result.stdout)
    assert payload["ok"] is False
    assert "signature does not verify" in payload["reason"]
    assert "signature does not verify" in result.stderr


def test_one_forged_line_among_good_ones_rejects_the_file(cli, runtime, tmp_path):
    anchors = tmp_path / "anchors.jsonl"
    write_entries(runtime, 4)
    document = anchor_to(cli, anchors)
    with anchors.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(with_head(document, 9, document["entry_hash"])) + "\n")
    result = cli("audit", "verify", "--anchor", str(anchors))
    assert result.exit_code == 1
    assert "anchor 2" in result.stderr


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("not json\n", "line 1: not JSON"),
        ('{"seq": 1}\n', "line 1: not an audit anchor document"),
        ("", "holds no anchor"),
    ],
)
def test_a_malformed_anchor_file_is_refused_with_a_reason(
    cli, runtime, tmp_path, content, expected
):
    write_entries(runtime, 1)
    anchors = tmp_path / "anchors.jsonl"
    anchors.write_text(content, encoding="utf-8")
    result = cli("audit", "verify", "--anchor", str(anchors), "--json")
    assert result.exit_code == 1
    assert expected in one_json_object(result.stdout)["reason"]
    assert expected in result.stderr


def test_anchor_output_appends_lines_and_refuses_a_chain_shorter_than_its_last_anchor(
    cli, runtime, tmp_path
):
    anchors = tmp_path / "anchors.jsonl"
    write_entries(runtime, 2)
    older = saved_head(runtime)
    write_entries(runtime, 2)
    anchor_to(cli, anchors)
    write_entries(runtime, 1)
    anchor_to(cli, anchors)
    assert [a.seq for a in read_anchors(anchors.read_text())] == [4, 5]
    before = anchors.read_text()

    truncate_and_restore(runtime, older)
    result = cli("audit", "anchor", "--output", str(anchors), "--json")

    assert result.exit_code == 1
    assert result.stdout == ""
    assert "not anchored" in result.stderr and "removed" in result.stderr
    assert anchors.read_text() == before  # the truncated chain is never anchored


def test_anchor_refuses_to_sign_a_head_the_audit_key_did_not_make(cli, runtime):
    write_entries(runtime, 2)
    execute_sql(runtime, "UPDATE chain_heads SET mac = :mac", mac=bytes(32))
    result = cli("audit", "anchor", "--json")
    assert result.exit_code == 1
    assert result.stdout == ""
    assert "MAC" in result.stderr


def test_anchor_of_an_empty_chain_verifies(cli, runtime, tmp_path):
    anchors = tmp_path / "anchors.jsonl"
    assert anchor_to(cli, anchors)["seq"] == 0
    result = cli("audit", "verify", "--anchor", str(anchors), "--json")
    assert result.exit_code == 0, result.output


def test_anchor_public_key_prints_the_verifying_key(cli, runtime, key_dir):
    result = cli("audit", "anchor-public-key", "--json", env={"MEDCHAT_KEY_DIR": str(key_dir)})
    assert result.exit_code == 0, result.output
    payload = one_json_object(result.stdout)
    public_key = signatures.load_signing_key(runtime.keys.audit_anchor).public_key_bytes
    assert payload == {
        "public_key": public_key.hex(),
        "fingerprint": signatures.signing_key_fingerprint(public_key),
    }


def test_an_anchor_written_before_chains_still_verifies_and_still_catches_a_truncation(
    cli, runtime, tmp_path
):
    """Anchor files kept from format 1 (one chain, signed over chain, seq and hash) stay
    evidence: read as anchors of the chain ``audit``."""
    write_entries(runtime, 4)
    anchored_at = runtime.clock.now().isoformat().replace("+00:00", "Z")
    signer = signatures.load_signing_key(runtime.keys.audit_anchor)
    message = crypto.associated_data(
        "medchat/audit-anchor/v1", "audit", 4, entry_hash(runtime, 4), anchored_at
    )
    document = {
        "format": "medchat/audit-anchor/v1",
        "chain": "audit",
        "seq": 4,
        "entry_hash": entry_hash(runtime, 4).hex(),
        "anchored_at": anchored_at,
        "public_key": signer.public_key_bytes.hex(),
        "signature": signatures.sign(signer, message).hex(),
    }
    anchors = tmp_path / "v1.jsonl"
    anchors.write_text(json.dumps(document) + "\n", encoding="utf-8")
    assert cli("audit", "verify", "--anchor", str(anchors)).exit_code == 0

    execute_sql(runtime, "DELETE FROM audit_entries WHERE seq = 4")
    execute_sql(
        runtime,
        "UPDATE chain_heads SET seq = 3, entry_hash = :h WHERE chain = 'audit'",
        h=entry_hash(runtime, 3),
    )
    result = cli("audit", "verify", "--anchor", str(anchors), "--json")
    assert result.exit_code == 1
