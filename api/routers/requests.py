"""Access requests (view, loan, copy, external, report, destroy) and the loan register."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal, TypeVar

from fastapi import APIRouter, Path, Query
from pydantic import Field, StringConstraints
from sqlmodel import Session

from api.deps import Caller, CallerDep, ServicesDep
from api.schemas import ArchiveNo, GroupName, PlainText, Strict
from api.services import Services
from audit.events import AuditAction
from policies import rechain
from policies.changes import next_label
from policies.visibility import LOAN_REGISTER_READERS, visible_loan, visible_request
from policies.workflow import loan_status

router = APIRouter(tags=["requests"])
Uid = Annotated[str, Path(pattern=r"^[A-Za-z0-9_\-]{4,40}$")]
Reason = Annotated[PlainText, StringConstraints(min_length=1, max_length=2000)]
Line = PlainText
REGISTER_READERS = LOAN_REGISTER_READERS
T = TypeVar("T")


class RequestIn(Strict):
    kind: Literal["view", "loan", "copy", "external", "report", "destroy"]
    archives: list[ArchiveNo] = Field(default_factory=list, max_length=500)
    groups: list[GroupName] = Field(default_factory=list, max_length=64)
    purpose: Annotated[Line, StringConstraints(max_length=32)]
    reason: Reason
    hours: int | None = Field(default=None, ge=1, le=24 * 366)
    material: Annotated[Line, StringConstraints(max_length=256)] = ""
    copies: int = Field(default=0, ge=0, le=1000)
    recipient: Annotated[Line, StringConstraints(max_length=256)] = ""
    credential_ref: Annotated[Line, StringConstraints(max_length=128)] | None = None


class ApproveIn(Strict):
    groups: list[GroupName] | None = Field(default=None, max_length=64)
    hours: int | None = Field(default=None, ge=1, le=24 * 366)
    note: Annotated[Line, StringConstraints(max_length=2000)] = ""
    expected_version: int | None = Field(default=None, ge=0)


class DenyIn(Strict):
    reason: Reason
    expected_version: int | None = Field(default=None, ge=0)


def request_public(req: Any) -> dict[str, Any]:
    return {
        "id": req.uid,
        "kind": req.kind,
        "state": req.state,
        "requester": req.requester,
        "archives": list(req.archives),
        "groups": list(req.groups),
        "requested_groups": list(req.requested_groups),
        "purpose": req.purpose,
        "reason": req.reason,
        "hours": req.hours,
        "requested_hours": req.requested_hours,
        "classification": req.classification,
        "version": req.version,
        "next_stage": req.next_stage,
        "stages": [
            {"name": s.get("name"), "label": s.get("label")}
            | ({"superseded": True} if s.get("superseded") else {})
            for s in req.stages
        ],
        "chain_changes": list(req.chain_changes or ()),
        "created_at": req.created_at.isoformat(),
        "expires_at": req.expires_at.isoformat() if req.expires_at else None,
        "decided_at": req.decided_at.isoformat() if req.decided_at else None,
        # Change requests (reassign, reclassify, role, handover): what changes, from
        # -> to, and once approved what was applied. Names and levels only.
        "change": req.change,
        "next_signer": next_label(req),
    }


def loan_public(entry: Any, state: str) -> dict[str, Any]:
    return {
        "id": entry.uid,
        "borrower": entry.borrower,
        "archives": list(entry.archives),
        "material": entry.material,
        "copies": entry.copies,
        "reason": entry.reason,
        "start_at": entry.start_at.isoformat(),
        "due_at": entry.due_at.isoformat(),
        "confirmed_at": entry.borrower_confirmed_at.isoformat()
        if entry.borrower_confirmed_at
        else None,
        "returned_at": entry.returned_at.isoformat() if entry.returned_at else None,
        "state": state,
    }


def _on_visible_request(
    services: Services, caller: Caller, uid: str, attempt: AuditAction, step: Callable[[Any], T]
) -> T:
    """Run a step on a request the caller may see; any other id gets the unknown id's 404."""

    def run(session: Any) -> T:
        visible_request(
            session, services.workflow, caller.principal, uid, now=services.clock(), attempt=attempt
        )
        return step(session)

    return services.in_transaction(run)


def _on_visible_loan(
    services: Services, caller: Caller, uid: str, attempt: AuditAction, step: Callable[[Any], T]
) -> T:
    """Run a step on a loan line the caller may see; any other id gets the unknown id's 404."""

    def run(session: Any) -> T:
        visible_loan(session, caller.principal, uid, attempt=attempt)
        return step(session)

    return services.in_transaction(run)


@router.post("/requests", status_code=201)
def file_request(body: RequestIn, services: ServicesDep, caller: CallerDep) -> dict[str, Any]:
    """File a request: the object, purpose and reason (Art 18.1); returns its chain."""
    req = services.in_transaction(
        lambda s: services.workflow.file_request(
            s,
            caller.principal,
            kind=body.kind,
            purpose=body.purpose,
            reason=body.reason,
            now=services.clock(),
            archives=body.archives,
            groups=body.groups,
            hours=body.hours,
            material=body.material,
            copies=body.copies,
            recipient=body.recipient,
            credential_ref=body.credential_ref,
        )
    )
    return request_public(req)


