"""``python -m bench.archive_ledger``: how long ``medchat archive verify`` takes on a big ledger.

Seeds a throw-away database (a SQLite file, or a PostgreSQL database created and dropped here)
with ``--records`` sealed conversations (``--messages`` each, one attachment every
``--attachment-every`` conversations), appends their signed ledger records with the real
record format and content hashes, then times ``ledger.verify`` (every link, signature and
content hash). Ciphertexts are random bytes of realistic length: verification hashes
ciphertexts and never decrypts, so it cannot tell. Seeding uses bulk inserts, not the
deletion service, so it takes a minute rather than hours.
"""

from __future__ import annotations

import argparse
import os
import secrets
import tempfile
import time
import uuid
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import create_engine, insert, text, update
from sqlalchemy.engine import make_url

from access_control.key_directory import load_server_keys
from medchat.archive import ledger
from medchat.archive.content_hashes import content_hashes
from medchat.archive.signing import ArchiveSigner, load_archive_signer
from medchat.audit.hash_chain import ARCHIVE
from medchat.db import Database
from medchat.models import Account, ArchiveRecord, Attachment, ChainHead, Conversation, Message
from medchat.storage.migrate import upgrade


def log(message: str) -> None:
    print(f"[archive-bench] {message}", flush=True)


def seed(database: Database, signer: ArchiveSigner, args: argparse.Namespace) -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    member_id = uuid.uuid4()
    with database.transaction() as session:
        session.execute(
            insert(Account),
            [
                {
                    "id": member_id,
                    "role": "member",
                    "status": "active",
                    "email_index": secrets.token_bytes(32),
                    "email_ciphertext": secrets.token_bytes(60),
                    "first_name": "Bench",
                    "last_name_ciphertext": secrets.token_bytes(44),
                    "created_at": start,
                }
            ],
        )
    member_index = secrets.token_bytes(32)
    prev_hash, seq, batch = ledger.GENESIS_HASH, 0, 2000
    began = time.perf_counter()
    for offset in range(0, args.records, batch):
        ids = [uuid.uuid4() for _ in range(min(batch, args.records - offset))]
        with database.transaction() as session:
            conversations, messages, attachments = [], [], []
            for n, conversation_id in enumerate(ids):
                at = start + timedelta(seconds=offset + n)
                conversations.append(
                    {
                        "id": conversation_id,
                        "member_id": member_id,
                        "status": "sealed",
                        "subject_ciphertext": secrets.token_bytes(77),
                        "message_count": args.messages,
                        "key_commitment": secrets.token_bytes(32),
                        "key_tag": secrets.token_bytes(32),
                        "created_at": at,
                        "last_message_at": at,
                        "status_since": at,
                        "sealed_at": at,
                    }
                )
                message_ids = [uuid.uuid4() for _ in range(args.messages)]
                messages += [
                    {
                        "id": message_id,
                        "conversation_id": conversation_id,
                        "seq": k + 1,
                        "author_role": "member" if k % 2 == 0 else "clinician",
                        "author_id": member_id,
                        "body_ciphertext": secrets.token_bytes(317),
                        "created_at": at,
                    }
                    for k, message_id in enumerate(message_ids)
                ]
                if args.attachment_every and (offset + n) % args.attachment_every == 0:
                    attachments.append(
                        {
                            "id": uuid.uuid4(),
                            "conversation_id": conversation_id,
                            "message_id": message_ids[0],
                            "size": args.attachment_bytes,
                            "filename_ciphertext": secrets.token_bytes(50),
                            "content_type_ciphertext": secrets.token_bytes(52),
                            "data_ciphertext": secrets.token_bytes(args.attachment_bytes + 37),
                            "created_at": at,
                        }
                    )
            session.execute(insert(Conversation), conversations)
            session.execute(insert(Message), messages)
            if attachments:
                session.execute(insert(Attachment), attachments)
            session.flush()
            hashes = content_hashes(session, ids)
            records = []
            for conversation in conversations:
                seq += 1
                fields = ledger.RecordFields(
                    seq=seq,
                    id=uuid.uuid4(),
                    kind=ledger.RecordKind.SEALED,
                    refers_to=None,
                    conversation_id=conversation["id"],
                    member_index=member_index,
                    reason="member_request",
                    message_count=args.messages,
                    question_at=conversation["created_at"],
                    sealed_at=conversation["sealed_at"],
                    content_hash=hashes[conversation["id"]].content_hash,
                    metadata_json=ledger.canonical_json({"v": 1, "member_id": str(member_id)}),
                    prev_hash=prev_hash,
                )
                record_hash = fields.record_hash()
                records.append(
                    {
                        **asdict(fields),
                        "record_hash": record_hash,
                        "signature": signer.sign(
                            ledger._SIGNATURE_LABEL, signer.fingerprint, record_hash
                        ),
                        "signing_key_id": signer.fingerprint,
                    }
                )
                prev_hash = record_hash
            session.execute(insert(ArchiveRecord), records)
            session.execute(
                update(ChainHead)
                .where(ChainHead.chain == ledger.ARCHIVE_CHAIN)
                .values(
                    seq=seq,
                    entry_hash=prev_hash,
                    mac=ARCHIVE.head_mac(signer.head_mac_key, seq, prev_hash),
                )
            )
        if (offset // batch) % 10 == 0:
            log(f"seeded {seq} records ({time.perf_counter() - began:.0f} s)")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.archive_ledger", description=__doc__)
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--messages", type=int, default=3)
    parser.add_argument("--attachment-every", type=int, default=20)
    parser.add_argument("--attachment-bytes", type=int, default=4096)
    parser.add_argument("--batch", type=int, default=ledger.VERIFY_BATCH)
    parser.add_argument(
        "--postgresql",
        default=os.environ.get("MEDCHAT_TEST_DATABASE_URL"),
        help="admin URL of a PostgreSQL server (default: a SQLite file)",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as workdir:
        keys = load_server_keys(Path(workdir) / "keys", create_missing=True)
        signer = load_archive_signer(keys.archive_signing, "", production=False)
        admin, name = None, None
        if args.postgresql:
            admin_url = make_url(args.postgresql.replace("postgresql://", "postgresql+psycopg://"))
            name = f"medchat_archive_bench_{secrets.token_hex(4)}"
            admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
            with admin.connect() as connection:
                connection.execute(text(f'CREATE DATABASE "{name}"'))
            url = admin_url.set(database=name).render_as_string(hide_password=False)
        else:
            url = f"sqlite:///{workdir}/bench.sqlite3"
        try:
            upgrade(url)
            database = Database(url)
            seed(database, signer, args)
            if args.postgresql:
                with database.engine.connect() as connection:
                    connection.execute(text("ANALYZE"))
                    connection.commit()
            began = time.perf_counter()
            with database.transaction() as session:
                report = ledger.verify(
                    session, signer.public_key, signer.head_mac_key, batch=args.batch
                )
            elapsed = time.perf_counter() - began
            log(
                f"verify: ok={report.ok} records={report.records} in {elapsed:.1f} s "
                f"({report.records / elapsed:,.0f} records/s) on {database.engine.dialect.name}"
            )
            database.dispose()
        finally:
            if admin is not None:
                with admin.connect() as connection:
                    connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
                admin.dispose()


if __name__ == "__main__":
    main()
