"""Exports under an approved copy or external request, and destruction under a destroy request."""

from __future__ import annotations

import csv
import io
import json
from typing import Annotated, Any, Literal

from fastapi import APIRouter
from fastapi.responses import Response
from pydantic import StringConstraints
from sqlmodel import Session, select

from api.deps import CallerDep, ServicesDep
from api.errors import ApiProblem
from api.routers.customers import ArchivePath, _meta, _require
from api.schemas import PlainText, Strict
from audit.events import AuditAction
from policies.models import AccessGrant
from policies.roles import Action, GrantState

router = APIRouter(tags=["exports"])
RequestId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_\-]{4,40}$")]


class ExportIn(Strict):
    request: RequestId
    format: Literal["csv", "json"] = "json"


class DestroyIn(Strict):
    request: RequestId
    reason: Annotated[PlainText, StringConstraints(min_length=1, max_length=2000)] | None = None


def _grant(services: Any, request_uid: str, username: str, actions: set[str]) -> AccessGrant:
    with Session(services.engine) as session:
        grants = session.exec(
            select(AccessGrant).where(
                AccessGrant.request_uid == request_uid, AccessGrant.subject == username
            )
        ).all()
    for grant in grants:
        if grant.state == GrantState.ACTIVE and actions & set(grant.actions):
            return grant
    raise ApiProblem(
        403,
        "access-denied",
        f"request {request_uid} gives you no active "
        f"{'/'.join(sorted(actions))} grant; file one and have it approved",
    )


@router.post("/exports")
def export(body: ExportIn, services: ServicesDep, caller: CallerDep) -> Response:
    """A file of exactly the approved archives and field groups (Art 23–24)."""
    grant = _grant(services, body.request, caller.username, {"export", "provide"})
    action = Action.EXPORT if "export" in grant.actions else Action.PROVIDE
    groups = tuple(grant.groups)
    for no in grant.archives:  # decided per archive, at this instant
        decision = _require(
            services, caller, action, AuditAction.EXPORT, _meta(services, no), groups
        )
        if set(decision.groups) != set(groups) or decision.grant_id != grant.uid:
            raise ApiProblem(403, "access-denied", f"the grant no longer covers archive {no}")
    views = services.store.export(
        grant.archives,
        groups,
        actor=caller.actor,
        purpose=grant.purpose,
        grant_id=grant.uid,
        reason=grant.reason,
        provision=action is Action.PROVIDE,
    )
    headers = {
        "Cache-Control": "no-store",
        "Content-Disposition": f'attachment; filename="export-{grant.uid}.{body.format}"',
    }
    if body.format == "json":
        payload = [{"archive_no": v.meta.archive_no, **v.content} for v in views]
        return Response(
            json.dumps(payload, ensure_ascii=False), media_type="application/json", headers=headers
        )
    fields = [f for g in groups for f in services.store.schema.groups[g].fields]
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["archive_no", *fields])
    for v in views:
        flat = {k: val for g in v.content.values() for k, val in g.items()}
        writer.writerow([v.meta.archive_no, *(_safe_cell(flat.get(f, "")) for f in fields)])
    return Response(out.getvalue(), media_type="text/csv; charset=utf-8", headers=headers)


def _safe_cell(value: str) -> str:
    """Neutralise spreadsheet formulas (CSV injection) in exported cells."""
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


@router.post("/customers/{archive_no}/destroy")
def destroy(
    archive_no: ArchivePath, body: DestroyIn, services: ServicesDep, caller: CallerDep
) -> dict[str, Any]:
    """Crypto-shred an archive under an approved destroy request; returns the certificate."""
    grant = _grant(services, body.request, caller.username, {"destroy"})
    if archive_no not in grant.archives:
        raise ApiProblem(
            403, "access-denied", f"request {body.request} does not cover archive {archive_no}"
        )
    decision = _require(
        services, caller, Action.DESTROY, AuditAction.DESTROY, _meta(services, archive_no)
    )
    return services.store.destroy(
        archive_no,
        actor=caller.actor,
        reason=body.reason or grant.reason,
        approval=decision.grant_id or grant.uid,
    )


@router.get("/reports/summary")
def report_summary(services: ServicesDep, caller: CallerDep) -> dict[str, Any]:
    """Statistics over the customer list (Art 10) under an approved report request."""
    decision = _require(services, caller, Action.REPORT, AuditAction.REPORT, None)
    return services.store.statistics(
        actor=caller.actor, grant_id=decision.grant_id, purpose=decision.purpose
    )
