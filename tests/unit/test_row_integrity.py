"""Row tags, the primitive and the session hooks that make and check them (SECURITY-MODEL 10).

``tests/security/test_planted_rows.py`` walks every tagged table of the schema with a real
world of accounts and keys; this file pins each rule of the mechanism on one small tagged
table (``recovery_codes``), fast enough to run for every mutant of the mutation job: what a
tag covers, when it is made, when it is checked, and what a bulk statement must bring.
"""

from __future__ import annotations

import copy
import pickle
import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import String, bindparam, func, insert, literal, or_, select, update
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, load_only, mapped_column

from access_control.row_tags import RowTagger
from medchat.errors import RowIntegrityFailure
from medchat.models import Account, AuditEntry, RecoveryCode
from medchat.storage.row_integrity import (
    _fill_defaults,
    intact,
    is_tampered,
    skip_tampered,
    tag_values,
    verify_columns,
    withdrawing,
)
from tests.support.accounts import make_member
from tests.support.tampering import execute_sql

KEY = bytes(range(32))
WHEN = datetime(2026, 12, 5, 9, 30, 15, 123456, tzinfo=UTC)
# The tag of ("t", [1, "a", b"b", None, True, WHEN]) under KEY, recorded from this code: stored
# tags must keep verifying, so a change of the label, the key derivation or the encoding of any
# kind of value shows here first.
KNOWN_TAG = "03ca45c3ba42304dd187fbb4df323d00e84670b23e45fb758c781b4d15038e88"


# -- the primitive ---------------------------------------------------------------------------


def tagger() -> RowTagger:
    """Made in each test, not at import, so the code under test makes it."""
    return RowTagger(KEY)


def test_a_tag_matches_its_known_answer() -> None:
    tag = tagger().tag("t", [1, "a", b"b", None, True, WHEN])
    assert len(tag) == 32
    assert tag.hex() == KNOWN_TAG


@pytest.mark.parametrize(
    "changed",
    [
        ("u", [1, "a"]),
        ("t", [2, "a"]),
        ("t", [1, "b"]),
        ("t", [1, "a", None]),
        ("t", [1]),
        ("t", ["a", 1]),
    ],
    ids=["table", "first-value", "second-value", "one-more-value", "one-less", "reordered"],
)
def test_a_tag_covers_the_table_and_every_value_in_order(changed) -> None:
    tags = tagger()
    tag = tags.tag("t", [1, "a"])
    assert tags.verify("t", [1, "a"], tag)
    assert not tags.verify(*changed, tag)


def test_times_are_tagged_as_utc_microseconds() -> None:
    paris = timezone(timedelta(hours=1))
    naive = WHEN.replace(tzinfo=None)
    tags = tagger()
    tag = tags.tag("t", [WHEN])
    assert tags.verify("t", [WHEN.astimezone(paris)], tag)  # the same instant
    assert tags.verify("t", [naive], tag)  # read back naive: UTC
    assert not tags.verify("t", [WHEN + timedelta(microseconds=1)], tag)
    assert not tags.verify("t", [naive.replace(tzinfo=paris)], tag)  # another instant


def test_a_missing_or_wrong_tag_never_verifies() -> None:
    tags = tagger()
    tag = tags.tag("t", [1])
    assert not tags.verify("t", [1], None)
    assert not tags.verify("t", [1], b"")
    assert not tags.verify("t", [1], bytes(32))
    assert not RowTagger(bytes(32)).verify("t", [1], tag)


def test_the_tagger_needs_a_whole_key_and_keeps_it_to_itself() -> None:
    tags = tagger()
    with pytest.raises(ValueError, match=r"^the integrity key needs at least 32 bytes$"):
        RowTagger(KEY[:31])
    assert RowTagger(KEY + b"x").tag("t", [1]) != tags.tag("t", [1])
    assert repr(tags) == "RowTagger()"
    unpicklable = r"^a row tagger holds key material and cannot be pickled$"
    with pytest.raises(TypeError, match=unpicklable):
        pickle.dumps(tags)
    with pytest.raises(TypeError, match=unpicklable):
        copy.deepcopy(tags)


