"""Writing one message at its conversation's next sequence number, sealed to that number.

The hot path of a send, apart from the flow around it (``ConversationService.append_message``):
the statements are built once with bound parameters (building a statement costs more CPU than
running it), and each database gets the shortest safe round trip. The body's associated data
names its sequence number and author (content format 2), so it is sealed once the number is
known: on PostgreSQL one statement moves the count and inserts the message, and moves it only
from the count the body was sealed for; SQLite runs the UPDATE, then seals, then inserts.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import Integer, bindparam, case, insert, select, true, update
from sqlalchemy.orm import Session

from medchat.audit import heads
from medchat.db import table_of
from medchat.db_driver import DriverStatement
from medchat.errors import Conflict
from medchat.keys.sealing import ContentKey, MessageLabel
from medchat.models import Conversation, ConversationRow, ConversationStatus, Message

# Statements of the hot paths, built once with bound parameters: building a statement costs
# more CPU than running it.
_conversations = table_of(Conversation)
_NOW = bindparam("now", type_=_conversations.c.last_message_at.type)
_NEXT_STATUS = bindparam("next_status", type_=_conversations.c.status.type)
#: The count, the time and the status; ``status_since`` moves only with the status, so a send
#: that keeps the status changes no indexed column and PostgreSQL updates the row heap-only.
_NEXT_SEQ = (
    update(_conversations)
    .where(_conversations.c.id == bindparam("conversation_id"))
    .values(
        message_count=_conversations.c.message_count + 1,
        last_message_at=_NOW,
        status=_NEXT_STATUS,
        status_since=case(
            (_conversations.c.status == _NEXT_STATUS, _conversations.c.status_since),
            else_=_NOW,
        ),
    )
    .returning(_conversations.c.message_count)
)
#: The count again, locked: for a caller that read the row without locking it.
_LOCKED_COUNT = (
    select(_conversations.c.message_count)
    .where(_conversations.c.id == bindparam("id"))
    .with_for_update()
)
_messages = table_of(Message)
_INSERT_MESSAGE = insert(_messages)
#: PostgreSQL: the sequence number and the message in one statement, the INSERT selecting
#: from the UPDATE ... RETURNING as a data-modifying CTE (SQLite runs the two in turn). The
#: body is sealed to its sequence number before the statement runs, so the UPDATE moves the
#: count only from the number the body was sealed for; otherwise neither row changes.
_NEXT_SEQ_CTE = _NEXT_SEQ.where(
    _conversations.c.message_count == bindparam("previous_count", type_=Integer)
).cte("next_seq")
#: The message, inserted from the UPDATE's new count.
_INSERTED = (
    insert(_messages)
    .from_select(
        [
            "id",
            "conversation_id",
            "seq",
            "author_role",
            "author_id",
            "body_ciphertext",
            "created_at",
        ],
        select(
            bindparam("message_id", type_=_messages.c.id.type),
            bindparam("conversation_id", type_=_messages.c.conversation_id.type),
            _NEXT_SEQ_CTE.c.message_count,
            bindparam("author_role", type_=_messages.c.author_role.type),
            bindparam("author_id", type_=_messages.c.author_id.type),
            bindparam("body_ciphertext", type_=_messages.c.body_ciphertext.type),
            bindparam("now", type_=_messages.c.created_at.type),
        ),
    )
    .returning(_messages.c.seq)
)
#: Run through the driver on PostgreSQL (``medchat.db_driver``), the only database it runs on.
_APPEND = DriverStatement(_INSERTED)
#: The same, also taking a free audit chain head for the commit (``medchat.audit.heads``:
#: looked for only once the message is in), so the commit needs no statement of its own to
#: lock one: the message's number, then the head's columns (NULL when every head is held).
_WRITTEN = _INSERTED.cte("appended")
_HEAD, _HEAD_COLUMNS = heads.head_after(_WRITTEN)
_APPEND_AND_TAKE_HEAD = DriverStatement(
    select(_WRITTEN.c.seq, *_HEAD_COLUMNS).select_from(_WRITTEN.outerjoin(_HEAD, true()))
)


def write_at_next_seq(
    session: Session,
    conversation: ConversationRow,
    key: ContentKey,
    body: str,
    *,
    message_id: uuid.UUID,
    author: str,
    author_id: uuid.UUID,
    now: datetime,
    status: ConversationStatus,
) -> tuple[int, bytes]:
    """Write the message and move the conversation's count, time and status; return the
    sequence number and the sealed body.

    The single ``UPDATE ... RETURNING`` serialises concurrent sends to one conversation (no
    two messages share a number). On PostgreSQL it runs as a CTE of the INSERT, from the count
    the caller read the row at; a row a concurrent send moved meanwhile is locked, read again
    and sealed again.
    """
    connection = session.connection()
    params = {
        "conversation_id": conversation.id,
        "now": now,
        "next_status": status,
        "message_id": message_id,
        "author_role": author,
        "author_id": author_id,
    }
    # The body's associated data names its sequence number and author (content format 2):
    # it is sealed once the number is known.
    if connection.dialect.name == "postgresql":
        seq = None
        count = conversation.message_count
        for _attempt in range(2):
            sealed = key.seal_body(MessageLabel(message_id, count + 1, author, author_id), body)
            params.update(previous_count=count, body_ciphertext=sealed)
            if heads.may_hold(session):
                params["chains"] = heads.chain_order(session)
                row = _APPEND_AND_TAKE_HEAD.one_or_none(connection, params)
                if row is not None:
                    heads.hold(session, row[1:])
            else:
                row = _APPEND.one_or_none(connection, params)
            seq = None if row is None else row[0]
            if seq is not None:
                break
            # The row was read before a concurrent send moved its count (callers that
            # did not read it locked): lock it, read the count again, seal again.
            count = session.execute(_LOCKED_COUNT, {"id": conversation.id}).scalar_one()
        if seq is None:  # pragma: no cover - the row is locked by this transaction now
            raise Conflict("This conversation changed while the message was sent.")
    else:
        seq = connection.execute(_NEXT_SEQ, params).scalar_one()
        sealed = key.seal_body(MessageLabel(message_id, seq, author, author_id), body)
        connection.execute(
            _INSERT_MESSAGE,
            {
                "id": message_id,
                "conversation_id": conversation.id,
                "seq": seq,
                "author_role": author,
                "author_id": author_id,
                "body_ciphertext": sealed,
                "created_at": now,
            },
        )
    return seq, sealed
