"""Migration 0015 keeps the audit log written before chains: its entries (format 1: one chain,
hashed over seq) still verify after the upgrade, the service appends after them, and an edit
of an old entry is still named."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import create_engine, text

from access_control.key_directory import load_server_keys
from medchat import audit
from medchat.audit.chain import entry_hash, entry_mac, head_mac
from medchat.audit.hash_chain import GENESIS_HASH
from medchat.storage.migrate import upgrade


def _write_format_1(url: str, key: bytes, count: int) -> None:
    """Entries as the service wrote them before 0015, straight into a 0014 schema."""
    engine = create_engine(url)
    prev = GENESIS_HASH
    start = datetime(2026, 1, 1, tzinfo=UTC)
    with engine.begin() as connection:
        for seq in range(1, count + 1):
            row = {
                "id": uuid.uuid4(),
                "seq": seq,
                "format": 1,
                "at": start + timedelta(minutes=seq),
                "actor_id": None,
                "actor_role": "cli",
                "action": f"old.action_{seq}",
                "outcome": "success",
                "target_type": "thing",
                "target_id": str(seq),
                "subject_id": None,
                "address": "cli",
                "details": "{}",
            }
            hash_ = entry_hash(row, prev)
            connection.execute(
                text(
                    "INSERT INTO audit_entries (seq, id, at, actor_id, actor_role, action, "
                    "outcome, target_type, target_id, subject_id, address, details, prev_hash, "
                    "entry_hash, mac) VALUES (:seq, :id, :at, :actor_id, :actor_role, :action, "
                    ":outcome, :target_type, :target_id, :subject_id, :address, :details, "
                    ":prev, :hash, :mac)"
                ),
                {
                    **{k: v for k, v in row.items() if k != "format"},
                    "id": str(row["id"]),
                    "prev": prev,
                    "hash": hash_,
                    "mac": entry_mac(key, hash_),
                },
            )
            prev = hash_
        connection.execute(
            text(
                "UPDATE chain_heads SET seq = :s, entry_hash = :h, mac = :m WHERE chain = 'audit'"
            ),
            {"s": count, "h": prev, "m": head_mac(key, count, prev)},
        )
    engine.dispose()


def test_entries_written_before_chains_verify_after_the_upgrade_and_the_log_goes_on(
    tmp_path: Path, key_dir: Path, make_app
):
    url = f"sqlite:///{tmp_path / 'before-0015.sqlite3'}"
    upgrade(url, "0014")
    keys = load_server_keys(key_dir, create_missing=True)
    _write_format_1(url, keys.audit_mac, 3)

    upgrade(url, "head")
    runtime = make_app(database_url=url, audit_chains=4).extensions["medchat"]
    with runtime.database.transaction() as session:
        result = audit.verify(session, runtime.keys.audit_mac)
    assert result.ok, result.reason
    assert result.entries == 3

    for _ in range(6):
        with runtime.database.transaction() as session:
            audit.record(session, "new.action")
    with runtime.database.transaction() as session:
        result = audit.verify(session, runtime.keys.audit_mac)
        formats = session.execute(text("SELECT seq, format, chain FROM audit_entries")).all()
    assert result.ok, result.reason
    assert result.entries == 9
    assert sorted(seq for seq, _, _ in formats) == list(range(1, 10))
    assert {(seq, fmt) for seq, fmt, _ in formats if seq <= 3} == {(1, 1), (2, 1), (3, 1)}

    with runtime.database.transaction() as session:
        session.execute(text("UPDATE audit_entries SET action = 'old.innocent' WHERE seq = 2"))
        result = audit.verify(session, runtime.keys.audit_mac)
    assert not result.ok and result.first_bad == 2
