"""Decoy archives: set up by the information supervisor, touched by no legitimate work.

A decoy is an ordinary archive (filed the ordinary way, with made-up content)
that the information supervisor marks here. Nothing an ordinary user sees says
so: the mark lives only in ``decoy_archive``, which only this module and the
supervisor's route read; the customer list, the search answer, the read answer
and the read's own audit entry are exactly those of any other archive. Any
read (allowed or refused), search hit or export of one raises a case at once,
in the request that touched it:

* the check is inline and cheap: the numbers of every decoy are held in memory
  and caught up by revision, as grants are (``policies.loading``): marking one
  bumps the ``decoys`` counter row in its own transaction, and each read reads
  that one counter in its own transaction and reloads the set only when it
  moved. So a decoy marked in another worker counts at the next read, and an
  ordinary read pays one indexed one-row SELECT;
* the case is saved (committed) first, one per decoy, account and clock hour
  (``Alerts.raise_once``); a further touch in that hour is recorded on it;
* then, in a transaction of its own, the handlers are told, at most once per
  decoy per ``notify_every_minutes``: one conditional UPDATE of the decoy's
  ``notified_at`` decides, atomically in the database, which touch tells them;
  the others are recorded on their case as a notice withheld.

If saving the case fails, the read fails with it and no content is returned;
the minute's sweep (``policies.detection``) finds decoy touches in the audit
log too, so a touch whose case was lost to a crash is still raised.

Service accounts on the allow-list are not exempt: no legitimate work, a
service's included, touches a decoy.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from audit.events import Actor, AuditAction, AuditEvent, Outcome
from foundation.clock import utcnow
from foundation.db import transaction
from foundation.rawsql import Raw
from policies.decision import Principal
from policies.desk import Desk
from policies.detection_cases import Alerts
from policies.detection_models import DecoyArchive
from policies.detection_rules import DetectionRules
from policies.errors import InvalidInput, NotFound, Refused
from policies.models import PolicyCounter
from policies.roles import Action, Role
from vault.models import Archive, ArchiveStatus
from vault.records import ARCHIVE_NO

COUNTER = "decoys"
RULE = "decoy"
_COUNTER_T: sa.Table = PolicyCounter.__table__  # type: ignore[attr-defined]
_DECOY_T: sa.Table = DecoyArchive.__table__  # type: ignore[attr-defined]
_REVISION = Raw(sa.select(_COUNTER_T.c.value).where(_COUNTER_T.c.name == COUNTER))
_NUMBERS = Raw(sa.select(_DECOY_T.c.archive_no))


def hour_window(moment: datetime, rules: DetectionRules) -> tuple[str, datetime, datetime]:
    """The local clock hour ``moment`` falls in: its key text, start and end."""
    start = moment.astimezone(rules.zone).replace(minute=0, second=0, microsecond=0)
    return start.strftime("%Y-%m-%dT%H"), start, start + timedelta(hours=1)


class Decoys:
    """The decoy marks, the in-memory set the read paths check, and the alert they raise."""

    def __init__(
        self,
        *,
        engine: Engine,
        desk: Desk,
        alerts: Alerts,
        rules: DetectionRules,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.engine = engine
        self.desk = desk
        self.alerts = alerts
        self.rules = rules
        self.clock = clock
        self._lock = threading.Lock()
        self._rev = -1
        self._numbers: frozenset[str] = frozenset()

    # --- the inline check ---------------------------------------------------------
    def current(self, tx: Any, *, latest: int | None = None) -> frozenset[str]:
        """Every decoy's number, caught up on the caller's transaction.

        ``latest`` is the ``decoys`` counter when the caller has just read it there.
        """
        if latest is None:
            latest = int(_REVISION.scalar(tx) or 0)
        if latest != self._rev:
            numbers = frozenset(n for (n,) in _NUMBERS.all(tx))
            with self._lock:
                if latest > self._rev:
                    self._numbers, self._rev = numbers, latest
            return numbers
        return self._numbers

    def among(self, tx: Any, numbers: Iterable[str], *, latest: int | None = None) -> list[str]:
        """Which of ``numbers`` are decoys (the caller's transaction sees the marks)."""
        decoys = self.current(tx, latest=latest)
        return [n for n in dict.fromkeys(numbers) if n in decoys] if decoys else []

    def touched(self, account: str, decoys: Iterable[str], *, how: str, outcome: str) -> list[str]:
        """Raise (or add to) the case of each touched decoy, then tell the handlers.

        Two transactions per decoy: the case commits before any notice is written.
        Returns the case numbers. Raises if a case cannot be saved (fail closed:
        the caller returns nothing of what it read).
        """
        now = self.clock()
        hour, start, end = hour_window(now, self.rules)
        uids: list[str] = []
        for number in dict.fromkeys(decoys):
            hit = {"decoy": number, "how": how, "outcome": outcome, "at": now.isoformat()}
            with transaction(self.engine) as session:
                case, new = self.alerts.raise_once(
                    session,
                    key=f"{RULE}:{number}:{account}:{hour}",
                    rule=RULE,
                    account=account,
                    archives=[number],
                    facts=hit | {"window": {"from": start.isoformat(), "to": end.isoformat()}},
                    now=now,
                )
                if not new:
                    self.alerts.note(session, case.uid, now, {"hit": hit})
                uid = case.uid
            with transaction(self.engine) as session:
                self.tell(session, number, uid, now)
            uids.append(uid)
        return uids

    def tell(self, session: Session, number: str, case_uid: str, now: datetime) -> bool:
        """Tell the handlers unless this decoy was notified within the limit (atomic)."""
        every = timedelta(minutes=self.rules.decoys.notify_every_minutes)
        won = session.connection().execute(
            sa.update(_DECOY_T)
            .where(
                _DECOY_T.c.archive_no == number,
                sa.or_(_DECOY_T.c.notified_at.is_(None), _DECOY_T.c.notified_at <= now - every),
            )
            .values(notified_at=now)
        )
        if won.rowcount == 1:
            self.alerts.tell(session, case_uid, now)
            return True
        self.alerts.note(
            session,
            case_uid,
            now,
            {
                "notice": "withheld",
                "decoy": number,
                "every_minutes": self.rules.decoys.notify_every_minutes,
            },
        )
        return False

    # --- the supervisor's marks -----------------------------------------------------
    def _require(
        self,
        principal: Principal,
        actor: Actor,
        now: datetime,
        number: str,
        action: AuditAction = AuditAction.DECOY_MARK,
    ) -> None:
        if not self.desk.may(principal, Action.MANAGE_DECOYS, {Role.INFO_SUPERVISOR}, now):
            raise Refused(
                "only the information supervisor sets up decoy archives",
                rule="manage_decoys",
                event=AuditEvent(
                    action=action,
                    actor=actor,
                    outcome=Outcome.DENIED,
                    detail={"archive": number} if number else {},
                ),
            )

    def mark(
        self, session: Session, principal: Principal, actor: Actor, number: str, now: datetime
    ) -> DecoyArchive:
        """Mark an existing archive as a decoy (audited; the revision tells every process)."""
        self._require(principal, actor, now, number if ARCHIVE_NO.fullmatch(number) else "")
        if not ARCHIVE_NO.fullmatch(number):
            raise InvalidInput("not an archive number (KH-YYYY-NNNNNN)")
        status = session.exec(select(Archive.status).where(Archive.archive_no == number)).first()
        if status is None or status == ArchiveStatus.DESTROYED:
            raise NotFound(f"no archive {number}")
        if session.get(DecoyArchive, number) is not None:
            raise InvalidInput(f"archive {number} is a decoy already")
        decoy = DecoyArchive(
            archive_no=number, marked_by=principal.username, marked_at=now, rev=self._bump(session)
        )
        session.add(decoy)
        self.desk.event(
            session,
            AuditEvent(action=AuditAction.DECOY_MARK, actor=actor, archives=(number,)),
        )
        return decoy

    def listing(
        self, session: Session, principal: Principal, actor: Actor, now: datetime
    ) -> list[DecoyArchive]:
        """Every decoy, for the information supervisor only."""
        self._require(principal, actor, now, "", AuditAction.DECOY_LIST)
        self.desk.event(session, AuditEvent(action=AuditAction.DECOY_LIST, actor=actor))
        return list(session.exec(select(DecoyArchive).order_by(col(DecoyArchive.marked_at))))

    @staticmethod
    def _bump(session: Session) -> int:
        dialect = session.get_bind().dialect.name
        ins = pg_insert(_COUNTER_T) if dialect == "postgresql" else sqlite_insert(_COUNTER_T)
        conn = session.connection()
        conn.execute(ins.values(name=COUNTER, value=0).on_conflict_do_nothing())
        return int(
            conn.execute(
                sa.update(_COUNTER_T)
                .where(_COUNTER_T.c.name == COUNTER)
                .values(value=_COUNTER_T.c.value + 1)
                .returning(_COUNTER_T.c.value)
            ).scalar_one()
        )
