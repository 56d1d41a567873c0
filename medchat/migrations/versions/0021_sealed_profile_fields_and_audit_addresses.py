"""First name, birth date and sex sealed at rest like the other personal fields (issue 16 item
4), and the audit log's network addresses sealed (item 3).

Audit: three nullable columns on ``audit_entries`` (``address_hash``, ``address_sealed``,
``address_erasure_mac``; ``medchat.audit.addresses``). Entries written from now on are format 3;
the ones already there keep their clear address and verify as before until the retention job
erases it. Nothing is rewritten here. Going back is refused once a format 3 entry or an erased
address exists (the code before this revision could not verify them).

Profile fields:

Adds ``accounts.first_name_ciphertext``, ``member_profiles.birth_date_ciphertext`` and
``member_profiles.sex_ciphertext``, seals the values already there under the profile key of
``MEDCHAT_KEY_DIR`` (``medchat db upgrade`` hands it over, as for 0008; the sealing is
``medchat.keys.personal_data.ProfileCipher``'s: account id and field name as associated data,
a birth date as its ISO form), then drops the clear columns.

Done here, not by a resumable CLI step: there is one row per account (a small table, sealed in
pages of 500 at a few microseconds a row), and the clear columns can only go once every row is
sealed. A separate step would leave a release in which both columns exist and the code must
read either; inside the migration the schema and the code change together, and a failure
rolls the whole revision back (PostgreSQL runs it in one transaction). A deleted account's
tombstone keeps an empty first name: its ciphertext is empty, as its other fields' are.

``accounts`` is not rebuilt on SQLite (batch mode would copy it and drop the old table, and with
foreign keys on that DROP deletes every row referencing an account, cascading): the new column
is added NOT NULL with an empty default, which PostgreSQL then drops, and the clear column is
dropped by SQLite's own ``ALTER TABLE ... DROP COLUMN`` (3.35 and later). ``member_profiles``,
which nothing references, is rebuilt as usual.

The clear values stay in the database's free space (SQLite's free pages, PostgreSQL's dead row
versions) until it is vacuumed, and in every backup taken before: after upgrading run
``VACUUM`` (SQLite) or ``VACUUM FULL accounts, member_profiles`` (PostgreSQL), and let the
older backups expire (docs/data-rights.md).

Revision ID: 0021
Revises: 0020
Create Date: 2027-01-04 10:00:00.000000
"""

from __future__ import annotations

from datetime import date

import sqlalchemy as sa
from alembic import op

revision = '0021'
down_revision = '0020'
branch_labels = None
depends_on = None

_PAGE = 500
_ACCOUNTS = sa.table(
    'accounts', sa.column('id', sa.Uuid()), sa.column('first_name', sa.String()),
    sa.column('first_name_ciphertext', sa.LargeBinary()),
)
_PROFILES = sa.table(
    'member_profiles', sa.column('account_id', sa.Uuid()), sa.column('birth_date', sa.Date()),
    sa.column('sex', sa.String()), sa.column('birth_date_ciphertext', sa.LargeBinary()),
    sa.column('sex_ciphertext', sa.LargeBinary()),
)


def _pages(bind: sa.Connection, key: sa.ColumnElement, *columns: sa.ColumnElement):
    last = None
    while True:
        query = sa.select(key, *columns).order_by(key).limit(_PAGE)
        if last is not None:
            query = query.where(key > last)
        rows = bind.execute(query).all()
        if not rows:
            return
        yield rows
        last = rows[-1][0]


def _cipher(purpose: str):
    from medchat.keys.personal_data import ProfileCipher
    from medchat.storage.migrate import migration_server_keys

    return ProfileCipher(migration_server_keys(purpose))


def _has_rows(bind: sa.Connection) -> bool:
    return bind.execute(sa.select(_ACCOUNTS.c.id).limit(1)).first() is not None


def _add_to_accounts(column: sa.Column) -> None:
    """Add a NOT NULL column to ``accounts`` without rebuilding it (see above)."""
    op.add_column('accounts', column)
    if op.get_bind().dialect.name == 'postgresql':
        op.alter_column('accounts', column.name, server_default=None)


def _drop_from_accounts(name: str) -> None:
    if op.get_bind().dialect.name == 'sqlite':
        op.execute(sa.text(f'ALTER TABLE accounts DROP COLUMN {name}'))
    else:
        op.drop_column('accounts', name)


