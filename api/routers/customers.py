"""Customer archives: thin routes — parse, decide, call the store, map the result."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from typing import Annotated, Any, Literal

import sqlalchemy as sa
from fastapi import APIRouter, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import Field, StringConstraints
from sqlmodel import Session

from api.deps import (
    Caller,
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
from api.security import TokenClaims
from api.services import Services
from api.uploads import OPENAPI_BODY, receive_attachment
from audit.events import Actor, AuditAction
from foundation.db import transaction
from policies import archive_changes
from policies.archive_changes import ChangeOutcome
from policies.archive_creation import check_new_archive
from policies.changes import audited_refusals
from policies.decide import Decision
from policies.errors import AccessDenied, PolicyError
from policies.roles import Action
from vault.errors import ArchiveNotFound
from vault.importer import check_people
from vault.meta import ArchiveMeta
from vault.models import User
from vault.records import USERNAME, NewArchive
from vault.store import ReadPermit

router = APIRouter(prefix="/customers", tags=["customers"])
ArchivePath = Annotated[ArchiveNo, Path(description="Archive number, e.g. KH-2026-000123")]
# Interactions and attachments are business records filed in the archive; a grant
# reaches them through the ``notes`` field group.
RECORDS_GROUP = "notes"
SEARCH_FIELDS = {
    "mobile": "mobile_phone",
    "name": "name",
    "id_number": "id_number",
    "plate": "licence_plate",
}


def _meta(services: Services, archive_no: str) -> ArchiveMeta:
    return services.store.meta(archive_no)


def _require(
    services: Services,
    caller: Caller,
    action: Action,
    audit_action: AuditAction,
    archive: ArchiveMeta | None,
    groups: tuple[str, ...] = (),
) -> Decision:
    decision = services.decide(caller.principal, action, archive, groups)
    if not decision.allowed:
        services.record_denial(
            caller.actor,
            audit_action,
            decision,
            archives=(archive.archive_no,) if archive else (),
            groups=groups,
        )
        raise AccessDenied(decision)
    return decision


def _decision_public(d: Decision) -> DecisionPublic:
    return DecisionPublic(
        basis=d.basis,
        why=d.why,
        grant_id=d.grant_id,
        purpose=d.purpose,
        valid_until=d.valid_until.isoformat() if d.valid_until else None,
    )


@router.post("", status_code=201, response_model=ArchiveContent)
def create(body: ArchiveCreate, services: ServicesDep, caller: CallerDep) -> ArchiveContent:
    """File a new archive (Art 4); the body is one line of the import format."""
    data = body.model_dump(exclude_none=True, mode="json")
    data.setdefault("owner", caller.username)
    data.setdefault("department", caller.principal.department)
    decision = _require(services, caller, Action.CREATE, AuditAction.CREATE, None)
    if data["owner"] != caller.username and "information_officer" not in caller.principal.roles:
        raise ApiProblem(
            403,
            "access-denied",
            "salespeople file archives as their own; an "
            "information officer may file one for somebody else",
        )
    if "archive_no" in data and "information_officer" not in caller.principal.roles:
        # A number chosen by the caller moves the year's counter past it: one made up
        # near the end of the range would leave nobody a number for the rest of the year.
        raise ApiProblem(
            403,
            "access-denied",
            "archive numbers are given by the vault; an information officer may file an "
            "archive under the number of an existing paper file",
        )
    record = services.store.prepare(data)
    named = {n for n in (record.owner, record.custodian, *record.contacts) if n}
    with services.engine.connect() as conn:
        known = set(
            conn.execute(sa.select(User.username).where(User.username.in_(named))).scalars()
        )  # type: ignore[attr-defined]
    check_people(record, known)

    def check(session: Session, new: NewArchive) -> None:
        # Who the archive names (owner, contacts, custodian) and its department pass
        # the checks a reassignment or a raise would, in the inserting transaction.
        with audited_refusals(AuditAction.CREATE, caller.principal):
            check_new_archive(session, new, filer=caller.principal)

    try:
        meta = services.store.create(data, actor=caller.actor, check=check)
    except PolicyError as exc:
        if exc.event is not None:  # the refusal rolled back; its audit entry stays
            with transaction(services.engine) as session:
                services.audit.append(session, exc.event)
        raise
    return ArchiveContent(
        archive=public(meta), content={}, masked_groups=[], decision=_decision_public(decision)
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
) -> ArchivePage:
    """The customer list (客户一览表): metadata only, never content."""
    _require(services, caller, Action.LIST, AuditAction.LIST, None)
    page = services.store.list(
        actor=caller.actor,
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
    given = {k: v for k, v in given.items() if v}
    if len(given) != 1:
        raise ApiProblem(
            400, "search-needs-one-field", "search by exactly one of mobile, name, id_number, plate"
        )
    ((key, value),) = given.items()
    _require(services, caller, Action.SEARCH, AuditAction.SEARCH, None)

    def visible(session: Any, meta: Any, group: str) -> bool:
        # The read decision for the searched field's group: a search compares only
        # values the caller could open in clear. A masked read or a grant for other
        # groups does not count, or each search would answer a question about a
        # value the caller may not see (and about who is a client).
        return services.decide(
            caller.principal, Action.READ, meta, (group,), session=session
        ).shows_in_clear(group)

    found = services.store.search(SEARCH_FIELDS[key], value, actor=caller.actor, visible=visible)
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


def parse_groups(raw: str | None, services: Services) -> tuple[str, ...]:
    """The ``groups`` query parameter, checked against the schema (ValidationFailed if not)."""
    if raw is None or raw == "":
        return ()
    return tuple(services.store.schema.check_groups([g.strip() for g in raw.split(",")]))


def read_content(
    services: Services,
    claims: TokenClaims,
    client: str | None,
    archive_no: str,
    wanted: tuple[str, ...],
) -> dict[str, Any]:
    """The audited read behind ``GET /customers/{archive_no}`` (route and fast path alike).

    Blocking: the principal, the decision (inside the read's own transaction,
    where a denial is audited too), the audit append and the decryption.
    """
    callers: list[Caller] = []
    decided: list[Decision] = []

    def who(session: Any) -> Actor:
        callers.append(caller_for(services, claims, client, session))
        return callers[0].actor

    def check(session: Any, meta: Any, requested: tuple[str, ...]) -> ReadPermit:
        decision = services.decide(
            callers[0].principal, Action.READ, meta, wanted, session=session
        )
        decided.append(decision)
        if not decision.allowed:
            raise AccessDenied(decision)
        return ReadPermit(
            groups=decision.groups,
            masked_groups=decision.masked_groups,
            purpose=decision.purpose,
            grant_id=decision.grant_id,
            reason=decision.reason,
        )

    view = services.store.read(archive_no, wanted or None, actor=who, check=check)
    d = decided[0]
    return {
        "archive": view.meta.public(),
        "content": view.content,
        "masked_groups": list(view.masked),
        "decision": {
            "basis": d.basis,
            "why": d.why,
            "grant_id": d.grant_id,
            "purpose": d.purpose,
            "valid_until": d.valid_until.isoformat() if d.valid_until else None,
        },
    }


@router.get("/{archive_no}", response_model=ArchiveContent)
async def read(
    archive_no: ArchivePath,
    request: Request,
    services: ServicesDep,
    claims: ClaimsDep,
    groups: Annotated[
        str | None, Query(max_length=400, description="Comma-separated field groups")
    ] = None,
) -> Response:
    """The content the caller may see; groups the decision masks come back masked.

    Well-formed requests are served by ``api.fastpath.FastRead`` before routing;
    this route documents the endpoint and answers what the fast path hands on
    (malformed requests, which it re-validates into problem responses).
    """
    wanted = parse_groups(groups, services)
    body = await run_blocking(
        services.engine,
        read_content,
        services,
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
    fields = services.store.schema.validate_profile(
        body.profile, limit=services.vault.settings.max_field_chars, allow_null=True
    )
    decision = _require(
        services,
        caller,
        Action.UPDATE,
        AuditAction.UPDATE,
        _meta(services, archive_no),
        tuple(fields),
    )
    if body.consent is not None:
        services.store.record_consent(
            archive_no, body.consent.model_dump(mode="json"), actor=caller.actor
        )
    meta = services.store.meta(archive_no)
    if body.profile:
        meta = services.store.update(
            archive_no,
            body.profile,
            actor=caller.actor,
            purpose=decision.purpose,
            grant_id=decision.grant_id,
        )
    return ArchiveContent(
        archive=public(meta), content={}, masked_groups=[], decision=_decision_public(decision)
    )


def _records_decision(
    services: Services, caller: Caller, archive_no: str, action: Action, audit: AuditAction
) -> Decision:
    decision = _require(
        services,
        caller,
        action,
        audit,
        _meta(services, archive_no),
        (RECORDS_GROUP,) if action is Action.READ else (),
    )
    if action is Action.READ and RECORDS_GROUP not in decision.groups:
        services.record_denial(caller.actor, audit, decision, archives=(archive_no,))
        raise ApiProblem(
            403,
            "access-denied",
            "interaction records and attachments need the "
            f"{RECORDS_GROUP!r} field group in clear; file a view request for it",
        )
    return decision


@router.get("/{archive_no}/interactions")
def interactions(
    archive_no: ArchivePath, services: ServicesDep, caller: CallerDep
) -> list[dict[str, Any]]:
    d = _records_decision(services, caller, archive_no, Action.READ, AuditAction.INTERACTION_READ)
    return services.store.interactions(
        archive_no, actor=caller.actor, purpose=d.purpose, grant_id=d.grant_id
    )


@router.post("/{archive_no}/interactions", status_code=201)
def add_interaction(
    archive_no: ArchivePath, body: InteractionIn, services: ServicesDep, caller: CallerDep
) -> dict[str, Any]:
    """File a letter, fax, call, visit or revisit record (篇七)."""
    _records_decision(services, caller, archive_no, Action.UPDATE, AuditAction.INTERACTION_ADD)
    return services.store.add_interaction(
        archive_no,
        occurred_on=body.occurred_on,
        channel=body.channel,
        text=body.text,
        actor=caller.actor,
    )


@router.get("/{archive_no}/attachments")
def attachments(
    archive_no: ArchivePath, services: ServicesDep, caller: CallerDep
) -> list[dict[str, Any]]:
    d = _records_decision(services, caller, archive_no, Action.READ, AuditAction.ATTACHMENT_LIST)
    return services.store.attachments(
        archive_no, actor=caller.actor, purpose=d.purpose, grant_id=d.grant_id
    )


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
    await run_in_threadpool(
        _records_decision,
        services,
        caller,
        archive_no,
        Action.UPDATE,
        AuditAction.ATTACHMENT_ADD,
    )
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
    d = _records_decision(services, caller, archive_no, Action.READ, AuditAction.ATTACHMENT_READ)
    meta, chunks = services.store.open_attachment(
        archive_no, uid, actor=caller.actor, purpose=d.purpose, grant_id=d.grant_id
    )

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


def _changed(services: Services, outcome: ChangeOutcome, response: Response) -> dict[str, Any]:
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
    _require(
        services, caller, Action.RECLASSIFY, AuditAction.RECLASSIFY, _meta(services, archive_no)
    )
    outcome = services.in_transaction(
        lambda s: archive_changes.reclassify(
            services.workflow,
            s,
            caller.principal,
            archive_no=archive_no,
            level=body.classification,
            custodian=body.custodian,
            reason=body.reason,
            now=services.clock(),
        )
    )
    return _changed(services, outcome, response)


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
    _require(services, caller, Action.REASSIGN, AuditAction.REASSIGN, _meta(services, archive_no))
    if body.owner is None and body.contacts is None:
        raise ApiProblem(422, "validation-failed", "give a new owner, contacts or both")
    outcome = services.in_transaction(
        lambda s: archive_changes.reassign(
            services.workflow,
            s,
            caller.principal,
            archive_no=archive_no,
            owner=body.owner,
            contacts=body.contacts,
            reason=body.reason,
            now=services.clock(),
        )
    )
    if outcome.request is None:
        outcome = ChangeOutcome(applied=services.store.meta(archive_no).public())
    return _changed(services, outcome, response)
