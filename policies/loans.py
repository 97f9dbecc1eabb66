"""The loan register (客户资料外借登记册, Art 19-20).

An approved loan opens a register line (``Loans.open``) whose grant counts only
once the borrower confirms the line (Art 19.5); returning the material closes
the line and ends the grant for good (Art 20). Overdue is computed at ``now``,
never stored: a loan is overdue from its due time on, whether or not the sweep
has run.

The sweep tells the borrower and the keepers of the register (every enabled
information officer) when a loan falls due within a day, once, and when it is
overdue, then again each day it stays out (``loan_notices``). The time of each
notice is recorded on the line and claimed by one conditional UPDATE, so two
sweeps running at once tell everyone once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlmodel import Session, col, select

from audit.events import SYSTEM, Actor, AuditAction, AuditEvent
from policies.decision import Principal
from policies.desk import Desk, actor_of, fmt, new_uid
from policies.errors import NotFound, Refused
from policies.loading import next_revision
from policies.models import AccessGrant, AccessRequest, LoanEntry
from policies.notifications import REGISTER_KEEPERS, Notice
from policies.roles import Action, GrantState, LoanState, NotificationEvent, Role

DUE_NOTICE = timedelta(hours=24)  # told this long before the due time
OVERDUE_REPEAT = timedelta(hours=24)  # and again this often while overdue
_LOAN_T = LoanEntry.__table__  # type: ignore[attr-defined]


@dataclass
class LoanNotices:
    due: list[str] = field(default_factory=list)
    overdue: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class LoanView:
    """A loan register line with its status at ``now`` (overdue is computed, not stored)."""

    entry: LoanEntry
    status: LoanState


def loan_status(entry: LoanEntry, now: datetime) -> LoanState:
    if entry.state == LoanState.RETURNED:
        return LoanState.RETURNED
    return LoanState.OVERDUE if now >= entry.due_at else LoanState.OUT


class Loans:
    """Opens, confirms and closes register lines; lists the register."""

    def __init__(self, desk: Desk) -> None:
        self.desk = desk

    def open(
        self, session: Session, req: AccessRequest, grant: AccessGrant, now: datetime
    ) -> LoanEntry:
        """The register line of an approved loan, in the final signature's transaction."""
        assert req.id is not None and grant.id is not None  # both flushed by the caller
        loan = LoanEntry(
            uid=new_uid("L"),
            request_id=req.id,
            grant_id=grant.id,
            borrower=req.requester,
            archives=list(req.archives),
            material=req.material,
            copies=req.copies,
            reason=req.reason,
            start_at=now,
            due_at=grant.not_after,
            state=LoanState.OUT.value,
        )
        session.add(loan)
        session.flush()
        self.desk.event(
            session,
            AuditEvent(
                action=AuditAction.LOAN,
                actor=SYSTEM,
                archives=tuple(req.archives),
                groups=tuple(req.groups),
                grant_id=grant.uid,
                purpose=req.purpose,
                reason=req.reason,
                detail={
                    "loan": loan.uid,
                    "request": req.uid,
                    "borrower": req.requester,
                    "material": loan.material or None,
                    "copies": loan.copies,
                    "start": fmt(now),
                    "due": fmt(loan.due_at),
                },
            ),
        )
        return loan

    def _locked(self, session: Session, loan_uid: str) -> LoanEntry:
        loan = session.exec(
            select(LoanEntry).where(LoanEntry.uid == loan_uid).with_for_update()
        ).first()
        if loan is None:
            raise NotFound(f"no loan {loan_uid}")
        return loan

    def confirm(
        self,
        session: Session,
        loan_uid: str,
        borrower: Principal,
        *,
        now: datetime,
    ) -> LoanEntry:
        """The borrower confirms the register line (Art 19.5)."""
        loan = self._locked(session, loan_uid)
        if borrower.username != loan.borrower:
            raise Refused("only the borrower confirms a loan", rule="not-borrower")
        if loan.borrower_confirmed_at is not None:
            return loan
        loan.borrower_confirmed_at = now
        session.add(loan)
        # Only now does the loan's grant count (Art 19.5: the line is confirmed first).
        grant = session.get(AccessGrant, loan.grant_id, with_for_update=True)
        if grant is not None and grant.awaiting_confirmation:
            grant.awaiting_confirmation = False
            grant.rev = next_revision(session)
            session.add(grant)
        session.flush()
        self.desk.event(
            session,
            AuditEvent(
                action=AuditAction.LOAN,
                actor=actor_of(borrower),
                archives=tuple(loan.archives),
                detail={"loan": loan.uid, "op": "borrower-confirmed"},
            ),
        )
        self.desk.notifier.notify(
            session,
            loan.borrower,
            _notice(loan, NotificationEvent.LOAN_CONFIRMED),
            f"you confirmed loan {loan.uid}; due {fmt(loan.due_at)}",
            now,
        )
        return loan

    def close(
        self,
        session: Session,
        loan_uid: str,
        actor: Principal,
        *,
        now: datetime,
    ) -> LoanEntry:
        """Cancel the register line (Art 20): the grant ends now and for good."""
        loan = self._locked(session, loan_uid)
        if actor.username != loan.borrower and not self.desk.may(
            actor, Action.REGISTER_LOAN, {Role.INFORMATION_OFFICER}, now
        ):
            raise Refused(
                "a loan is returned by its borrower or registered by an information officer",
                rule="not-borrower",
            )
        if loan.state == LoanState.RETURNED:
            raise Refused(
                f"loan {loan.uid} was already returned at {fmt(loan.returned_at or now)}",
                rule="already-returned",
            )
        loan.state = LoanState.RETURNED.value
        loan.returned_at = now
        loan.returned_to = actor.username
        session.add(loan)
        grant = session.get(AccessGrant, loan.grant_id, with_for_update=True)
        if grant is not None and grant.state == GrantState.ACTIVE:
            grant.state = GrantState.RETURNED.value
            grant.ended_at = now
            grant.rev = next_revision(session)
            session.add(grant)
        session.flush()
        overdue = now > loan.due_at
        self.desk.event(
            session,
            AuditEvent(
                action=AuditAction.LOAN_RETURN,
                actor=actor_of(actor),
                archives=tuple(loan.archives),
                grant_id=grant.uid if grant else None,
                purpose=grant.purpose if grant else None,
                reason=loan.reason,
                detail={
                    "loan": loan.uid,
                    "borrower": loan.borrower,
                    "due": fmt(loan.due_at),
                    "returned": fmt(now),
                    "overdue": overdue,
                },
            ),
        )
        self.desk.notifier.notify(
            session,
            loan.borrower,
            _notice(loan, NotificationEvent.RETURNED),
            f"loan {loan.uid} returned{' late' if overdue else ''}; access ended",
            now,
        )
        return loan

    def recall(
        self, session: Session, borrower: str, *, by: Actor, case_uid: str, now: datetime
    ) -> list[str]:
        """Recall every open loan of ``borrower`` (a leak case's containment).

        The line stays open in the borrower's name (the material is still out and
        must come back, Art 20), but the loan is now due: ``due_at`` is brought
        forward to ``now``, so the register shows it overdue and the sweep keeps
        telling the borrower and the keepers each day until it is returned. Its
        grant is ended by the caller (``revocation.revoke_grants``). The audit
        entry keeps the due time it had; the keepers and the borrower are told now.
        """
        recalled: list[str] = []
        for loan in session.exec(
            select(LoanEntry)
            .where(LoanEntry.borrower == borrower, LoanEntry.state == LoanState.OUT)
            .order_by(col(LoanEntry.id))
            .with_for_update()
        ).all():
            was = loan.due_at
            loan.due_at = min(was, now)
            loan.overdue_notified_at = now
            session.add(loan)
            self.desk.event(
                session,
                AuditEvent(
                    action=AuditAction.LOAN,
                    actor=by,
                    archives=tuple(loan.archives),
                    detail={
                        "loan": loan.uid,
                        "op": "recalled",
                        "borrower": loan.borrower,
                        "case": case_uid,
                        "due_was": fmt(was),
                        "due": fmt(loan.due_at),
                    },
                ),
            )
            notice = _notice(loan, NotificationEvent.OVERDUE)
            self.desk.notifier.notify(
                session,
                loan.borrower,
                notice,
                f"loan {loan.uid} is recalled (leak case {case_uid}): return the material "
                "to an information officer now",
                now,
            )
            self.desk.notifier.notify_role(
                session,
                REGISTER_KEEPERS,
                notice,
                f"loan {loan.uid} by {loan.borrower} is recalled (leak case {case_uid}); "
                "its access ended: collect the material",
                now,
                exclude=[loan.borrower],
            )
            recalled.append(loan.uid)
        session.flush()
        return recalled

    def register(
        self,
        session: Session,
        *,
        now: datetime,
        open_only: bool = False,
        borrower: str | None = None,
    ) -> list[LoanView]:
        """The register's lines, newest first; only ``borrower``'s when named (in SQL:
        a borrower's page never loads the whole register)."""
        query = select(LoanEntry).order_by(col(LoanEntry.start_at).desc())
        if open_only:
            query = query.where(LoanEntry.state == LoanState.OUT)
        if borrower is not None:
            query = query.where(LoanEntry.borrower == borrower)
        return [LoanView(e, loan_status(e, now)) for e in session.exec(query).all()]