# -- the session hooks -------------------------------------------------------------------------


def _code(runtime, account_id: uuid.UUID) -> uuid.UUID:
    with runtime.database.transaction() as session:
        row = RecoveryCode(account_id=account_id, code_hash=b"h" * 32)
        session.add(row)
        session.flush()
        assert row.id is not None  # the default id, filled before the tag was made
        return row.id


def _refusals(runtime) -> list[tuple[str | None, str | None]]:
    with runtime.database.transaction() as session:
        return [
            (e.target_type, e.target_id)
            for e in session.scalars(
                select(AuditEntry).where(AuditEntry.action == "integrity.row_refused")
            )
        ]


@pytest.fixture
def member(runtime):
    return make_member(runtime)


def test_a_row_is_tagged_when_written_and_again_when_changed(runtime, member) -> None:
    code = _code(runtime, member.id)
    with runtime.database.transaction() as session:
        row = session.get(RecoveryCode, code)
        first = row.row_tag
        assert first == tag_values(
            session, RecoveryCode, {"id": code, "account_id": member.id, "code_hash": b"h" * 32}
        )
        row.code_hash = b"g" * 32
    with runtime.database.transaction() as session:
        row = session.get(RecoveryCode, code)
        assert row.row_tag != first
        assert row.code_hash == b"g" * 32  # loads: the new tag verifies
        row.used_at = WHEN  # not a tagged column: the tag stays what it was
        kept = row.row_tag
    with runtime.database.transaction() as session:
        assert session.get(RecoveryCode, code).row_tag == kept


def test_a_row_changed_around_the_server_is_refused_on_load_and_audited(runtime, member):
    code = _code(runtime, member.id)
    execute_sql(
        runtime, "UPDATE recovery_codes SET code_hash = :h WHERE id = :id", h=b"x" * 32, id=code
    )
    with pytest.raises(RowIntegrityFailure) as refused, runtime.database.transaction() as s:
        s.get(RecoveryCode, code)
    assert refused.value.table == "recovery_codes"
    assert _refusals(runtime) == [("recovery_codes", str(code))]


def test_intact_leaves_tampered_rows_out_audits_each_once_and_keeps_the_others(
    runtime, member, caplog
):
    good, bad, worse = (_code(runtime, member.id) for _ in range(3))
    execute_sql(runtime, "UPDATE recovery_codes SET row_tag = NULL WHERE id = :id", id=bad)
    execute_sql(runtime, "UPDATE recovery_codes SET row_tag = NULL WHERE id = :id", id=worse)
    with runtime.database.transaction() as session:
        of_account = select(RecoveryCode).where(RecoveryCode.account_id == bindparam("account"))
        kept = intact(session, of_account, {"account": member.id})
        assert [row.id for row in kept] == [good]
        # Asked for twice in one transaction, each refusal is audited once.
        intact(session, select(RecoveryCode))
    assert sorted(_refusals(runtime)) == sorted(
        [("recovery_codes", str(bad)), ("recovery_codes", str(worse))]
    )
    with runtime.database.transaction() as session:
        entries = session.scalars(
            select(AuditEntry).where(AuditEntry.action == "integrity.row_refused")
        ).all()
    assert {(e.outcome, e.details) for e in entries} == {("denied", '{"reason":"row_tag"}')}
    logged = [r.getMessage() for r in caplog.records if r.name == "medchat.integrity"]
    assert f"refused a row of recovery_codes whose integrity tag does not verify: {bad}" in logged


def test_the_skip_option_may_come_with_the_statement_or_with_the_call(runtime, member):
    bad = _code(runtime, member.id)
    execute_sql(runtime, "UPDATE recovery_codes SET row_tag = NULL WHERE id = :id", id=bad)
    with runtime.database.transaction() as session:
        on_statement = session.scalars(skip_tampered(select(RecoveryCode))).one()
        session.expunge(on_statement)
        on_call = session.scalars(
            select(RecoveryCode), execution_options={"medchat_skip_tampered": True}
        ).one()
        assert is_tampered(on_statement) and is_tampered(on_call)
        session.expunge(on_call)
    with pytest.raises(RowIntegrityFailure), runtime.database.transaction() as session:
        session.scalars(select(RecoveryCode)).one()


