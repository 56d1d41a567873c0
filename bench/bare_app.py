"""The baseline: a bare Flask + SQLAlchemy app doing the same database work as medchat.

No authentication, no encryption, no audit chain: the floor that the framework, the ORM,
PostgreSQL and gunicorn set on this machine. It has its own tables, shaped like medchat's
(``bare_conversations``, ``bare_messages`` with the same unique (conversation_id, seq) index,
``bare_audit`` with audit_entries' columns and indexes but a plain sequence instead of a
hash chain), in the same database, and is served by gunicorn with the same configuration.

- send: ``POST /bare/conversations/<id>/messages {"body"}`` -> 201. ``UPDATE ... RETURNING``
  the conversation's message count (its next sequence number), insert the message row and
  one audit-like row, commit; the message as JSON.
- read: ``GET /bare/conversations/<id>/messages?limit=50`` -> 200. The latest ``limit + 1``
  rows by (conversation_id, seq) descending, serialised like medchat's page
  (``items`` and ``next_cursor``).

Gunicorn loads it as ``bench.bare_app:create_app()``; the database URL comes from
``BENCH_BARE_DATABASE_URL``.
"""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime
from typing import Any

from flask import Flask, abort, jsonify, request
from sqlalchemy import (
    BigInteger,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    String,
    Text,
    UniqueConstraint,
    select,
    text,
    update,
)
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, sessionmaker


class Base(DeclarativeBase):
    type_annotation_map = {datetime: DateTime(timezone=True)}


class BareConversation(Base):
    __tablename__ = "bare_conversations"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    member_id: Mapped[uuid.UUID] = mapped_column(index=True)
    status: Mapped[str] = mapped_column(String(16))
    message_count: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[datetime]
    last_message_at: Mapped[datetime]


class BareMessage(Base):
    __tablename__ = "bare_messages"
    __table_args__ = (UniqueConstraint("conversation_id", "seq"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    conversation_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("bare_conversations.id"))
    seq: Mapped[int]
    author_role: Mapped[str] = mapped_column(String(16))
    author_id: Mapped[uuid.UUID]
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime]


class BareAudit(Base):
    """audit_entries' columns and indexes, without the hash chain (no head row to lock)."""

    __tablename__ = "bare_audit"
    __table_args__ = (Index("ix_bare_audit_at", "at"),)

    seq: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    id: Mapped[uuid.UUID]
    at: Mapped[datetime]
    actor_id: Mapped[uuid.UUID | None] = mapped_column(index=True)
    actor_role: Mapped[str | None] = mapped_column(String(16))
    action: Mapped[str] = mapped_column(String(64), index=True)
    outcome: Mapped[str] = mapped_column(String(32))
    target_type: Mapped[str | None] = mapped_column(String(32))
    target_id: Mapped[str | None] = mapped_column(String(64), index=True)
    subject_id: Mapped[uuid.UUID | None] = mapped_column(index=True)
    address: Mapped[str | None] = mapped_column(String(64))
    details: Mapped[str] = mapped_column(Text, default="{}")


def make_engine(url: str) -> Engine:
    """The same engine settings as medchat's (``medchat.db.postgresql_engine``): its pool,
    its check of a pooled connection at checkout (a ``poll``, not a ``SELECT 1``), so the
    baseline saves that round trip too, and its cursors (column descriptions made on first
    use)."""
    from medchat.db import postgresql_engine

    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    return postgresql_engine(url)


def create_schema(url: str) -> None:
    engine = make_engine(url)
    Base.metadata.create_all(engine)
    engine.dispose()


def _message_json(message: BareMessage) -> dict[str, Any]:
    return {
        "id": str(message.id),
        "author": message.author_role,
        "body": message.body,
        "created_at": message.created_at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "attachments": [],
    }


def create_app(database_url: str | None = None) -> Flask:
    url = database_url or os.environ["BENCH_BARE_DATABASE_URL"]
    engine = make_engine(url)
    sessions = sessionmaker(engine, expire_on_commit=False)
    app = Flask(__name__)

    @app.get("/readyz")
    def readyz() -> Any:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        return jsonify({"status": "ready"})

    @app.post("/bare/conversations/<uuid:conversation_id>/messages")
    def send(conversation_id: uuid.UUID) -> Any:
        data = request.get_json(silent=True)
        if not isinstance(data, dict) or not isinstance(data.get("body"), str):
            abort(422)
        body = data["body"]
        if not body.strip() or len(body) > 10000:
            abort(422)
        now = datetime.now(UTC)
        with sessions() as session:
            seq = session.execute(
                update(BareConversation)
                .where(BareConversation.id == conversation_id)
                .values(
                    message_count=BareConversation.message_count + 1,
                    last_message_at=now,
                    status="open",
                )
                .returning(BareConversation.message_count, BareConversation.member_id)
                .execution_options(synchronize_session=False)
            ).one_or_none()
            if seq is None:
                abort(404)
            count, member_id = seq
            message = BareMessage(
                id=uuid.uuid4(),
                conversation_id=conversation_id,
                seq=count,
                author_role="member",
                author_id=member_id,
                body=body,
                created_at=now,
            )
            session.add(message)
            session.add(
                BareAudit(
                    id=uuid.uuid4(),
                    at=now,
                    actor_id=member_id,
                    actor_role="member",
                    action="message.create",
                    outcome="success",
                    target_type="conversation",
                    target_id=str(conversation_id),
                    subject_id=member_id,
                    address=request.remote_addr,
                    details="{}",
                )
            )
            session.commit()
            response = jsonify(_message_json(message))
        response.status_code = 201
        response.headers["Cache-Control"] = "no-store"
        return response

    @app.get("/bare/conversations/<uuid:conversation_id>/messages")
    def read(conversation_id: uuid.UUID) -> Any:
        try:
            limit = int(request.args.get("limit", "50"))
        except ValueError:
            abort(422)
        if not 1 <= limit <= 100:
            abort(422)
        with sessions() as session:
            rows = list(
                session.scalars(
                    select(BareMessage)
                    .where(BareMessage.conversation_id == conversation_id)
                    .order_by(BareMessage.seq.desc())
                    .limit(limit + 1)
                )
            )
            more = len(rows) > limit
            rows = rows[:limit]
            response = jsonify(
                {
                    "items": [_message_json(m) for m in rows],
                    "next_cursor": str(rows[-1].seq) if more and rows else None,
                }
            )
        response.headers["Cache-Control"] = "no-store"
        return response

    return app
