"""Access requests (view, loan, copy, external, report, destroy) and the loan register."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query
from pydantic import Field, JsonValue, StringConstraints

from api.deps import Caller, CallerDep, ServicesDep
from api.errors import ApiProblem
from api.schemas import ArchiveNo, GroupName, PlainText, ReportItem, Strict, Username
from policies.chains import load_chains
from policies.changes import next_label
from policies.copies import MAX_COPIES
from policies.loans import LoanView
from policies.models import AccessRequest, RequestSignature
from policies.request_service import NewRequest, RequestService
from policies.visibility import RequestQuery

router = APIRouter(tags=["requests"])
Uid = Annotated[str, Path(pattern=r"^[A-Za-z0-9_\-]{4,40}$")]
Reason = Annotated[PlainText, StringConstraints(min_length=1, max_length=2000)]
Line = PlainText
# The purposes a request may state, listed in the OpenAPI schema so a form can offer
# them (GET /requests/purposes has their labels); filing checks them too.
PURPOSES: list[JsonValue] = list(load_chains().purposes)
StateName = Literal["pending", "approved", "denied", "withdrawn", "expired"]
KindName = Literal[
    "view",
    "loan",
    "copy",
    "external",
    "report",
    "destroy",
    "reassign",
    "reclassify",
    "role",
    "handover",
]


class RequestIn(Strict):
    kind: Literal["view", "loan", "copy", "external", "report", "destroy"]
    archives: list[ArchiveNo] = Field(default_factory=list, max_length=500)
    groups: list[GroupName] = Field(default_factory=list, max_length=64)
    purpose: Annotated[Line, StringConstraints(max_length=32)] = Field(
        json_schema_extra={"enum": PURPOSES}
    )
    reason: Reason
    hours: int | None = Field(default=None, ge=1, le=24 * 366)
    material: Annotated[Line, StringConstraints(max_length=256)] = ""
    # A loan's copies of the material (Art 19.5); a copy or external request's copies
    # of the file (1 to 100, one if not stated), each export taking one.
    copies: int | None = Field(default=None, ge=1, le=1000)
    # Copy and external requests: the file's format (JSON if not stated).
    format: Literal["csv", "json"] | None = None
    recipient: Annotated[Line, StringConstraints(max_length=256)] = ""
    credential_ref: Annotated[Line, StringConstraints(max_length=128)] | None = None
    # Report requests (Art 10): your department's statistics (the default) or all
    # departments', and which items (all when not stated). Other kinds state neither.
    scope: Literal["department", "all"] | None = None
    items: list[ReportItem] | None = Field(default=None, min_length=1, max_length=16)


class ApproveIn(Strict):
    groups: list[GroupName] | None = Field(default=None, max_length=64)
    hours: int | None = Field(default=None, ge=1, le=24 * 366)
    # Fewer copies than asked (never more).
    copies: int | None = Field(default=None, ge=1, le=MAX_COPIES)
    note: Annotated[Line, StringConstraints(max_length=2000)] = ""
    expected_version: int | None = Field(default=None, ge=0)


class DenyIn(Strict):
    reason: Reason
    expected_version: int | None = Field(default=None, ge=0)


def request_public(req: AccessRequest, facts: dict[str, Any] | None = None) -> dict[str, Any]:
    """The request as its readers see it; ``facts`` (``policies.request_facts``) are
    what the signers judge on, given whenever the caller was allowed to see it."""
    out = {
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
    if facts is not None:
        out["facts"] = facts
        # The facts know who is left to sign: an alternate's words once no usual signer is.
        if facts.get("next"):
            out["next_signer"] = facts["next"]["label"]
    return out


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


def with_facts(
    requests: RequestService, caller: Caller, items: list[AccessRequest]
) -> list[dict[str, Any]]:
    """Requests the caller may see, each with its facts (one batch of lookups), told
    as much of the archives as the caller may list (``RequestService.facts``)."""
    facts = requests.facts(caller, items)
    return [request_public(r, facts.get(r.uid)) for r in items]


@router.post("/requests", status_code=201)
def file_request(body: RequestIn, requests: RequestsDep, caller: CallerDep) -> dict[str, Any]:
    """File a request: the object, purpose and reason (Art 18.1); returns its chain."""
    return with_facts(requests, caller, [requests.file(caller, new_request(body))])[0]


def new_request(body: RequestIn) -> NewRequest:
    """What the filer stated, for ``RequestService.file`` (the API's body and the
    filing form's, which is checked with the same model)."""
    return NewRequest(
        kind=body.kind,
        purpose=body.purpose,
        reason=body.reason,
        archives=body.archives,
        groups=body.groups,
        hours=body.hours,
        material=body.material,
        copies=body.copies or 0,
        recipient=body.recipient,
        credential_ref=body.credential_ref,
        export_format=body.format,
        scope=body.scope,
        items=body.items,
    )


def _zoned(name: str, moment: datetime | None) -> datetime | None:
    """The filter in UTC, as the database compares it: converted here, so that a time
    at the calendar's edge that has no UTC form (9999-12-31T23:59:59-14:00) is a 422
    naming the parameter, not an overflow while the query is bound."""
    if moment is None:
        return None
    if moment.tzinfo is None:
        raise ApiProblem(422, "validation-failed", f"{name} needs a time zone (e.g. +08:00)")
    try:
        return moment.astimezone(UTC)
    except (OverflowError, ValueError):
        raise ApiProblem(
            422, "validation-failed", f"{name} is outside the calendar once taken to UTC"
        ) from None


@router.get("/requests")
def list_requests(
    requests: RequestsDep,
    caller: CallerDep,
    role: Annotated[Literal["mine", "to_approve", "all"], Query()] = "mine",
    state: StateName | None = None,
    kind: KindName | None = None,
    requester: Annotated[Username | None, Query()] = None,
    archive: Annotated[ArchiveNo | None, Query()] = None,
    since: Annotated[datetime | None, Query(alias="from")] = None,
    until: Annotated[datetime | None, Query(alias="to")] = None,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> dict[str, Any]:
    """Your requests (paged, newest first) with your newest notifications, the queue you
    may sign now, or (role=all, compliance and the information supervisor) every request,
    filtered and paged."""
    if role == "all":
        query = RequestQuery(
            state=state,
            kind=kind,
            requester=requester,
            archive=archive,
            since=_zoned("from", since),
            until=_zoned("to", until),
            offset=offset,
            limit=limit,
        )
        items, total = requests.search(caller, query)
        return {
            "items": with_facts(requests, caller, items),
            "total": total,
            "offset": offset,
            "limit": limit,
        }
    given = [
        n
        for n, v in (
            ("state", state),
            ("kind", kind),
            ("requester", requester),
            ("archive", archive),
            ("from", since),
            ("to", until),
        )
        if v
    ]
    if given:
        raise ApiProblem(422, "validation-failed", f"{given[0]}: filters apply to role=all only")
    if role == "to_approve":
        return {"items": with_facts(requests, caller, requests.queue(caller)), "notifications": []}
    mine, total = requests.mine_page(caller, state=None, offset=offset, limit=limit)
    notes = requests.my_notifications(caller, newest=limit)
    return {
        "items": with_facts(requests, caller, mine),
        "total": total,
        "offset": offset,
        "limit": limit,
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


@router.get("/requests/purposes")
def purposes(requests: RequestsDep, caller: CallerDep) -> dict[str, Any]:
    """The purposes a request may state (Art 18.1), with their labels, for a form to offer.

    Declared before ``/requests/{uid}`` so that "purposes" is never taken for an id."""
    return {"items": [{"code": c, "label": label} for c, label in requests.purposes.items()]}


@router.get("/requests/{uid}")
def get_request(uid: Uid, requests: RequestsDep, caller: CallerDep) -> dict[str, Any]:
    """One request with its facts and signatures; one you may not see is answered as an
    unknown id."""
    req, sigs = requests.show(caller, uid)
    out = with_facts(requests, caller, [req])[0]
    return out | {"signatures": [signature_public(s) for s in sigs]}


@router.post("/requests/{uid}/approve")
def approve(uid: Uid, body: ApproveIn, requests: RequestsDep, caller: CallerDep) -> dict[str, Any]:
    """Sign the next stage; an approver may narrow (fewer groups, hours or copies),
    never widen.

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
        copies=body.copies,
    )
    return with_facts(requests, caller, [req])[0]


@router.post("/requests/{uid}/deny")
def deny(uid: Uid, body: DenyIn, requests: RequestsDep, caller: CallerDep) -> dict[str, Any]:
    req = requests.deny(caller, uid, reason=body.reason, expected_version=body.expected_version)
    return with_facts(requests, caller, [req])[0]


@router.post("/requests/{uid}/withdraw")
def withdraw(uid: Uid, requests: RequestsDep, caller: CallerDep) -> dict[str, Any]:
    return with_facts(requests, caller, [requests.withdraw(caller, uid)])[0]


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