def loan_notices(desk: Desk, session: Session, now: datetime) -> LoanNotices:
    """Tell borrowers and register keepers of loans due within a day and overdue ones.

    Each notice is claimed first: ``UPDATE ... SET <notice>_at = now WHERE`` the
    notice is still owed; only the sweep whose UPDATE changed the row tells anyone.
    """
    out = LoanNotices()
    soon = session.exec(
        select(LoanEntry).where(
            LoanEntry.state == LoanState.OUT,
            LoanEntry.due_at > now,
            LoanEntry.due_at <= now + DUE_NOTICE,
            col(LoanEntry.due_notified_at).is_(None),
        )
    ).all()
    for loan in soon:
        owed = _LOAN_T.c.due_notified_at.is_(None)
        if _claim(session, loan, "due_notified_at", owed, now):
            _tell(desk, session, loan, NotificationEvent.LOAN_DUE, now)
            out.due.append(loan.uid)
    repeat = now - OVERDUE_REPEAT
    late = session.exec(
        select(LoanEntry).where(
            LoanEntry.state == LoanState.OUT,
            LoanEntry.due_at <= now,
            sa.or_(
                col(LoanEntry.overdue_notified_at).is_(None),
                col(LoanEntry.overdue_notified_at) <= repeat,
            ),
        )
    ).all()
    for loan in late:
        owed = sa.or_(
            _LOAN_T.c.overdue_notified_at.is_(None), _LOAN_T.c.overdue_notified_at <= repeat
        )
        if _claim(session, loan, "overdue_notified_at", owed, now):
            _tell(desk, session, loan, NotificationEvent.OVERDUE, now)
            out.overdue.append(loan.uid)
    return out


