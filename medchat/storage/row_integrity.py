"""Rows that make the server act are tagged when the server writes them and checked when read.

SECURITY-MODEL key hierarchy 10. Which tables and columns: ``medchat.models.integrity`` (each
model's ``__row_integrity__``). How, in one place, for every session of a ``Database`` whose
``info`` carries a ``RowTagger`` (``medchat.services.context.build_service_context``):

- **Writing.** Before each flush, every new or changed row of a tagged table gets its tag over
  its deciding columns (defaults filled in first, so the tag covers the id the INSERT will
  write). A changed row was checked when it was loaded, so re-tagging it launders nothing; a
  row loaded as tampered (``skip`` mode below) is never re-tagged. Bulk statements bypass
  the flush, so they are checked as they run: a bulk INSERT must carry each row's tag
  (``tag_values``), and a bulk UPDATE may not set a tagged column (load the rows instead).
  Nor may a bulk UPDATE choose its rows by what they hold: its WHERE names them by id (rows
  loaded, so checked, before), unless ``withdrawing()`` says it only takes something away
  (spends every open token of an account), so that no row it matches is trusted. An UPDATE
  matching on a tagged column and acting on how many rows it changed is an unchecked read:
  a planted recovery code once passed as a second factor that way.
- **Reading.** Every row of a tagged table loaded as an object is checked. A tag that fails
  raises ``RowIntegrityFailure`` (409 in HTTP), and the refusal is audited: in the request's
  transaction when it goes on, after its rollback when it fails. A query run with
  ``skip_tampered()`` instead marks such rows and ``intact()`` leaves them out, for work that
  must go on past one bad row (a queue, a list of holders). Code that reads tagged columns
  without objects (the bearer check of every request, the key epochs a page read's and a
  send's row check reads) checks them with ``verify_columns``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TypeVar

from sqlalchemy import event, inspect
from sqlalchemy.orm import ORMExecuteState, QueryContext, Session
from sqlalchemy.sql import Executable, operators
from sqlalchemy.sql.elements import BinaryExpression, BooleanClauseList, ColumnClause

from access_control.row_tags import RowTagger
from medchat import audit
from medchat.db import Base
from medchat.errors import RowIntegrityFailure
from medchat.models.integrity import integrity_of

log = logging.getLogger("medchat.integrity")

TAGGER = "row_tagger"
_SKIP_OPTION = "medchat_skip_tampered"
_WITHDRAWING_OPTION = "medchat_withdrawing"
_TAMPERED = "medchat_tampered"
#: ``session.info`` key: the (table, id) pairs this session has audited a refusal of.
_REFUSED = "medchat_integrity_refused"
T = TypeVar("T", bound=Executable)


def _tagger(session: Session) -> RowTagger:
    tagger: RowTagger | None = session.info.get(TAGGER)
    if tagger is None:
        raise RuntimeError("this session has no row tagger (build it through the ServiceContext)")
    return tagger


def _columns(cls: type) -> tuple[str, ...] | None:
    spec = integrity_of(cls)
    return spec.columns if spec is not None and spec.kind == "tagged" else None


def _table(cls: type[Base]) -> str:
    name: str = cls.__tablename__
    return name


def tag_values(session: Session, model: type[Base], values: Mapping[str, Any]) -> bytes:
    """The tag of a row about to be written in bulk (``values`` has every tagged column)."""
    columns = _columns(model)
    if columns is None:
        raise ValueError(f"{_table(model)} is not a tagged table")
    return _tagger(session).tag(_table(model), [values[name] for name in columns])


def verify_columns(
    session: Session, model: type[Base], values: Mapping[str, Any], tag: bytes | None
) -> None:
    """Check a row read as columns; raise ``RowIntegrityFailure`` (and audit) if it fails."""
    columns = _columns(model)
    if columns is None:
        raise ValueError(f"{_table(model)} is not a tagged table")
    if not _tagger(session).verify(_table(model), [values[name] for name in columns], tag):
        _refuse(session, _table(model), values.get("id"))


def skip_tampered(statement: T) -> T:
    """Run ``statement`` marking tampered rows instead of refusing the whole query."""
    return statement.execution_options(**{_SKIP_OPTION: True})


def withdrawing(statement: T) -> T:
    """Mark a bulk UPDATE of a tagged table that only takes something away (spends or ends
    what it matches) and whose outcome decides nothing: it may match rows by other columns
    than their id. A row planted to be matched gains its writer nothing but a spent row."""
    return statement.execution_options(**{_WITHDRAWING_OPTION: True})


def is_tampered(row: object) -> bool:
    return bool(inspect(row).info.get(_TAMPERED))


def intact(
    session: Session, statement: Executable, params: dict[str, Any] | None = None
) -> list[Any]:
    """The objects ``statement`` selects with ``params``, less the tampered ones (refused and
    audited). The skip option goes with the call, so a statement built once is run as it is,
    not copied with the option at every call."""
    rows = list(session.scalars(statement, params, execution_options={_SKIP_OPTION: True}))
    kept = []
    for row in rows:
        if is_tampered(row):
            session.expunge(row)
        else:
            kept.append(row)
    return kept


def _refuse(session: Session, table: str, row_id: object, *, raise_: bool = True) -> None:
    log.error("refused a row of %s whose integrity tag does not verify: %s", table, row_id)
    seen: set[tuple[str, str]] = session.info.setdefault(_REFUSED, set())
    key = (table, str(row_id))
    if key not in seen:
        seen.add(key)
        fields: dict[str, Any] = {
            "target_type": table,
            "target_id": row_id,
            "outcome": "denied",
            "details": {"reason": "row_tag"},
        }
        audit.record(session, "integrity.row_refused", **fields)
        audit.record_on_rollback(session, "integrity.row_refused", **fields)
    if raise_:
        failure = RowIntegrityFailure()
        failure.table = table
        raise failure


def _skipping(context: QueryContext) -> bool:
    """The option set on the statement (``skip_tampered``) or passed to ``execute``."""
    on_statement = context.query._execution_options
    return bool(context.execution_options.get(_SKIP_OPTION) or on_statement.get(_SKIP_OPTION))


def _check_loaded(target: Any, context: QueryContext | None) -> None:
    columns = _columns(type(target))
    if columns is None:
        return
    state = inspect(target)
    loaded = state.dict
    if any(name not in loaded for name in columns) or "row_tag" not in loaded:
        return  # a partial load (never done for these tables) is checked when complete
    session = state.session
    if session is None or TAGGER not in session.info:
        return
    values = [loaded[name] for name in columns]
    if _tagger(session).verify(_table(type(target)), values, loaded["row_tag"]):
        return
    skip = context is not None and _skipping(context)
    state.info[_TAMPERED] = True
    _refuse(session, _table(type(target)), loaded.get("id"), raise_=not skip)


@event.listens_for(Base, "load", propagate=True)
def _on_load(target: Any, context: QueryContext) -> None:
    _check_loaded(target, context)


@event.listens_for(Base, "refresh", propagate=True)
def _on_refresh(target: Any, context: QueryContext, attrs: Iterable[str] | None) -> None:
    _check_loaded(target, context)


def _fill_defaults(row: Any, columns: Sequence[str]) -> None:
    """Python-side column defaults (``id=new_id``, ``version=1``) the INSERT would apply."""
    table = row.__table__
    for name in columns:
        if getattr(row, name) is not None:
            continue
        default = table.c[name].default
        if default is None or (not default.is_scalar and not default.is_callable):
            continue
        setattr(row, name, default.arg(None) if default.is_callable else default.arg)


@event.listens_for(Session, "before_flush")
def _tag_before_flush(session: Session, _context: Any, _instances: Any) -> None:
    if TAGGER not in session.info:
        return
    tagger = _tagger(session)
    for row in (*session.new, *session.dirty):
        columns = _columns(type(row))
        if columns is None:
            continue
        if is_tampered(row):
            raise RowIntegrityFailure
        _fill_defaults(row, columns)
        row.row_tag = tagger.tag(_table(type(row)), [getattr(row, name) for name in columns])


@event.listens_for(Session, "do_orm_execute")
def _check_bulk(state: ORMExecuteState) -> None:
    """Bulk writes bypass the flush: an INSERT brings its tags, an UPDATE leaves tags alone and
    names its rows by id (or is ``withdrawing``)."""
    if not (state.is_insert or state.is_update) or TAGGER not in state.session.info:
        return
    mapper = state.bind_mapper
    if mapper is None:
        return
    columns = _columns(mapper.class_)
    if columns is None:
        return
    if state.is_insert:
        parameters = state.parameters
        # One mapping of values per row (or none at all, refused below).
        rows: Sequence[Any] = parameters if isinstance(parameters, list) else [parameters]
        if not rows or any(not row or row.get("row_tag") is None for row in rows):
            raise RuntimeError(f"a bulk INSERT into {_table(mapper.class_)} must tag each row")
        return
    table = _table(mapper.class_)
    values = getattr(state.statement, "_values", None) or {}
    names = {getattr(key, "key", key) for key in values}
    if names & {*columns, "row_tag"}:
        raise RuntimeError(f"bulk UPDATE of tagged columns of {table}: load the rows instead")
    if state.execution_options.get(_WITHDRAWING_OPTION):
        return
    if not _names_rows_by_id(state.statement, mapper.local_table):
        raise RuntimeError(
            f"bulk UPDATE of {table} that does not name its rows by id: load them (checked) "
            "first, or mark it withdrawing()"
        )


def _names_rows_by_id(statement: Any, table: Any) -> bool:
    """Whether the WHERE clause, at its top level (an AND of criteria), holds ``id = ...`` or
    ``id IN (...)`` for ``table``'s own id: only then are the rows it changes rows the caller
    chose by identity rather than by content."""
    where = statement.whereclause
    if where is None:
        return False
    anded = isinstance(where, BooleanClauseList) and where.operator is operators.and_
    criteria = list(where.clauses) if anded else [where]
    return any(
        isinstance(criterion, BinaryExpression)
        and criterion.operator in (operators.eq, operators.in_op)
        and isinstance(criterion.left, ColumnClause)
        and criterion.left.table is table
        and criterion.left.name == "id"
        for criterion in criteria
    )
