"""Access requests (view, loan, copy, external, report, destroy) and the loan register."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query
from pydantic import Field, StringConstraints

from api.deps import CallerDep, ServicesDep
from api.schemas import ArchiveNo, GroupName, PlainText, Strict
from policies.changes import next_label
from policies.loans import LoanView
from policies.models import AccessRequest, RequestSignature
from policies.request_service import NewRequest, RequestService

router = APIRouter(tags=["requests"])
Uid = Annotated[str, Path(pattern=r"^[A-Za-z0-9_\-]{4,40}$")]
Reason = Annotated[PlainText, StringConstraints(min_length=1, max_length=2000)]
Line = PlainText


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


def request_public(req: AccessRequest) -> dict[str, Any]:
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


def loan_public(view: LoanView) -> dict[str, Any]:
    entry = view.entry
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
        "state": view.status,
    }


def signature_public(sig: RequestSignature) -> dict[str, Any]:
    return {
        "stage": sig.stage_name,
        "signer": sig.signer,
        "role": sig.signer_role,
        "decision": sig.decision,
        "reason": sig.reason,
        "at": sig.signed_at.isoformat(),
    }


def request_service(services: ServicesDep) -> RequestService:
    return RequestService(
        engine=services.engine,
        workflow=services.workflow,
        audit=services.audit,
        run=services.in_transaction,
        clock=services.clock,
    )


RequestsDep = Annotated[RequestService, Depends(request_service)]


@router.post("/requests", status_code=201)
def file_request(body: RequestIn, requests: RequestsDep, caller: CallerDep) -> dict[str, Any]:
    """File a request: the object, purpose and reason (Art 18.1); returns its chain."""
    new = NewRequest(
        kind=body.kind,
        purpose=body.purpose,
        reason=body.reason,
        archives=body.archives,
        groups=body.groups,
        hours=body.hours,
        material=body.material,
        copies=body.copies,
        recipient=body.recipient,
        credential_ref=body.credential_ref,
    )
    return request_public(requests.file(caller, new))


@router.get("/requests")
def list_requests(
    requests: RequestsDep,
    caller: CallerDep,
    role: Annotated[Literal["mine", "to_approve"], Query()] = "mine",
) -> dict[str, Any]:
    """Your requests with their notifications, or the queue you may sign now."""
    if role == "to_approve":
        return {"items": [request_public(r) for r in requests.queue(caller)], "notifications": []}
    items, notes = requests.mine(caller)
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


@router.get("/requests/{uid}")
def get_request(uid: Uid, requests: RequestsDep, caller: CallerDep) -> dict[str, Any]:
    """One request with its signatures; one you may not see is answered as an unknown id."""
    req, sigs = requests.show(caller, uid)
    return request_public(req) | {"signatures": [signature_public(s) for s in sigs]}


@router.post("/requests/{uid}/approve")
def approve(uid: Uid, body: ApproveIn, requests: RequestsDep, caller: CallerDep) -> dict[str, Any]:
    """Sign the next stage; an approver may narrow (fewer groups, fewer hours), never widen.

    The chain is first re-derived from the archives' current state in a transaction
    of its own, so a change (a raised classification, a new custodian) is recorded
    and told to the requester even when it turns this approver away. Only a caller
    who may see the request can set that off; anyone else gets the unknown id's 404.
    """
    req = requests.approve(
        caller,
        uid,
        groups=body.groups,
        hours=body.hours,
        note=body.note,
        expected_version=body.expected_version,
    )
    return request_public(req)


@router.post("/requests/{uid}/deny")
def deny(uid: Uid, body: DenyIn, requests: RequestsDep, caller: CallerDep) -> dict[str, Any]:
    req = requests.deny(caller, uid, reason=body.reason, expected_version=body.expected_version)
    return request_public(req)


@router.post("/requests/{uid}/withdraw")
def withdraw(uid: Uid, requests: RequestsDep, caller: CallerDep) -> dict[str, Any]:
    return request_public(requests.withdraw(caller, uid))


@router.get("/loans")
def loans(
    requests: RequestsDep, caller: CallerDep, overdue: bool = False, open_only: bool = False
) -> dict[str, Any]:
    """The loan register (客户资料外借登记册); borrowers see their own lines."""
    views = requests.loans(caller, overdue=overdue, open_only=open_only)
    return {"items": [loan_public(v) for v in views]}


@router.post("/loans/{uid}/confirm")
def confirm_loan(uid: Uid, requests: RequestsDep, caller: CallerDep) -> dict[str, Any]:
    """The borrower confirms the register line (Art 19.5)."""
    return loan_public(requests.confirm_loan(caller, uid))


@router.post("/loans/{uid}/return")
def return_loan(uid: Uid, requests: RequestsDep, caller: CallerDep) -> dict[str, Any]:
    """Cancel the register line (Art 20): the access ends now and for good."""
    return loan_public(requests.return_loan(caller, uid))
