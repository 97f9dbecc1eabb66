"""Which access requests and loan-register lines a caller may know exist.

An id the caller may not see is answered exactly as an id that does not exist:
the same ``NotFound`` with the same message, so request and loan ids cannot be
probed for existence, or for who is asking for what. Callers check visibility
first and only then load the row to act on it; an attempt to act on an id that
is hidden or unknown is audited as a denied attempt, identically for both.

Who sees a request: its requester, whoever signed one of its stages, whoever
may sign its next stage now (their queue), and compliance. Who sees a loan
line: its borrower and the keepers of the loan register.
"""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session, col, select

from audit.events import Actor, AuditAction, AuditEvent, Outcome
from policies.decision import Principal
from policies.desk import load_request
from policies.errors import NotFound
from policies.models import AccessRequest, LoanEntry, Notification, RequestSignature
from policies.roles import RequestState, Role
from policies.signing import Signing

LOAN_REGISTER_READERS = frozenset(
    {Role.INFORMATION_OFFICER, Role.INFO_SUPERVISOR, Role.CS_MANAGER, Role.COMPLIANCE}
)


def visible_request(
    session: Session,
    signing: Signing,
    principal: Principal,
    uid: str,
    *,
    now: datetime,
    attempt: AuditAction | None = None,
) -> AccessRequest:
    """The request if ``principal`` may see it; otherwise the NotFound an unknown id gets.

    ``attempt`` names the step being tried (approve, deny, withdraw), recorded
    as denied when the id is hidden or unknown.
    """
    req = session.exec(select(AccessRequest).where(AccessRequest.uid == uid)).first()
    if req is None or not _may_see(session, signing, principal, req, now):
        raise NotFound(
            f"no request {uid} that you filed or may sign",
            event=_hidden(principal, attempt, "request", uid),
        )
    return req


def _may_see(
    session: Session, signing: Signing, principal: Principal, req: AccessRequest, now: datetime
) -> bool:
    if req.requester == principal.username or Role.COMPLIANCE in principal.roles:
        return True
    signed = session.exec(
        select(RequestSignature.id).where(
            RequestSignature.request_id == req.id, RequestSignature.signer == principal.username
        )
    ).first()
    if signed is not None:
        return True
    if req.state != RequestState.PENDING:
        return False
    return any(r.id == req.id for r in signing.queue_for(session, principal, now=now))


def visible_loan(
    session: Session, principal: Principal, uid: str, *, attempt: AuditAction | None = None
) -> LoanEntry:
    """The loan line if ``principal`` borrowed it or keeps the register; else NotFound."""
    loan = session.exec(select(LoanEntry).where(LoanEntry.uid == uid)).first()
    if loan is None or (
        loan.borrower != principal.username and not (LOAN_REGISTER_READERS & principal.roles)
    ):
        raise NotFound(
            f"no loan {uid} that you borrowed or keep the register of",
            event=_hidden(principal, attempt, "loan", uid),
        )
    return loan


def _hidden(
    principal: Principal, attempt: AuditAction | None, what: str, uid: str
) -> AuditEvent | None:
    if attempt is None:
        return None
    return AuditEvent(
        action=attempt,
        actor=Actor(principal.username, principal.role_label),
        outcome=Outcome.DENIED,
        reason=f"no {what} {uid} that this user may see",
        detail={what: uid, "rule": "unknown-or-hidden"},
    )


# -- what a caller's own pages list ------------------------------------------------------


def requests_for(session: Session, username: str) -> list[AccessRequest]:
    """The requests ``username`` filed, newest first."""
    return list(
        session.exec(
            select(AccessRequest)
            .where(AccessRequest.requester == username)
            .order_by(col(AccessRequest.created_at).desc())
        ).all()
    )


def notifications_for(session: Session, username: str) -> list[Notification]:
    return list(
        session.exec(
            select(Notification)
            .where(Notification.recipient == username)
            .order_by(col(Notification.id))
        ).all()
    )


def signatures(session: Session, request_uid: str) -> list[RequestSignature]:
    """The signatures of a request, stage by stage (check visibility first)."""
    req = load_request(session, request_uid, lock=False)
    return list(
        session.exec(
            select(RequestSignature)
            .where(RequestSignature.request_id == req.id)
            .order_by(col(RequestSignature.stage_index))
        ).all()
    )