def test_a_partial_load_is_checked_when_complete(runtime, member):
    """Loading only some columns cannot be checked (the tag covers them all) and is let
    through; the row is checked once the rest is loaded."""
    code = _code(runtime, member.id)
    execute_sql(
        runtime, "UPDATE recovery_codes SET row_tag = :t WHERE id = :id", t=bytes(32), id=code
    )
    with runtime.database.transaction() as session:
        columns = (RecoveryCode.id, RecoveryCode.account_id, RecoveryCode.code_hash)
        session.scalars(select(RecoveryCode).options(load_only(*columns))).one()
        session.expunge_all()
        session.scalars(select(RecoveryCode).options(load_only(RecoveryCode.used_at))).one()
        session.expunge_all()
    with pytest.raises(RowIntegrityFailure), runtime.database.transaction() as session:
        session.scalars(select(RecoveryCode)).one()


def test_a_session_without_a_tagger_neither_checks_nor_tags(runtime, member):
    """Only the service's sessions carry the tagger (migrations and tools read rows as they
    are); asked for a tag, such a session says what is missing instead of guessing."""
    code = _code(runtime, member.id)
    execute_sql(runtime, "UPDATE recovery_codes SET row_tag = NULL WHERE id = :id", id=code)
    with Session(runtime.database.engine) as bare:
        assert bare.get(RecoveryCode, code) is not None
        with pytest.raises(
            RuntimeError,
            match=r"^this session has no row tagger \(build it through the ServiceContext\)$",
        ):
            tag_values(bare, RecoveryCode, {"id": code, "account_id": member.id, "code_hash": b""})


class _Sketch(DeclarativeBase):
    pass


class _Defaults(_Sketch):
    """A table of its own (never created): the kinds of column default a tagged row meets."""

    __tablename__ = "defaults_sketch"
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    plain: Mapped[str | None] = mapped_column(String(10))
    version: Mapped[int] = mapped_column(default=1)
    made: Mapped[int] = mapped_column(default=lambda: 7)
    stamped: Mapped[datetime | None] = mapped_column(default=func.now())


def test_python_side_defaults_are_filled_before_the_tag_is_made():
    """The INSERT would apply them after the tag was computed over None: fill them first, every
    one of them, whatever comes before; leave SQL defaults and given values alone."""
    given = uuid.uuid4()
    row = _Defaults(id=given)
    _fill_defaults(row, ("id", "plain", "version", "made", "stamped"))
    assert (row.id, row.plain, row.version, row.made, row.stamped) == (given, None, 1, 7, None)
    fresh = _Defaults(version=3)
    _fill_defaults(fresh, ("plain", "version", "made", "id"))
    assert isinstance(fresh.id, uuid.UUID) and (fresh.version, fresh.made) == (3, 7)


def test_a_row_refused_once_cannot_be_written_back(runtime, member):
    bad = _code(runtime, member.id)
    execute_sql(
        runtime, "UPDATE recovery_codes SET code_hash = :h WHERE id = :id", h=b"x" * 32, id=bad
    )
    with pytest.raises(RowIntegrityFailure), runtime.database.transaction() as session:
        row = session.scalars(
            select(RecoveryCode).execution_options(medchat_skip_tampered=True)
        ).one()
        assert is_tampered(row)
        row.code_hash = b"y" * 32  # re-tagging it would launder the planted value
        session.flush()


def test_a_refresh_checks_the_row_again(runtime, member):
    code = _code(runtime, member.id)
    with pytest.raises(RowIntegrityFailure), runtime.database.transaction() as session:
        row = session.get(RecoveryCode, code)
        assert not is_tampered(row)
        session.connection().execute(
            update(RecoveryCode.__table__)
            .where(RecoveryCode.__table__.c.id == code)
            .values(code_hash=b"z" * 32)
        )
        session.refresh(row)


