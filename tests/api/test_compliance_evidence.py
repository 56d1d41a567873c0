"""What leaves the sealed archive and what stays on record of it (API.md "Compliance";
SECURITY-MODEL "Deletion, sealed archive, retention", "Audit"; docs/archive.md "Verifying").

Insurers must be able to show a sealed exchange to a court or a regulator, and anyone must be
able to check the archive's integrity. So an export is a signed bundle that verifies offline with
the published (pinned) key and fails after one edited byte or under any other key; the ledger's
verification names the first record whose stored content no longer matches; and every step of a
retrieval, refusals included, is audited with the member as subject (their access log shows it)
and holds no content. Finding records and the four-eyes steps themselves are proved in
``tests/api/test_compliance.py``.
"""

from __future__ import annotations

import copy
import json
import uuid
from typing import Any

import pytest

from medchat import audit
from medchat.archive.bundle import BundleRejected, bundle_bytes, verify_bundle
from tests.support.archive import flip_byte
from tests.support.audit import audit_entries
from tests.support.compliance import (
    ARCHIVE,
    ATTACHMENT,
    BODY,
    JUSTIFICATION,
    REPLY,
    RETRIEVALS,
    SUBJECT,
    Archive,
    approve,
    ask,
    content,
    sealed_archive,
)
from tests.support.sample_files import as_stored


@pytest.fixture
def archive(client, runtime) -> Archive:
    return sealed_archive(client, runtime)


# -- export --------------------------------------------------------------------------------------


def exported_bytes(client, archive: Archive) -> bytes:
    """The export as served: the bundle's canonical bytes."""
    retrieval_id = ask(client, archive)
    approve(client, retrieval_id, archive.b)
    response = client.get(f"{RETRIEVALS}/{retrieval_id}/export", headers=archive.a)
    assert response.status_code == 200, response.get_json()
    assert response.headers["Content-Disposition"].startswith("attachment")
    return response.get_data()  # type: ignore[no-any-return]


def exported(client, archive: Archive) -> dict[str, Any]:
    return json.loads(exported_bytes(client, archive))  # type: ignore[no-any-return]


def published_key(client) -> bytes:
    return bytes.fromhex(client.get("/api/v1/archive/public-key").get_json()["public_key"])


def test_the_published_key_is_public_and_the_pinned_one(client, runtime):
    response = client.get("/api/v1/archive/public-key")
    assert response.status_code == 200
    body = response.get_json()
    assert body["algorithm"] == "Ed25519"
    assert body["public_key"] == runtime.archive_signer.public_key.hex()
    assert body["fingerprint"] == runtime.archive_signer.fingerprint


def test_an_export_verifies_offline_with_the_published_key(client, archive):
    served = exported_bytes(client, archive)
    assert served == bundle_bytes(json.loads(served))  # canonical, as served
    summary = verify_bundle(served, published_key(client))
    bundle = json.loads(served)
    assert summary.record_id == archive.record_id
    assert summary.conversation_id == archive.conversation_id
    assert summary.messages == 3
    messages = bundle["conversation"]["messages"]
    assert [m["body"] for m in messages] == [BODY, REPLY, ""]
    attachment = messages[2]["attachments"][0]
    import hashlib

    assert attachment["sha256"] == hashlib.sha256(as_stored(ATTACHMENT)).hexdigest()
    assert attachment["filename"] == "document-1.pdf"


@pytest.mark.parametrize(
    "edit",
    [
        lambda b: b["conversation"]["messages"][0].update(body=BODY.replace("blood", "bloom")),
        lambda b: b["conversation"].update(subject=SUBJECT + "!"),
        lambda b: b["record"].update(reason="retention"),
        lambda b: b["record"].update(message_count=2),
        lambda b: b.update(exported_at="2020-01-01T00:00:00Z"),
        lambda b: b.update(
            signature=b["signature"][:-2] + ("00" if b["signature"][-2:] != "00" else "01")
        ),
    ],
    ids=["body", "subject", "record-reason", "record-count", "time", "signature"],
)
def test_an_export_with_one_edit_fails(client, archive, edit):
    bundle = exported(client, archive)
    edited = copy.deepcopy(bundle)
    edit(edited)
    with pytest.raises(BundleRejected):
        verify_bundle(bundle_bytes(edited), published_key(client))


