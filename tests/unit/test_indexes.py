"""No index is served by another: every index of every table earns the cost of its writes.

Each index is written on every insert into its table (and on every update that is not a HOT
update). One whose columns lead another index or a unique constraint of the same table serves
no lookup the other does not, so it only costs. Walks the metadata (what the migrations make:
``test_migrations`` holds the two equal), so a new table or index joins by itself. And the
audit table, written by every request that changes or reads content, keeps no index over a
random value (its id, a hash, a MAC): each would cost every entry a random leaf page. A send's
update of its conversation changes no indexed column, so it stays heap-only.
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import (
    Column,
    Index,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.sql import visitors

from medchat.db import Base
from medchat.services.message_append import _NEXT_SEQ


def _keys(table: Any) -> list[tuple[str, tuple[str, ...], bool]]:
    """(name, columns, whether it only serves: a plain index over all rows) of every index,
    unique constraint and the primary key."""
    keys = []
    for index in table.indexes:
        partial = any(
            options.get("where") is not None for options in index.dialect_options.values()
        )
        columns = tuple(column.name for column in index.columns)
        keys.append((index.name, columns, not index.unique and not partial))
    for constraint in table.constraints:
        if isinstance(constraint, (UniqueConstraint, PrimaryKeyConstraint)):
            columns = tuple(column.name for column in constraint.columns)
            keys.append((constraint.name or "primary key", columns, False))
    return keys


def redundant(metadata: MetaData) -> list[str]:
    """Each plain index whose columns lead another index or constraint of its table."""
    found = []
    for table in metadata.sorted_tables:
        keys = _keys(table)
        for name, columns, plain in keys:
            if not plain:
                continue
            for other, other_columns, _ in keys:
                if other != name and other_columns[: len(columns)] == columns:
                    found.append(f"{table.name}: {name} {columns} is led by {other}")
    return found


def test_no_index_is_served_by_another():
    assert redundant(Base.metadata) == []


def test_a_served_index_is_found():
    metadata = MetaData()
    for name in Base.metadata.tables:
        Base.metadata.tables[name].to_metadata(metadata)
    audit = metadata.tables["audit_entries"]
    Index("ix_served", audit.c.subject_id)  # led by ix_audit_entries_subject_seq
    Index("ix_partial", audit.c.chain, postgresql_where=audit.c.format == 1)  # not plain
    Index("ix_unique_alone", audit.c.actor_role, unique=True)  # unique: leads nothing
    assert redundant(metadata) == [
        "audit_entries: ix_served ('subject_id',) is led by ix_audit_entries_subject_seq"
    ]


def random_keys(table: Any) -> list[str]:
    """Each index or constraint of the audit table over a column of random values: the entry's
    id (a UUID4) or any binary column (hashes, MACs, sealed values)."""
    random = {"id"} | {c.name for c in table.columns if isinstance(c.type, LargeBinary)}
    return [
        f"{name} {columns}" for name, columns, _ in _keys(table) if random.intersection(columns)
    ]


def test_the_audit_table_has_no_index_on_a_random_value():
    """Every request that changes or reads content writes an audit entry. A B-tree over a
    random value takes each insert to a random leaf page: once the index outgrows the buffers,
    a page that is read in and, after each checkpoint, written to the WAL whole (migration
    0026). Nothing looks an entry up by one: ``verify`` walks by chain and seq."""
    assert random_keys(Base.metadata.tables["audit_entries"]) == []


def test_a_random_key_is_found():
    metadata = MetaData()
    Base.metadata.tables["audit_entries"].to_metadata(metadata)
    audit = metadata.tables["audit_entries"]
    UniqueConstraint(audit.c.entry_hash, name="uq_hash")
    Index("ix_id", audit.c.id)
    Index("ix_address", audit.c.subject_id, audit.c.address_hash)
    assert sorted(random_keys(audit)) == [
        "ix_address ('subject_id', 'address_hash')",
        "ix_id ('id',)",
        "uq_hash ('entry_hash',)",
    ]


#: What a send writes only when the conversation's status changes (an answer; a member writing
#: after one): the value it had otherwise, which PostgreSQL sees as no change.
MOVED_WITH_THE_STATUS = {"status", "status_since"}


def indexed_columns(table: Any) -> set[str]:
    """Every column of ``table`` an index or constraint reads: its columns, the columns of its
    expressions and those its predicate (a partial index's ``WHERE``) names."""
    names = {column.name for column in table.columns}
    found = {column for _, columns, _ in _keys(table) for column in columns}
    for index in table.indexes:
        for expression in index.expressions:
            found |= {
                element.name
                for element in visitors.iterate(expression)
                if isinstance(element, Column) and element.table is table
            }
        for options in index.dialect_options.values():
            where = options.get("where")
            if where is not None:
                words = set(re.findall(r"[a-z_][a-z0-9_]*", str(where).lower()))
                found |= names & words
    return found


def moved_by_every_send(update: Any) -> set[str]:
    """The columns a send's UPDATE of its conversation assigns, less those it leaves as they
    were unless the status changes."""
    return set(update._values) - MOVED_WITH_THE_STATUS


def test_a_send_changes_no_indexed_column_of_its_conversation():
    """Every send updates its conversation's row (the count, the time). PostgreSQL writes that
    update into the same heap page and no index (a HOT update) only if no indexed column
    changes; otherwise each of the table's live indexes gets a new entry, which at scale is a
    page written to the WAL whole after each checkpoint (migration 0027). The clinicians'
    lists walk ``status_since``, which moves with the status only."""
    conversations = Base.metadata.tables["conversations"]
    moved = moved_by_every_send(_NEXT_SEQ)
    assert {"message_count", "last_message_at"} <= moved
    assert moved & indexed_columns(conversations) == set()


def test_an_indexed_column_a_send_moves_is_found():
    metadata = MetaData()
    Base.metadata.tables["conversations"].to_metadata(metadata)
    conversations = metadata.tables["conversations"]
    Index("ix_by_activity", conversations.c.status, conversations.c.last_message_at)
    Index("ix_counted", conversations.c.id, postgresql_where=text("message_count > 0"))
    Index("ix_lower", func.lower(conversations.c.notice_version))
    assert {"last_message_at", "message_count", "notice_version"} <= indexed_columns(conversations)
    assert moved_by_every_send(_NEXT_SEQ) & indexed_columns(conversations) == {
        "last_message_at",
        "message_count",
    }
