"""Changing the items of an approved statistical report (Art 11).

Art 11: "if individual items of the customer-information statistical report need
changing, report to the general manager for approval, filed with the
customer-service department; no further approval procedure is needed". So a
change of items is a ``report_items`` request (``chains.toml``): the holder of the
report grant files it with a reason, the general manager alone signs it (the
information supervisor when the general manager filed it: nobody signs their own
request), and the customer-service manager is told when it is filed and when it is
applied, which is where Art 11 has it recorded. The final signature changes the
grant's items in the same transaction, after checking the grant is still active
and still has the items the request saw. Departments never change this way: a
wider report is a new report request through the whole Art 10 chain.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlmodel import Session, col, select

from audit.events import AuditAction, AuditEvent
from policies.changes import actor_of, audits_refusals, file_change, stale
from policies.decision import Principal
from policies.desk import Desk
from policies.errors import InvalidInput
from policies.models import AccessGrant, AccessRequest
from policies.reports import active_report_grant, check_items, reach
from policies.roles import GrantState, NotificationEvent, RequestKind, Role
from vault.models import User, UserRole


def _cs_managers(session: Session) -> list[str]:
    return sorted(
        session.exec(
            select(User.username)
            .join(UserRole, col(UserRole.user_id) == col(User.id))
            .where(UserRole.role == Role.CS_MANAGER.value, User.disabled == False)  # noqa: E712
        ).all()
    )


def _tell_customer_service(
    desk: Desk, session: Session, req: AccessRequest, message: str, now: datetime
) -> None:
    """Art 11's "filed with the customer-service department": its manager hears of it."""
    for name in _cs_managers(session):
        if name != req.requester:
            desk.notify(session, name, req.uid, NotificationEvent.FILED, message, now)


@audits_refusals(AuditAction.REQUEST_FILE, who="filer")
def file_items_change(
    desk: Desk,
    session: Session,
    filer: Principal,
    *,
    target: str,
    items: Sequence[str],
    reason: str,
    now: datetime,
) -> AccessRequest:
    """File the request that changes an approved report grant's items."""
    grant = active_report_grant(session, filer.username, target, now=now)
    current = list(reach(grant).items)
    wanted = check_items(items)
    if wanted == current:
        raise InvalidInput(f"report grant {grant.uid} already covers exactly those items")
    change = {
        "grant": grant.uid,
        "report_request": grant.request_uid,
        "department": filer.department,
        "items": {"from": current, "to": wanted},
        "subjects": [],
        "recorded_with": "customer-service department (Art 11)",
    }
    req = file_change(
        desk,
        session,
        filer,
        kind=RequestKind.REPORT_ITEMS,
        change=change,
        reason=reason,
        now=now,
    )
    _tell_customer_service(
        desk,
        session,
        req,
        f"{filer.username} asks to change the items of report grant {grant.uid} "
        f"(request {req.uid}, Art 11); the general manager decides",
        now,
    )
    return req


def apply_items(
    desk: Desk, session: Session, req: AccessRequest, approver: Principal, now: datetime
) -> dict[str, Any]:
    """The general manager's signature: the grant now covers the new items."""
    change = req.change or {}
    grant = session.exec(select(AccessGrant).where(AccessGrant.uid == change["grant"])).first()
    if grant is None or grant.state != GrantState.ACTIVE or not now < grant.not_after:
        raise stale(req, f"report grant {change['grant']}")
    if list(reach(grant).items) != change["items"]["from"]:
        raise stale(req, f"the items of report grant {grant.uid}")
    grant.report_items = list(change["items"]["to"])
    session.add(grant)
    desk.audit.append(
        session,
        AuditEvent(
            action=AuditAction.POLICY_CHANGE,
            actor=actor_of(approver),
            grant_id=grant.uid,
            reason=req.reason,
            detail={
                "op": "report-items",
                "request": req.uid,
                "filed_by": req.requester,
                "from": change["items"]["from"],
                "to": change["items"]["to"],
            },
        ),
    )
    _tell_customer_service(
        desk,
        session,
        req,
        f"the items of report grant {grant.uid} were changed by request {req.uid} (Art 11)",
        now,
    )
    return {"grant": grant.uid, "items": list(grant.report_items)}