@router.get("/requests")
def list_requests(
    services: ServicesDep,
    caller: CallerDep,
    role: Annotated[Literal["mine", "to_approve"], Query()] = "mine",
) -> dict[str, Any]:
    """Your requests with their notifications, or the queue you may sign now."""
    with Session(services.engine) as session:
        if role == "mine":
            items = services.workflow.requests_for(session, caller.username)
            notes = services.workflow.notifications_for(session, caller.username)
            return {
                "items": [request_public(r) for r in items],
                "notifications": [
                    {
                        "request": n.request_uid,
                        "event": n.event,
                        "message": n.message,
                        "at": n.created_at.isoformat(),
                    }
                    for n in notes
                ],
            }
        queue = services.workflow.queue_for(session, caller.principal, now=services.clock())
        return {"items": [request_public(r) for r in queue], "notifications": []}


@router.get("/requests/{uid}")
def get_request(uid: Uid, services: ServicesDep, caller: CallerDep) -> dict[str, Any]:
    """One request with its signatures; one you may not see is answered as an unknown id."""
    with Session(services.engine) as session:
        req = visible_request(
            session, services.workflow, caller.principal, uid, now=services.clock()
        )
        sigs = services.workflow.signatures(session, uid)
        out = request_public(req)
        out["signatures"] = [
            {
                "stage": s.stage_name,
                "signer": s.signer,
                "role": s.signer_role,
                "decision": s.decision,
                "reason": s.reason,
                "at": s.signed_at.isoformat(),
            }
            for s in sigs
        ]
        return out


@router.post("/requests/{uid}/approve")
def approve(uid: Uid, body: ApproveIn, services: ServicesDep, caller: CallerDep) -> dict[str, Any]:
    """Sign the next stage; an approver may narrow (fewer groups, fewer hours), never widen.

    The chain is first re-derived from the archives' current state in a transaction
    of its own, so a change (a raised classification, a new custodian) is recorded
    and told to the requester even when it turns this approver away. Only a caller
    who may see the request can set that off; anyone else gets the unknown id's 404.
    """
    _on_visible_request(
        services,
        caller,
        uid,
        AuditAction.REQUEST_APPROVE,
        lambda s: rechain.refresh_uid(
            s,
            uid,
            services.workflow.chains,
            services.audit,
            actor=caller.actor,
            now=services.clock(),
        ),
    )
    req = _on_visible_request(
        services,
        caller,
        uid,
        AuditAction.REQUEST_APPROVE,
        lambda s: services.workflow.approve(
            s,
            uid,
            caller.principal,
            now=services.clock(),
            groups=body.groups,
            hours=body.hours,
            note=body.note,
            expected_version=body.expected_version,
        ),
    )
    return request_public(req)


@router.post("/requests/{uid}/deny")
def deny(uid: Uid, body: DenyIn, services: ServicesDep, caller: CallerDep) -> dict[str, Any]:
    req = _on_visible_request(
        services,
        caller,
        uid,
        AuditAction.REQUEST_DENY,
        lambda s: services.workflow.deny(
            s,
            uid,
            caller.principal,
            reason=body.reason,
            now=services.clock(),
            expected_version=body.expected_version,
        ),
    )
    return request_public(req)


@router.post("/requests/{uid}/withdraw")
def withdraw(uid: Uid, services: ServicesDep, caller: CallerDep) -> dict[str, Any]:
    req = _on_visible_request(
        services,
        caller,
        uid,
        AuditAction.REQUEST_WITHDRAW,
        lambda s: services.workflow.withdraw(s, uid, caller.principal, now=services.clock()),
    )
    return request_public(req)


@router.get("/loans")
def loans(
    services: ServicesDep, caller: CallerDep, overdue: bool = False, open_only: bool = False
) -> dict[str, Any]:
    """The loan register (客户资料外借登记册); borrowers see their own lines."""
    now = services.clock()
    with Session(services.engine) as session:
        views = services.workflow.loan_register(session, now=now, open_only=open_only)
    keeper = bool(REGISTER_READERS & caller.principal.roles)
    items = [
        loan_public(v.entry, v.status)
        for v in views
        if keeper or v.entry.borrower == caller.username
    ]
    if overdue:
        items = [i for i in items if i["state"] == "overdue"]
    return {"items": items}


@router.post("/loans/{uid}/confirm")
def confirm_loan(uid: Uid, services: ServicesDep, caller: CallerDep) -> dict[str, Any]:
    """The borrower confirms the register line (Art 19.5)."""
    entry = _on_visible_loan(
        services,
        caller,
        uid,
        AuditAction.LOAN,
        lambda s: services.workflow.confirm_loan(s, uid, caller.principal, now=services.clock()),
    )
    return loan_public(entry, loan_status(entry, services.clock()))


@router.post("/loans/{uid}/return")
def return_loan(uid: Uid, services: ServicesDep, caller: CallerDep) -> dict[str, Any]:
    """Cancel the register line (Art 20): the access ends now and for good."""
    entry = _on_visible_loan(
        services,
        caller,
        uid,
        AuditAction.LOAN_RETURN,
        lambda s: services.workflow.return_loan(s, uid, caller.principal, now=services.clock()),
    )
    return loan_public(entry, loan_status(entry, services.clock()))
