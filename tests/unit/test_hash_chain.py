"""The definitions both hash chains share (``medchat.audit.hash_chain``), pinned to the byte.

Every audit log and archive ledger already written links its first row to ``GENESIS_HASH``
and carries a head MAC made under these names and labels: the known answers below were
computed by the code before the two chains shared this module, and must never change.
"""

from __future__ import annotations

import pytest

from access_control import crypto
from medchat.archive import ledger
from medchat.audit import chain, heads, verification
from medchat.audit.hash_chain import ARCHIVE, AUDIT, GENESIS_HASH, Head

KEY = bytes(range(32))
ENTRY_HASH = bytes(range(32, 64))
AUDIT_HEAD_MAC = "c3ca8ae16246d2e90ae8d968168b25c31eaaf9566b2a59f92c4a0fca1824aff5"
ARCHIVE_HEAD_MAC = "734cf1f021f46c533f22b91ca5d6b3a16c22297eaddf417bb3d9698c90f9149e"


def test_names_labels_and_genesis_never_change() -> None:
    assert GENESIS_HASH.hex() == "00" * 32
    assert (AUDIT.name, AUDIT.head_label) == ("audit", "medchat/audit-head/v1")
    assert (ARCHIVE.name, ARCHIVE.head_label) == ("archive", "medchat/archive-head/v1")
    assert heads.AUDIT_CHAIN == "audit" and ledger.ARCHIVE_CHAIN == "archive"
    assert verification.GENESIS_HASH is GENESIS_HASH and ledger.GENESIS_HASH is GENESIS_HASH
    # The audit chains' head MAC is the shared one (every chain, one label).
    assert chain.head_mac(KEY, 3, ENTRY_HASH).hex() == AUDIT_HEAD_MAC


def test_head_macs_are_the_known_answers() -> None:
    assert AUDIT.head_mac(KEY, 3, ENTRY_HASH).hex() == AUDIT_HEAD_MAC
    assert ARCHIVE.head_mac(KEY, 3, ENTRY_HASH).hex() == ARCHIVE_HEAD_MAC


@pytest.mark.parametrize("hash_chain", [AUDIT, ARCHIVE], ids=lambda c: c.name)
def test_a_head_mac_verifies_only_for_its_own_chain_and_head(hash_chain) -> None:
    other = ARCHIVE if hash_chain is AUDIT else AUDIT
    mac = hash_chain.head_mac(KEY, 3, ENTRY_HASH)
    hash_chain.verify_head_mac(KEY, Head(3, ENTRY_HASH, mac))
    for head, key, checker in (
        (Head(3, ENTRY_HASH, mac), KEY, other),  # domain separated: not the other chain's
        (Head(2, ENTRY_HASH, mac), KEY, hash_chain),  # a rewound sequence number
        (Head(3, GENESIS_HASH, mac), KEY, hash_chain),  # another last hash
        (Head(3, ENTRY_HASH, mac), bytes(32), hash_chain),  # another key
    ):
        with pytest.raises(crypto.IntegrityCheckFailed):
            checker.verify_head_mac(key, head)


def test_each_chain_reads_its_own_head(runtime) -> None:
    with runtime.database.transaction() as session:
        audit_head, archive_head = AUDIT.read_head(session), ARCHIVE.read_head(session)
    assert audit_head is not None and archive_head is not None
    assert archive_head == Head(0, GENESIS_HASH, archive_head.mac)
    assert audit_head.seq >= 0
