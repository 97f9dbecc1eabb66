"""Customer archives: thin routes — parse, decide, call the store, map the result."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import Field, StringConstraints

from api.deps import (
    CallerDep,
    ClaimsDep,
    ServicesDep,
    caller_for,
    client_address,
    run_blocking,
)
from api.downloads import download_headers
from api.errors import ApiProblem
from api.routers.requests import request_public
from api.schemas import (
    ArchiveContent,
    ArchiveCreate,
    ArchiveNo,
    ArchivePage,
    ArchivePatch,
    DecisionPublic,
    InteractionIn,
    PlainText,
    Strict,
    Username,
    public,
)
from api.services import GROUPS_MAX_CHARS, Services
from api.uploads import OPENAPI_BODY, receive_attachment
from audit.events import AuditAction
from policies import archive_changes
from policies.archive_acts import Caller
from policies.archive_changes import ChangeOutcome
from policies.decision import Decision
from policies.roles import Action
from vault.errors import ArchiveNotFound
from vault.records import USERNAME

router = APIRouter(prefix="/customers", tags=["customers"])
ArchivePath = Annotated[ArchiveNo, Path(description="Archive number, e.g. KH-2026-000123")]
SEARCH_FIELDS = {
    "mobile": "mobile_phone",
    "name": "name",
    "id_number": "id_number",
    "plate": "licence_plate",
}


def _decision_public(d: Decision) -> DecisionPublic:
    return DecisionPublic(
        basis=d.basis,
        why=d.why,
        grant_id=d.grant_id,
        purpose=d.purpose,
        valid_until=d.valid_until.isoformat() if d.valid_until else None,
    )


class ArchiveCreated(ArchiveContent):
    # The reassign request adding the contacts named in the body (a second person
    # signs it; until then only the owner is listed), or null when none were named.
    contacts_request: dict[str, Any] | None = None


def filing_data(body: ArchiveCreate, caller: Caller) -> dict[str, Any]:
    """The import-format line a new archive is filed from: the caller's own by default
    (the API's body and the web form's alike)."""
    data = body.model_dump(exclude_none=True, mode="json")
    data.setdefault("owner", caller.username)
    data.setdefault("department", caller.principal.department)
    return data


@router.post("", status_code=201, response_model=ArchiveCreated)
def create(body: ArchiveCreate, services: ServicesDep, caller: CallerDep) -> ArchiveCreated:
    """File a new archive (Art 4); the body is one line of the import format. An important
    client's archive (``VAULT_IMPORTANT_GRADES``, A by default) names a second contact
    or is refused (422 ``important-client``); the contacts named are added by a pending
    reassign request returned as ``contacts_request``."""
    created = services.acts.create(caller, filing_data(body, caller))
    return ArchiveCreated(
        archive=public(created.meta),
        content={},
        masked_groups=[],
        decision=_decision_public(created.decision),
        contacts_request=(
            request_public(created.contacts_request) if created.contacts_request else None
        ),
    )


@router.get("", response_model=ArchivePage)
def list_archives(
    services: ServicesDep,
    caller: CallerDep,
    owner: Annotated[str | None, Query(pattern=f"^{USERNAME.pattern}$")] = None,
    category: Annotated[str | None, Query(pattern="^(general|special)$")] = None,
    grade: Annotated[str | None, Query(pattern="^[ABCD]$")] = None,
    classification: Annotated[str | None, Query(pattern="^(internal|secret|top_secret)$")] = None,
    department: Annotated[
        str | None, Query(max_length=64, pattern=r"^[^\x00-\x1f\x7f-\x9f]*$")
    ] = None,
    status: Annotated[str, Query(pattern="^(active|destroyed)$")] = "active",
    retention_before: date | None = None,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    missing_contacts: Annotated[
        bool, Query(description="only important clients with no contact besides the owner")
    ] = False,
) -> ArchivePage:
    """The customer list (客户一览表): metadata and each client's masked name (the
    surname and mask characters: 王**, null until computed), never content."""
    page = services.acts.list_archives(
        caller,
        missing_contacts=missing_contacts,
        owner=owner,
        category=category,
        grade=grade,
        classification=classification,
        department=department,
        status=status,
        retention_before=retention_before,
        offset=offset,
        limit=limit,
    )
    return ArchivePage(
        items=[public(m) for m in page.items],
        total=page.total,
        offset=page.offset,
        limit=page.limit,
    )


class SearchIn(Strict):
    mobile: Annotated[str, StringConstraints(max_length=40)] | None = None
    name: Annotated[str, StringConstraints(max_length=40)] | None = None
    id_number: Annotated[str, StringConstraints(max_length=40)] | None = None
    plate: Annotated[str, StringConstraints(max_length=20)] | None = None


def _search(services: Services, caller: Caller, given: dict[str, str | None]) -> ArchivePage:
    present: dict[str, str] = {k: v for k, v in given.items() if v}
    if len(present) != 1:
        raise ApiProblem(
            400, "search-needs-one-field", "search by exactly one of mobile, name, id_number, plate"
        )
    ((key, value),) = present.items()
    found = services.acts.search(caller, SEARCH_FIELDS[key], value)
    return ArchivePage(
        items=[public(m) for m in found], total=len(found), offset=0, limit=len(found) or 1
    )


@router.get("/search", response_model=ArchivePage)
def search(
    services: ServicesDep,
    caller: CallerDep,
    mobile: Annotated[str | None, Query(max_length=40)] = None,
    name: Annotated[str | None, Query(max_length=40)] = None,
    id_number: Annotated[str | None, Query(max_length=40)] = None,
    plate: Annotated[str | None, Query(max_length=20)] = None,
) -> ArchivePage:
    """Exact match through a blind index (the value never reaches the audit log in clear).

    Prefer ``POST /customers/search``: a query string can end up in proxy access logs.
    """
    return _search(
        services, caller, {"mobile": mobile, "name": name, "id_number": id_number, "plate": plate}
    )


@router.post("/search", response_model=ArchivePage)
def search_post(body: SearchIn, services: ServicesDep, caller: CallerDep) -> ArchivePage:
    """The same search with the value in the body, where access logs do not record it."""
    return _search(services, caller, body.model_dump())


@router.get("/{archive_no}", response_model=ArchiveContent)
async def read(
    archive_no: ArchivePath,
    request: Request,
    services: ServicesDep,
    claims: ClaimsDep,
    groups: Annotated[
        str | None, Query(max_length=GROUPS_MAX_CHARS, description="Comma-separated field groups")
    ] = None,
) -> Response:
    """The content the caller may see; groups the decision masks come back masked.

    Well-formed requests are served by ``api.fastpath.FastRead`` before routing;
    this route documents the endpoint and answers what the fast path hands on
    (malformed requests, which it re-validates into problem responses).
    """
    wanted = services.parse_groups(groups)
    body = await run_blocking(
        services.engine,
        services.read_archive,
        claims,
        client_address(request),
        archive_no,
        wanted,
    )
    return JSONResponse(body, headers={"Cache-Control": "no-store"})


@router.patch("/{archive_no}", response_model=ArchiveContent)
def update(
    archive_no: ArchivePath, body: ArchivePatch, services: ServicesDep, caller: CallerDep
) -> ArchiveContent:
    """Change fields (null removes one; the old values go to the encrypted history)."""
    if not body.profile and body.consent is None:
        raise ApiProblem(422, "validation-failed", "give profile fields or a consent record")
    consent = body.consent.model_dump(mode="json") if body.consent is not None else None
    meta, decision = services.acts.update(caller, archive_no, body.profile, consent)
    return ArchiveContent(
        archive=public(meta), content={}, masked_groups=[], decision=_decision_public(decision)
    )


@router.get("/{archive_no}/interactions")
def interactions(
    archive_no: ArchivePath, services: ServicesDep, caller: CallerDep
) -> list[dict[str, Any]]:
    return services.acts.interactions(caller, archive_no)


@router.post("/{archive_no}/interactions", status_code=201)
def add_interaction(
    archive_no: ArchivePath, body: InteractionIn, services: ServicesDep, caller: CallerDep
) -> dict[str, Any]:
    """File a letter, fax, call, visit or revisit record (篇七)."""
    return services.acts.add_interaction(
        caller, archive_no, occurred_on=body.occurred_on, channel=body.channel, text=body.text
    )


@router.get("/{archive_no}/attachments")
def attachments(
    archive_no: ArchivePath, services: ServicesDep, caller: CallerDep
) -> list[dict[str, Any]]:
    return services.acts.attachments(caller, archive_no)


@router.post("/{archive_no}/attachments", status_code=201, openapi_extra=OPENAPI_BODY)
async def upload(
    archive_no: ArchivePath,
    request: Request,
    services: ServicesDep,
    claims: ClaimsDep,
    filename: Annotated[
        str | None, Query(max_length=255, description="The file's name (raw bodies)")
    ] = None,
) -> JSONResponse:
    """Upload an attachment, sealed chunk by chunk as it streams in.

    The token is checked and the decision made before a byte of the body is
    read (401/403 leave it unread); see ``api.uploads`` for the body formats,
    the size limit (413) and the daily quota (429).
    """
    caller = await run_in_threadpool(caller_for, services, claims, client_address(request))
    await run_in_threadpool(services.acts.may_upload, caller, archive_no)
    result = await receive_attachment(request, services, caller.actor, archive_no, filename)
    return JSONResponse(result, status_code=201)


@router.get("/{archive_no}/attachments/{uid}")
def download(
    archive_no: ArchivePath,
    services: ServicesDep,
    caller: CallerDep,
    uid: Annotated[str, Path(pattern="^[0-9a-f]{32}$")],
) -> StreamingResponse:
    """Stream an attachment; the audit entry is written before the first byte."""
    meta, chunks = services.acts.open_attachment(caller, archive_no, uid)

    def body() -> Iterator[bytes]:
        yield from chunks

    media_type, headers = download_headers(meta["content_type"], meta["filename"], meta["size"])
    return StreamingResponse(body(), media_type=media_type, headers=headers)


__all__ = ["ArchiveNotFound", "router"]


class ClassificationIn(Strict):
    classification: Literal["internal", "secret", "top_secret"]
    custodian: Username | None = None
    reason: Annotated[PlainText, StringConstraints(min_length=1, max_length=2000)]


class OwnerIn(Strict):
    owner: Username | None = None
    contacts: list[Username] | None = Field(default=None, max_length=20)
    reason: Annotated[PlainText, StringConstraints(min_length=1, max_length=2000)]


def _changed(outcome: ChangeOutcome, response: Response) -> dict[str, Any]:
    """202 with the filed request, or 200 with what was changed at once."""
    if outcome.request is not None:
        response.status_code = 202
        return request_public(outcome.request)
    response.status_code = 200
    return outcome.applied or {}


@router.post("/{archive_no}/classification", status_code=202)
def reclassify(
    archive_no: ArchivePath,
    body: ClassificationIn,
    services: ServicesDep,
    caller: CallerDep,
    response: Response,
) -> dict[str, Any]:
    """Raise a classification at once (re-sealed under that level's KEK; 200). Lowering it
    or changing the custodian files a request the current custodian signs (202)."""
    outcome = services.acts.reclassify(
        caller, archive_no, body.classification, body.custodian, body.reason
    )
    return _changed(outcome, response)


@router.post("/{archive_no}/owner", status_code=202)
def reassign(
    archive_no: ArchivePath,
    body: OwnerIn,
    services: ServicesDep,
    caller: CallerDep,
    response: Response,
) -> dict[str, Any]:
    """A new owner or added contacts file a reassign request a second person signs (202);
    removing contacts only narrows and is done at once (200). Salespeople of the
    archive's department only."""
    outcome = services.acts.reassign(caller, archive_no, body.owner, body.contacts, body.reason)
    return _changed(outcome, response)


class CustodianIn(Strict):
    custodian: Username
    reason: Annotated[PlainText, StringConstraints(min_length=1, max_length=2000)]


@router.post("/{archive_no}/custodian", status_code=202)
def change_custodian(
    archive_no: ArchivePath, body: CustodianIn, services: ServicesDep, caller: CallerDep
) -> dict[str, Any]:
    """Name another custodian (Art 22): files a request (202) that the current custodian
    signs (the information supervisor when the filer is the custodian or none valid is
    named), with the customer-service manager for a top-secret archive. The new
    custodian is an enabled information officer or the information supervisor, never
    the owner or a contact, and never signs their own appointment; the filer never
    names themselves. Filed by an information officer or the customer-service manager."""

    def run(session: Any) -> dict[str, Any]:
        meta = services.acts.store.reader.meta(archive_no, session=session, for_update=True)
        services.acts.require(session, caller, Action.RECLASSIFY, AuditAction.RECLASSIFY, meta)
        req = archive_changes.change_custodian(
            services.workflow,
            session,
            caller.principal,
            archive_no=archive_no,
            custodian=body.custodian,
            reason=body.reason,
            now=services.clock(),
        )
        return request_public(req)

    return services.in_transaction(run)