def test_columns_read_without_the_orm_are_checked_by_verify_columns(runtime, member):
    code = _code(runtime, member.id)
    with runtime.database.transaction() as session:
        values = {"id": code, "account_id": member.id, "code_hash": b"h" * 32}
        tag = session.get(RecoveryCode, code).row_tag
        verify_columns(session, RecoveryCode, values, tag)
        with pytest.raises(RowIntegrityFailure):
            verify_columns(session, RecoveryCode, {**values, "code_hash": b"x" * 32}, tag)
        with pytest.raises(ValueError, match="not a tagged table"):
            verify_columns(session, AuditEntry, values, tag)
        with pytest.raises(ValueError, match="not a tagged table"):
            tag_values(session, AuditEntry, values)
    assert _refusals(runtime) == [("recovery_codes", str(code))]


def test_a_bulk_insert_must_bring_a_tag_for_each_row(runtime, member):
    with runtime.database.transaction() as session:
        values = {"id": uuid.uuid4(), "account_id": member.id, "code_hash": b"h" * 32}
        tagged = {**values, "row_tag": tag_values(session, RecoveryCode, values)}
        session.execute(insert(RecoveryCode), [tagged])
        for rows in ([{**values, "id": uuid.uuid4()}], [tagged, {**values, "id": uuid.uuid4()}]):
            with pytest.raises(RuntimeError, match="must tag each row"):
                session.execute(insert(RecoveryCode), rows)
    with runtime.database.transaction() as session:
        assert session.scalar(select(func.count()).select_from(RecoveryCode)) == 1
        assert session.get(RecoveryCode, values["id"]) is not None  # and its tag verifies


def test_a_bulk_update_may_not_touch_a_tagged_column(runtime, member):
    code = _code(runtime, member.id)
    with runtime.database.transaction() as session:
        for values in ({"code_hash": b"x" * 32}, {"row_tag": bytes(32)}):
            with pytest.raises(RuntimeError, match="bulk UPDATE of tagged columns"):
                session.execute(
                    update(RecoveryCode).where(RecoveryCode.id == code).values(**values)
                )
        session.execute(update(RecoveryCode).where(RecoveryCode.id == code).values(used_at=WHEN))
        # Untagged tables are not this rule's business.
        session.execute(update(AuditEntry).where(AuditEntry.action == "none").values(details="{}"))
    with runtime.database.transaction() as session:
        assert session.get(RecoveryCode, code).used_at == WHEN
        assert session.get(Account, member.id) is not None


def test_a_bulk_update_names_its_rows_by_id_unless_it_only_withdraws(runtime, member):
    """An UPDATE matching rows by what they hold, whose count then decides, trusts rows no one
    checked (a planted recovery code once passed as a second factor so)."""
    code = _code(runtime, member.id)
    by_content = [
        RecoveryCode.account_id == member.id,
        RecoveryCode.code_hash == b"h" * 32,
        RecoveryCode.used_at.is_(None),
    ]
    with runtime.database.transaction() as session:
        for where in (
            by_content,
            [RecoveryCode.id != code],
            [RecoveryCode.id.is_not(None)],
            [literal(code) == RecoveryCode.id],  # the id on the right: not this rule's shape
            [RecoveryCode.account_id == member.id, RecoveryCode.used_at.is_(None)],
            [or_(RecoveryCode.id == code, RecoveryCode.account_id == member.id)],
            [Account.id == member.id],  # another table's id
        ):
            with pytest.raises(RuntimeError, match="does not name its rows by id"):
                session.execute(update(RecoveryCode).where(*where).values(used_at=WHEN))
        with pytest.raises(RuntimeError, match="does not name its rows by id"):
            session.execute(update(RecoveryCode).values(used_at=WHEN))
        # By id, alone or beside other criteria, one or several.
        for where in ([RecoveryCode.id == code], [RecoveryCode.id.in_([code]), *by_content[2:]]):
            session.execute(update(RecoveryCode).where(*where).values(used_at=WHEN))
        # Only taking away: spending every open code of the account.
        session.execute(
            withdrawing(update(RecoveryCode).where(*by_content[:1]).values(used_at=WHEN))
        )
    with runtime.database.transaction() as session:
        assert session.get(RecoveryCode, code).used_at == WHEN
