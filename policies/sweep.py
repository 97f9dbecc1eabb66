"""The sweep: what time alone ends, recorded (idempotent, safe in every worker).

Undecided requests expire at their deadline, grants at the end of their window,
and borrowers and register keepers are told of loans falling due within a day
(once) and of overdue ones (each day they stay out; ``policies.loans``). Decisions
never wait for this: a grant stops counting at the instant its window ends
(``policies.grants``); the sweep records that it ended, tells its holder, and
frees the engine's memory. Web-session rows that can never be used again
(``policies.revocation.purge_web_sessions``) are deleted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlmodel import Session, select

from audit.events import SYSTEM, AuditAction, AuditEvent
from policies.desk import Desk, fmt
from policies.loading import next_revision
from policies.loans import loan_notices
from policies.models import AccessGrant, AccessRequest
from policies.revocation import purge_web_sessions
from policies.roles import GrantState, NotificationEvent, RequestState


@dataclass
class SweepResult:
    expired_requests: list[str] = field(default_factory=list)
    expired_grants: list[str] = field(default_factory=list)
    overdue_loans: list[str] = field(default_factory=list)
    due_loans: list[str] = field(default_factory=list)
    purged_web_sessions: int = 0


class Sweeper:
    """Expires requests and grants, tells of loans due and overdue, drops dead sessions."""

    def __init__(self, desk: Desk) -> None:
        self.desk = desk

    def sweep(self, session: Session, *, now: datetime) -> SweepResult:
        """Expire undecided requests and ended grants, tell of due loans (idempotent)."""
        result = SweepResult()
        pending = session.exec(
            select(AccessRequest)
            .where(AccessRequest.state == RequestState.PENDING, AccessRequest.expires_at <= now)
            .with_for_update(skip_locked=True)
        ).all()
        for req in pending:
            req.state = RequestState.EXPIRED.value
            req.decided_at = req.expires_at
            req.version += 1
            session.add(req)
            self.desk.event(
                session,
                AuditEvent(
                    action=AuditAction.REQUEST_EXPIRE,
                    actor=SYSTEM,
                    archives=tuple(req.archives),
                    purpose=req.purpose,
                    reason=req.reason,
                    detail={
                        "request": req.uid,
                        "kind": req.kind,
                        "what": "request",
                        "expired_at": fmt(req.expires_at),
                    },
                ),
            )
            self.desk.notify(
                session,
                req.requester,
                req.uid,
                NotificationEvent.EXPIRED,
                f"request {req.uid} expired at {fmt(req.expires_at)} without a "
                "decision; file a new one if you still need access",
                now,
            )
            result.expired_requests.append(req.uid)
        grants = session.exec(
            select(AccessGrant)
            .where(AccessGrant.state == GrantState.ACTIVE, AccessGrant.not_after <= now)
            .with_for_update(skip_locked=True)
        ).all()
        for grant in grants:
            grant.state = GrantState.EXPIRED.value
            grant.ended_at = grant.not_after
            grant.rev = next_revision(session)
            session.add(grant)
            self.desk.event(
                session,
                AuditEvent(
                    action=AuditAction.REQUEST_EXPIRE,
                    actor=SYSTEM,
                    archives=tuple(grant.archives),
                    groups=tuple(grant.groups),
                    grant_id=grant.uid,
                    purpose=grant.purpose,
                    reason=grant.reason,
                    detail={
                        "request": grant.request_uid,
                        "what": "grant",
                        "expired_at": fmt(grant.not_after),
                    },
                ),
            )
            self.desk.notify(
                session,
                grant.subject,
                grant.request_uid,
                NotificationEvent.GRANT_EXPIRED,
                f"grant {grant.uid} ended at {fmt(grant.not_after)}",
                now,
            )
            result.expired_grants.append(grant.uid)
        notices = loan_notices(self.desk, session, now)
        result.due_loans, result.overdue_loans = notices.due, notices.overdue
        result.purged_web_sessions = purge_web_sessions(session, now)
        session.flush()
        if self.desk.engine is not None:
            self.desk.engine.sweep(now)
        return result