def upgrade() -> None:
    _add_to_accounts(
        sa.Column('first_name_ciphertext', sa.LargeBinary(), nullable=False, server_default='')
    )
    with op.batch_alter_table('member_profiles', schema=None) as batch_op:
        batch_op.add_column(sa.Column('birth_date_ciphertext', sa.LargeBinary(), nullable=True))
        batch_op.add_column(sa.Column('sex_ciphertext', sa.LargeBinary(), nullable=True))
    with op.batch_alter_table('audit_entries', schema=None) as batch_op:
        batch_op.add_column(sa.Column('address_hash', sa.LargeBinary(length=32), nullable=True))
        batch_op.add_column(sa.Column('address_sealed', sa.LargeBinary(), nullable=True))
        batch_op.add_column(
            sa.Column('address_erasure_mac', sa.LargeBinary(length=32), nullable=True)
        )
    bind = op.get_bind()
    if _has_rows(bind):
        cipher = _cipher('seals the first names, birth dates and sexes already stored')
        for rows in _pages(bind, _ACCOUNTS.c.id, _ACCOUNTS.c.first_name):
            for row in rows:
                sealed = cipher.seal(row.id, 'first_name', row.first_name) if row.first_name else b''
                bind.execute(
                    sa.update(_ACCOUNTS).where(_ACCOUNTS.c.id == row.id)
                    .values(first_name_ciphertext=sealed)
                )
        for rows in _pages(
            bind, _PROFILES.c.account_id, _PROFILES.c.birth_date, _PROFILES.c.sex
        ):
            for row in rows:
                bind.execute(
                    sa.update(_PROFILES).where(_PROFILES.c.account_id == row.account_id)
                    .values(
                        birth_date_ciphertext=cipher.seal_date(
                            row.account_id, 'birth_date', row.birth_date
                        ),
                        sex_ciphertext=cipher.seal(row.account_id, 'sex', row.sex),
                    )
                )
    _drop_from_accounts('first_name')
    with op.batch_alter_table('member_profiles', schema=None) as batch_op:
        batch_op.alter_column('birth_date_ciphertext', nullable=False)
        batch_op.alter_column('sex_ciphertext', nullable=False)
        batch_op.drop_column('sex')
        batch_op.drop_column('birth_date')


def downgrade() -> None:
    bind = op.get_bind()
    newer = bind.execute(
        sa.text('SELECT 1 FROM audit_entries WHERE format = 3 OR address_erasure_mac IS NOT NULL')
    ).first()
    if newer is not None:
        raise RuntimeError(
            'audit entries of format 3 (sealed addresses) or with an erased address exist: '
            'the code before 0021 cannot verify them'
        )
    with op.batch_alter_table('audit_entries', schema=None) as batch_op:
        batch_op.drop_column('address_erasure_mac')
        batch_op.drop_column('address_sealed')
        batch_op.drop_column('address_hash')
    _add_to_accounts(
        sa.Column('first_name', sa.String(length=100), nullable=False, server_default='')
    )
    with op.batch_alter_table('member_profiles', schema=None) as batch_op:
        batch_op.add_column(sa.Column('birth_date', sa.Date(), nullable=True))
        batch_op.add_column(sa.Column('sex', sa.String(length=8), nullable=True))
    bind = op.get_bind()
    if _has_rows(bind):
        cipher = _cipher('opens the sealed first names, birth dates and sexes')
        for rows in _pages(bind, _ACCOUNTS.c.id, _ACCOUNTS.c.first_name_ciphertext):
            for row in rows:
                clear = (
                    cipher.open(row.id, 'first_name', row.first_name_ciphertext)
                    if row.first_name_ciphertext else ''
                )
                bind.execute(
                    sa.update(_ACCOUNTS).where(_ACCOUNTS.c.id == row.id).values(first_name=clear)
                )
        for rows in _pages(
            bind, _PROFILES.c.account_id, _PROFILES.c.birth_date_ciphertext,
            _PROFILES.c.sex_ciphertext,
        ):
            for row in rows:
                born: date | None = cipher.open_date(
                    row.account_id, 'birth_date', row.birth_date_ciphertext
                )
                bind.execute(
                    sa.update(_PROFILES).where(_PROFILES.c.account_id == row.account_id)
                    .values(
                        birth_date=born,
                        sex=cipher.open(row.account_id, 'sex', row.sex_ciphertext),
                    )
                )
    _drop_from_accounts('first_name_ciphertext')
    with op.batch_alter_table('member_profiles', schema=None) as batch_op:
        batch_op.alter_column('birth_date', nullable=False)
        batch_op.alter_column('sex', nullable=False)
        batch_op.drop_column('sex_ciphertext')
        batch_op.drop_column('birth_date_ciphertext')