def _claim(
    session: Session, loan: LoanEntry, column: str, owed: sa.ColumnElement[bool], now: datetime
) -> bool:
    result = session.connection().execute(
        sa.update(_LOAN_T)
        .where(_LOAN_T.c.id == loan.id, _LOAN_T.c.state == LoanState.OUT.value, owed)
        .values({column: now})
    )
    if result.rowcount != 1:
        return False
    session.refresh(loan)
    return True


def _tell(
    desk: Desk, session: Session, loan: LoanEntry, event: NotificationEvent, now: datetime
) -> None:
    archives = ", ".join(loan.archives)
    notice = _notice(loan, event)
    if event == NotificationEvent.LOAN_DUE:
        mine = f"loan {loan.uid} of {archives} is due at {fmt(loan.due_at)}; return it by then"
        theirs = f"loan {loan.uid} of {archives} by {loan.borrower} is due at {fmt(loan.due_at)}"
    else:
        mine = (
            f"loan {loan.uid} of {archives} was due at {fmt(loan.due_at)}; "
            "return it to the information officer now"
        )
        theirs = (
            f"loan {loan.uid} of {archives} by {loan.borrower} was due at "
            f"{fmt(loan.due_at)} and is still out"
        )
    desk.notifier.notify(session, loan.borrower, notice, mine, now)
    desk.notifier.notify_role(
        session, REGISTER_KEEPERS, notice, theirs, now, exclude=[loan.borrower]
    )


def _notice(loan: LoanEntry, event: NotificationEvent) -> Notice:
    """A loan's notice: its line, archives, borrower and due time (never the material)."""
    return Notice(
        event.value,
        loan_uid=loan.uid,
        archives=tuple(loan.archives),
        about=loan.borrower,
        due_at=loan.due_at,
    )
