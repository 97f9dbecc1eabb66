"""Cases raised by detection: one per rule, account and window, saved before anyone is told.

``raise_once`` inserts the window's key first (``detection_key``, primary key,
``INSERT … ON CONFLICT DO NOTHING``): the insert that wins creates the case,
and any other, in whichever worker and however concurrent, finds the key taken
and gets the existing case. So a rule evaluated every minute, or a decoy read
ten times in a burst, never becomes a storm of cases. The handlers are told by
``tell``, in a transaction of its own after the case committed: a notice never
names a case that is not saved.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import Session, select

from audit.events import Actor
from policies.detection_models import DetectionKey
from policies.leak_models import LeakCase
from policies.leaks import MAX_ARCHIVES, SYSTEM, LeakCases
from policies.roles import NotificationEvent

DETECTOR = Actor(SYSTEM, "detection")
_KEY_T: sa.Table = DetectionKey.__table__  # type: ignore[attr-defined]


def _insert(session: Session) -> Any:
    dialect = session.get_bind().dialect.name
    return pg_insert(_KEY_T) if dialect == "postgresql" else sqlite_insert(_KEY_T)


class Alerts:
    """Raising detection cases without duplicates, and telling the handlers afterwards."""

    def __init__(self, leaks: LeakCases) -> None:
        self.leaks = leaks

    def raise_once(
        self,
        session: Session,
        *,
        key: str,
        rule: str,
        account: str,
        archives: Sequence[str],
        facts: dict[str, Any],
        now: datetime,
    ) -> tuple[LeakCase, bool]:
        """The case of ``key``: a new one (True), or the one raised before (False)."""
        # RETURNING gives a row only to the insert that won (psycopg's rowcount is -1).
        insert = (
            _insert(session)
            .values(key=key[:200], case_uid="", created_at=now)
            .on_conflict_do_nothing()
            .returning(_KEY_T.c.key)
        )
        won = session.connection().execute(insert).first()
        if won is None:
            uid = session.exec(select(DetectionKey.case_uid).where(DetectionKey.key == key)).one()
            case = session.exec(select(LeakCase).where(LeakCase.uid == uid)).one()
            return case, False
        numbers = list(dict.fromkeys(archives))
        if len(numbers) > MAX_ARCHIVES:
            facts = facts | {"archives_listed": MAX_ARCHIVES}
        case = self.leaks.raise_case(
            session,
            rule=rule,
            now=now,
            account=account,
            archives=numbers[:MAX_ARCHIVES],
            facts=facts,
            notify=False,
        )
        session.connection().execute(
            sa.update(_KEY_T).where(_KEY_T.c.key == key[:200]).values(case_uid=case.uid)
        )
        return case, True

    def tell(self, session: Session, case_uid: str, now: datetime) -> list[str]:
        """Both handlers, about a case that has committed (Art 27: at once)."""
        case = session.exec(select(LeakCase).where(LeakCase.uid == case_uid)).one()
        return self.leaks.tell_handlers(session, case, NotificationEvent.LEAK_REPORTED, now)

    def note(self, session: Session, case_uid: str, now: datetime, detail: dict[str, Any]) -> None:
        """A detection event on an existing case (a further hit, a notice withheld)."""
        case = session.exec(select(LeakCase).where(LeakCase.uid == case_uid)).one()
        self.leaks.record(session, case, DETECTOR, now, kind="detection", detail=detail)
