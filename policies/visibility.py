"""Which access requests and loan-register lines a caller may know exist.

An id the caller may not see is answered exactly as an id that does not exist:
the same ``NotFound`` with the same message, so request and loan ids cannot be
probed for existence, or for who is asking for what. Callers check visibility
first and only then load the row to act on it; an attempt to act on an id that
is hidden or unknown is audited as a denied attempt, identically for both.

Who sees a request: its requester, whoever signed one of its stages, whoever
may sign its next stage now (their queue), compliance and the information
supervisor (who answers for the register of requests and may search it), and for
a change of a report's items the customer-service manager, with whose department
Art 11 has that change recorded (they are told when it is filed). Who
sees a loan line: its borrower and the keepers of the loan register.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Session, col, func, select

from audit.events import Actor, AuditAction, AuditEvent, Outcome
from policies.decision import Principal
from policies.desk import load_request
from policies.errors import NotFound
from policies.models import AccessRequest, LoanEntry, Notification, RequestSignature
from policies.roles import RequestKind, RequestState, Role
from policies.signing import Signing

LOAN_REGISTER_READERS = frozenset(
    {Role.INFORMATION_OFFICER, Role.INFO_SUPERVISOR, Role.CS_MANAGER, Role.COMPLIANCE}
)
# Who sees every request and may search them all.
REQUEST_READERS = frozenset({Role.COMPLIANCE, Role.INFO_SUPERVISOR})


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
    if req.requester == principal.username or REQUEST_READERS & principal.roles:
        return True
    if req.kind == RequestKind.REPORT_ITEMS and Role.CS_MANAGER in principal.roles:
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


def requests_page(
    session: Session, username: str, *, state: str | None, offset: int, limit: int
) -> tuple[list[AccessRequest], int]:
    """One page of the requests ``username`` filed (of one state if given), newest
    first, and how many there are: paged by the database, however many a long-serving
    salesperson has filed."""
    mine = [AccessRequest.requester == username]
    if state is not None:
        mine.append(AccessRequest.state == state)
    total = int(session.exec(select(func.count()).select_from(AccessRequest).where(*mine)).one())
    items = session.exec(
        select(AccessRequest)
        .where(*mine)
        .order_by(col(AccessRequest.created_at).desc(), col(AccessRequest.id).desc())
        .offset(offset)
        .limit(limit)
    ).all()
    return list(items), total


def newest_notifications(session: Session, username: str, count: int) -> list[Notification]:
    """The ``count`` newest notifications of ``username``, oldest of them first."""
    rows = session.exec(
        select(Notification)
        .where(Notification.recipient == username)
        .order_by(col(Notification.id).desc())
        .limit(count)
    ).all()
    return list(reversed(rows))


def request_levels(
    session: Session, username: str, request_ids: Iterable[int | None]
) -> dict[int, str]:
    """The classification of each of ``username``'s own requests among ``request_ids``."""
    ids = sorted({i for i in request_ids if i is not None})
    if not ids:
        return {}
    rows = session.exec(
        select(AccessRequest.id, AccessRequest.classification).where(
            AccessRequest.requester == username, col(AccessRequest.id).in_(ids)
        )
    ).all()
    return {int(i): str(level) for i, level in rows if i is not None and level is not None}


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


# -- the register of requests, for those who answer for it -----------------------------


@dataclass(frozen=True, slots=True)
class RequestQuery:
    """Filters over every request (checked by the caller); ``since``/``until`` bound
    ``created_at``, ``since`` inclusive and ``until`` exclusive."""

    state: str | None = None
    kind: str | None = None
    requester: str | None = None
    archive: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    offset: int = 0
    limit: int = 50

    def filters(self) -> dict[str, str]:
        """The filters used, as identifiers for the audit entry of the search."""
        given = {
            "state": self.state,
            "kind": self.kind,
            "requester": self.requester,
            "archive": self.archive,
            "from": self.since.isoformat() if self.since else None,
            "to": self.until.isoformat() if self.until else None,
        }
        return {k: v for k, v in given.items() if v is not None}


def like_literal(text: str) -> str:
    """``text`` matched literally by LIKE ... ESCAPE '\\'."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def search_requests(session: Session, query: RequestQuery) -> tuple[list[AccessRequest], int]:
    """One page of requests, newest first, and how many match in all."""
    where: list[sa.ColumnElement[bool]] = []
    if query.state is not None:
        where.append(col(AccessRequest.state) == query.state)
    if query.kind is not None:
        where.append(col(AccessRequest.kind) == query.kind)
    if query.requester is not None:
        where.append(col(AccessRequest.requester) == query.requester)
    if query.archive is not None:
        # The archive list is a JSON array of strings: match the quoted number in its
        # text, the same on SQLite and PostgreSQL.
        where.append(
            sa.cast(col(AccessRequest.archives), sa.Text).like(
                f'%"{like_literal(query.archive)}"%', escape="\\"
            )
        )
    if query.since is not None:
        where.append(col(AccessRequest.created_at) >= query.since)
    if query.until is not None:
        where.append(col(AccessRequest.created_at) < query.until)
    total = session.exec(select(func.count()).select_from(AccessRequest).where(*where)).one()
    items = session.exec(
        select(AccessRequest)
        .where(*where)
        .order_by(col(AccessRequest.created_at).desc(), col(AccessRequest.id).desc())
        .offset(query.offset)
        .limit(query.limit)
    ).all()
    return list(items), int(total)
