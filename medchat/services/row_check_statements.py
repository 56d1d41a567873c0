"""The row check's statements: the conversation row, the caller's key wraps, and what the check
decides from, read in one statement (``medchat.services.conversation_access`` applies the rules).

Two reads of the same row: ``LOADS`` for the ORM (``ConversationAccess.load``) and
``row_check`` as columns through the driver (``ConversationAccess.check``, and beside the token
in ``medchat.services.request_checks``). Both are built here from one join (``_joined``) and
one list of the facts besides the row (``_decided_by``), so the two cannot read different
things.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import Alias, Select, Table, and_, bindparam, select

from medchat.db import table_of
from medchat.keys.epochs import current_epoch_column, facts_columns
from medchat.models import (
    RECORD_COLUMNS,
    Conversation,
    ConversationKeyEpoch,
    ConversationKeyWrap,
)
from medchat.services.consent import current_consent_exists
from medchat.services.restrictions import active_restriction_exists


def _joined(
    columns: list[Any], conversations: Any, wraps: Any, epochs: Any, holder: Any = None
) -> Select[Any]:
    """``columns`` of the conversation row with the caller's holder's key wraps of every epoch
    and the epochs' rows (outer joins: one row per wrap, usually one per epoch, two while a
    rotation or re-wrap is under way). ``conversations``, ``wraps``, ``epochs``: the mapped
    classes (an ORM load) or the tables (columns read through the driver); ``holder``: the
    parameter ``holder`` unless another expression is given."""
    c, w, e = (_columns_of(x) for x in (conversations, wraps, epochs))
    if holder is None:
        holder = bindparam("holder")
    return (
        select(*columns)
        .select_from(conversations)
        .outerjoin(wraps, and_(w.conversation_id == c.id, w.holder == holder))
        .outerjoin(epochs, and_(e.conversation_id == w.conversation_id, e.epoch == w.epoch))
        .where(c.id == bindparam("conversation_id"))
    )


def _columns_of(source: Any) -> Any:
    return source.c if isinstance(source, (Table, Alias)) else source


def _decided_by(conversations: Any, *, consent: bool, facts: bool) -> list[Any]:
    """What the row check reads besides the row and its wraps, in this order: the highest
    epoch, whether the member restricts processing (``services.restrictions``: read with the
    row, so the check costs no round trip) and, when asked, whether the member consents now
    and what a seal decides from (``key_epochs.SealingFacts``)."""
    c = _columns_of(conversations)
    columns: list[Any] = [
        current_epoch_column(c.id),
        active_restriction_exists(c.member_id).label("restricted"),
    ]
    if consent:
        columns.append(current_consent_exists(c.member_id).label("consents"))
    if facts:
        columns += facts_columns(c.member_id)
    return columns


def _load_statement(*, for_update: bool, with_consent: bool) -> Any:
    """The row as an object with its wraps (``_joined``) and ``_decided_by``'s columns (the
    facts for writes)."""
    columns: list[Any] = [
        Conversation,
        ConversationKeyWrap.epoch,
        ConversationKeyWrap.recipient_key_id,
        ConversationKeyWrap.wrap,
        ConversationKeyEpoch,
        *_decided_by(Conversation, consent=with_consent, facts=for_update),
    ]
    statement = _joined(columns, Conversation, ConversationKeyWrap, ConversationKeyEpoch)
    if for_update:
        # A write reads the row fresh and locked (SQLite ignores it; its unit of work holds
        # the write lock already). Only the conversation row: the wraps are not locked.
        statement = statement.with_for_update(of=Conversation).execution_options(
            populate_existing=True
        )
    return statement


LOADS = {
    (for_update, with_consent): _load_statement(for_update=for_update, with_consent=with_consent)
    for for_update in (False, True)
    for with_consent in (False, True)
}


#: Short aliases: the row check is also part of a longer statement
#: (``medchat.services.request_checks``), and psycopg parses a statement's text again at every
#: execution once it is longer than 4,096 characters (``tests/unit/test_db_driver.py``).
_conversations, _wraps, _epochs = (
    table_of(model).alias(name)
    for model, name in (
        (Conversation, "c"),
        (ConversationKeyWrap, "w"),
        (ConversationKeyEpoch, "e"),
    )
)
#: Every column of an epoch row: each one read is checked against its tag.
EPOCH_COLUMNS = tuple(column.key for column in _epochs.c)
#: The labels of ``facts_columns``, in their order (``SealingFacts.from_columns`` reads them).
FACT_NAMES = tuple(column.name for column in facts_columns(_conversations.c.member_id))


def row_check(
    *, for_update: bool, holder: Any = None, visible: Callable[[Any], Any] | None = None
) -> Select[Any]:
    """``check``'s statement: ``load``'s as columns (``RECORD_COLUMNS``, the wrap, the epoch
    row's every column, the highest epoch, whether the member restricts processing). A
    write's locks the conversation row and also reads whether the member consents now and
    what a seal decides from. ``holder``: whose wraps (``_joined``); ``visible``: a condition
    on the conversations' columns the row must meet besides its id
    (``medchat.services.request_checks``: the caller's)."""
    columns: list[Any] = [
        *(_conversations.c[name] for name in RECORD_COLUMNS),
        _wraps.c.epoch,
        _wraps.c.recipient_key_id,
        _wraps.c.wrap,
        *(_epochs.c[name] for name in EPOCH_COLUMNS),
        *_decided_by(_conversations, consent=for_update, facts=for_update),
    ]
    statement = _joined(columns, _conversations, _wraps, _epochs, holder)
    if visible is not None:
        statement = statement.where(visible(_conversations.c))
    if for_update:
        statement = statement.with_for_update(of=_conversations)
    return statement
