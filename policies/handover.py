"""A leaver's handover (篇七) as a request: one person starts it, another finishes it.

An administrator (who disables the leaver) or the leaver's department head files
a ``handover`` request naming the successor; the leaver's department head or an
information officer, never the filer, signs it, and the signature moves every
archive, contact listing and open loan of the leaver to the successor, revokes
the leaver's other grants, withdraws their pending requests and disables them
(``Workflow.apply_handover``), in that one transaction. The successor is an
enabled salesperson of the leaver's department, never a visitor and never an
account that holds or held ``admin``: checked when filed and again when applied.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlmodel import Session, select

from audit.events import AuditAction
from policies.changes import audits_refusals, check_reader, file_change, stale
from policies.decide import Principal
from policies.errors import InvalidInput, NotFound, Refused
from policies.models import AccessRequest
from policies.roles import Action, RequestKind, Role
from vault.models import Archive, ArchiveStatus, User

if TYPE_CHECKING:
    from policies.workflow import Workflow


@audits_refusals(AuditAction.REASSIGN, who="actor")
def file_handover(
    wf: Workflow,
    session: Session,
    *,
    from_user: str,
    to_user: str,
    actor: Principal,
    now: datetime,
    reason: str = "",
) -> AccessRequest:
    leaver = session.exec(select(User).where(User.username == from_user)).first()
    if leaver is None:
        raise NotFound(f"no user {from_user!r}")
    if from_user == to_user:
        raise InvalidInput("hand over to someone else")
    allowed = {Role.DEPARTMENT_HEAD, Role.ADMIN} & actor.roles
    if not allowed or not wf._may(actor, Action.HANDOVER, allowed, now):
        raise Refused(
            "a handover is started by the leaver's department head or an administrator "
            "and signed by another person",
            rule="wrong-role",
        )
    if Role.ADMIN not in allowed and actor.department != leaver.department:
        raise Refused(
            "a department head hands over only their own department's staff",
            rule="wrong-department",
        )
    if actor.username == from_user:
        raise Refused("nobody hands over their own clients", rule="self-approval")
    check_reader(session, to_user, department=leaver.department, what="the successor")
    archives = sorted(
        session.exec(
            select(Archive.archive_no).where(
                Archive.owner == from_user, Archive.status == ArchiveStatus.ACTIVE
            )
        ).all()
    )
    change = {
        "from": from_user,
        "to": to_user,
        "department": leaver.department,
        "archives": archives,
        "subjects": [to_user],
    }
    return file_change(
        wf,
        session,
        actor,
        kind=RequestKind.HANDOVER,
        change=change,
        reason=reason or f"staff change: {from_user} leaves; {to_user} takes over (篇七)",
        now=now,
    )


def apply_handover(
    wf: Workflow, session: Session, req: AccessRequest, approver: Principal, now: datetime
) -> dict[str, Any]:
    change = req.change or {}
    leaver = session.exec(select(User).where(User.username == change["from"])).first()
    if leaver is None or leaver.department != change["department"]:
        raise stale(req, f"the account {change['from']}")
    check_reader(session, change["to"], department=leaver.department, what="the successor")
    result = wf.apply_handover(
        session, from_user=change["from"], to_user=change["to"], actor=approver, now=now
    )
    return asdict(result)
