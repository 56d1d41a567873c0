"""Row tags: the rows that make the server act carry an integrity tag (SECURITY-MODEL 10).

Adds ``row_tag`` to every table whose rows are instructions (``medchat.models.integrity``)
and tags the rows already there with the integrity key from ``MEDCHAT_KEY_DIR``, which
``medchat db upgrade`` hands over (``medchat.storage.migrate.migration_server_keys``). The backfill
vouches for the rows as they are at upgrade time: run ``medchat audit verify`` before
upgrading a database you have reason to distrust. The tables and columns are frozen here as
they were at this revision; a later change of a tag's columns re-tags in its own migration.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04 16:40:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import medchat.db

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None

_U, _S, _B, _T, _I, _F = (
    sa.Uuid(), sa.String(), sa.LargeBinary(), medchat.db.UtcDateTime(timezone=True),
    sa.Integer(), sa.Boolean(),
)

#: table -> the deciding columns, in tag order, with their types (as of this revision).
TAGGED: dict[str, tuple[tuple[str, sa.types.TypeEngine], ...]] = {
    'accounts': (
        ('id', _U), ('role', _S), ('status', _S), ('email_index', _B), ('password_hash', _B),
        ('totp_secret_ciphertext', _B), ('totp_confirmed_at', _T),
    ),
    'enrollment_tokens': (('id', _U), ('account_id', _U), ('token_hash', _B), ('expires_at', _T)),
    'recovery_codes': (('id', _U), ('account_id', _U), ('code_hash', _B)),
    'retrieval_requests': (
        ('id', _U), ('record_id', _U), ('requested_by', _U), ('requested_at', _T),
        ('approved_by', _U), ('approved_at', _T), ('expires_at', _T), ('status', _S),
    ),
    'idempotency_records': (
        ('id', _U), ('account_id', _U), ('key', _S), ('scope', _S), ('request_hash', _B),
        ('resource_id', _U),
    ),
    'role_keys': (
        ('id', _U), ('role', _S), ('version', _I), ('key_id', _B), ('public_key', _B),
        ('fingerprint', _S), ('status', _S),
    ),
    'role_key_grants': (
        ('id', _U), ('role_key_id', _U), ('account_id', _U), ('wrap', _B), ('granted_by', _U),
        ('created_at', _T),
    ),
    'password_reset_tokens': (
        ('id', _U), ('account_id', _U), ('token_hash', _B), ('expires_at', _T),
    ),
    'rewrap_requests': (
        ('id', _U), ('conversation_id', _U), ('member_id', _U), ('personal_key_id', _U),
    ),
    'role_key_rotations': (
        ('id', _U), ('role', _S), ('from_key_id', _U), ('to_key_id', _U), ('started_by', _U),
        ('started_at', _T), ('activated_at', _T), ('finished_at', _T),
    ),
    'auth_tokens': (
        ('id', _U), ('account_id', _U), ('family_id', _U), ('kind', _S), ('token_hash', _B),
        ('mfa_verified', _F), ('expires_at', _T), ('family_expires_at', _T), ('used_at', _T),
    ),
}


def upgrade() -> None:
    for name in TAGGED:
        with op.batch_alter_table(name, schema=None) as batch_op:
            batch_op.add_column(sa.Column('row_tag', sa.LargeBinary(length=32), nullable=True))
    _tag_existing_rows()


def _tag_existing_rows() -> None:
    bind = op.get_bind()
    tagger = None
    for name, columns in TAGGED.items():
        table = sa.table(name, *(sa.column(c, t) for c, t in columns), sa.column('row_tag', _B))
        rows = bind.execute(sa.select(*(table.c[c] for c, _ in columns))).all()
        if not rows:
            continue
        if tagger is None:
            from access_control.row_tags import RowTagger
            from medchat.storage.migrate import migration_server_keys

            tagger = RowTagger(migration_server_keys('tags existing rows').integrity)
        for row in rows:
            bind.execute(
                sa.update(table)
                .where(table.c.id == row.id)
                .values(row_tag=tagger.tag(name, list(row)))
            )


def downgrade() -> None:
    for name in reversed(list(TAGGED)):
        with op.batch_alter_table(name, schema=None) as batch_op:
            batch_op.drop_column('row_tag')