def test_an_export_re_signed_with_another_key_fails_against_the_published_key(client, archive):
    from medchat.archive.bundle import sign_bundle
    from medchat.archive.signing import load_archive_signer

    bundle = exported(client, archive)
    attacker = load_archive_signer(b"\x07" * 32, "", production=False)
    forged = sign_bundle(attacker, {k: v for k, v in bundle.items() if k != "signature"})
    # Even under the attacker's own key it fails: the ledger record inside is the real key's.
    with pytest.raises(BundleRejected, match="ledger record's signature"):
        verify_bundle(bundle_bytes(forged), attacker.public_key)
    with pytest.raises(BundleRejected, match="names signing key"):
        verify_bundle(bundle_bytes(forged), published_key(client))


# -- verification and audit ----------------------------------------------------------------------


def test_verify_endpoint_names_the_first_bad_record(client, runtime, archive):
    response = client.get(f"{ARCHIVE}/verify", headers=archive.c)
    assert response.status_code == 200
    body = response.get_json()
    assert (body["ok"], body["records"], body["first_bad"]) == (True, 1, None)
    assert body["head_seq"] == 1

    flip_byte(runtime, "attachments", "data_ciphertext", uuid.UUID(archive.attachment_id))
    body = client.get(f"{ARCHIVE}/verify", headers=archive.c).get_json()
    assert (body["ok"], body["first_bad"]) == (False, archive.record_id)
    assert "content" in body["reason"]


def test_every_step_is_audited_with_the_member_as_subject(client, runtime, archive):
    retrieval_id = ask(client, archive)
    approve(client, retrieval_id, archive.a)  # refused: self-approval
    content(client, retrieval_id, archive.a)  # refused: not approved
    approve(client, retrieval_id, archive.b)
    content(client, retrieval_id, archive.c)  # refused: not the requester
    content(client, retrieval_id, archive.a)
    client.get(
        f"{RETRIEVALS}/{retrieval_id}/attachments/{archive.attachment_id}", headers=archive.a
    )
    client.get(f"{RETRIEVALS}/{retrieval_id}/export", headers=archive.a)

    trail = audit_entries(runtime, prefix="archive.")
    steps = [(e.action, e.outcome, json.loads(e.details).get("refused")) for e in trail]
    assert steps == [
        ("archive.search", "success", None),
        ("archive.retrieval.request", "success", None),
        ("archive.retrieval.approve", "denied", "self_approval"),
        ("archive.retrieval.open", "denied", "not_approved"),
        ("archive.retrieval.approve", "success", None),
        ("archive.retrieval.open", "denied", "not_the_requester"),
        ("archive.retrieval.open", "success", None),
        ("archive.retrieval.attachment", "success", None),
        ("archive.retrieval.export", "success", None),
    ]
    officers = {name: person.id for name, person in archive.officers.items()}
    assert [e.actor_id for e in trail] == [
        officers[n] for n in ("a", "a", "a", "a", "b", "c", "a", "a", "a")
    ]
    for entry in trail:
        assert entry.subject_id == archive.member.id
        for secret in (SUBJECT, BODY, REPLY, JUSTIFICATION, archive.member.email):
            assert secret not in (entry.details or "")
        if entry.action.startswith("archive.retrieval"):
            assert entry.target_id == retrieval_id
    with runtime.database.transaction() as session:
        assert audit.verify(session, runtime.keys.audit_mac).ok
    assert client.get(f"{ARCHIVE}/verify", headers=archive.a).get_json()["ok"]
