"""The notification duties of a leak case (PIPL Art 57): one row per case.

Whether customers' personal information was affected, how many customers,
which field groups and which archives (numbers only), what caused it (a fixed
category, never typed text), when the handlers became aware, the two legal
deadlines that run from then, and when the regulator and the individuals were
notified. Every change is also an event on the case (``leak_case_event``) and
an audit entry; the row holds the current state, so lists can put overdue cases
first in one indexed query.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm.attributes import set_committed_value
from sqlmodel import Column, Field, Session, SQLModel

from vault.models import UTCDateTime


def _ts(**kw: Any) -> Any:
    return Field(sa_column=Column(UTCDateTime(), **kw))


class LeakDuty(SQLModel, table=True):
    """What a leak case owes the regulator and the people whose information leaked."""

    __tablename__ = "leak_duty"

    id: int | None = Field(default=None, primary_key=True)
    case_id: int = Field(foreign_key="leak_case.id", unique=True)
    pi_affected: bool = False
    customers: int = 0
    groups: list[str] = Field(default_factory=list, sa_column=Column(sa.JSON, nullable=False))
    archives: list[str] = Field(default_factory=list, sa_column=Column(sa.JSON, nullable=False))
    cause: str = Field(default="under_investigation", max_length=32)
    # When the handlers became aware that personal information was affected: the
    # clocks run from here, and it never moves later (a clock is never restarted).
    aware_at: datetime | None = _ts(nullable=True)
    regulator_due_at: datetime | None = _ts(nullable=True, index=True)
    individuals_due_at: datetime | None = _ts(nullable=True, index=True)
    regulator_notified_at: datetime | None = _ts(nullable=True)
    individuals_notified_at: datetime | None = _ts(nullable=True)
    updated_at: datetime = _ts(nullable=False)
    updated_by: str = Field(max_length=64)


_D = LeakDuty.__table__.c  # type: ignore[attr-defined]


def _owed(due: sa.ColumnElement[Any], told: sa.ColumnElement[Any]) -> sa.ColumnElement[bool]:
    return sa.and_(_D.pi_affected.is_(True), due.is_not(None), told.is_(None))


def overdue_clause(now: datetime) -> sa.ColumnElement[bool]:
    """A notice owed past its deadline (on an outer join, a case without duties is not)."""
    return sa.or_(
        sa.and_(_owed(_D.regulator_due_at, _D.regulator_notified_at), _D.regulator_due_at <= now),
        sa.and_(
            _owed(_D.individuals_due_at, _D.individuals_notified_at), _D.individuals_due_at <= now
        ),
    )


def duty_order(now: datetime) -> tuple[sa.ColumnElement[Any], ...]:
    """Overdue cases first, then cases with a deadline running, each by the earliest
    deadline still owed; then the rest (the caller's order follows)."""
    reg = _owed(_D.regulator_due_at, _D.regulator_notified_at)
    ind = _owed(_D.individuals_due_at, _D.individuals_notified_at)
    next_due = sa.case(
        (
            sa.and_(reg, sa.or_(sa.not_(ind), _D.regulator_due_at <= _D.individuals_due_at)),
            _D.regulator_due_at,
        ),
        (ind, _D.individuals_due_at),
        else_=sa.null(),
    )
    rank = sa.case((overdue_clause(now), 0), (sa.or_(reg, ind), 1), else_=2)
    return rank, next_due.asc()


NOTICE_COLUMNS = {
    "regulator_told": "regulator_notified_at",
    "customers_told": "individuals_notified_at",
}


def stamp_notice(session: Session, case: Any, action: str, at: datetime) -> bool:
    """Stamp the first notice of its kind on a case's duties (one conditional UPDATE,
    so two handlers recording at once stamp it once); whether this one was first."""
    column = NOTICE_COLUMNS[action]
    table = LeakDuty.__table__  # type: ignore[attr-defined]
    result = session.connection().execute(
        sa.update(table)
        .where(table.c.case_id == case.id, table.c[column].is_(None))
        .values({column: at})
    )
    for duty in session.identity_map.values():  # keep a loaded row in step
        if isinstance(duty, LeakDuty) and duty.case_id == case.id and result.rowcount == 1:
            set_committed_value(duty, column, at)
    return bool(result.rowcount == 1)
