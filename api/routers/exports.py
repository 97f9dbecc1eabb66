"""Exports under an approved copy or external request, and destruction under a destroy request."""

from __future__ import annotations

import csv
import io
import json
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query
from fastapi.responses import Response
from pydantic import Field, StringConstraints

from api.deps import CallerDep, ServicesDep
from api.routers.customers import ArchivePath
from api.routers.requests import request_public
from api.schemas import PlainText, ReportItem, Strict
from policies import report_items
from policies.models import AccessRequest

router = APIRouter(tags=["exports"])
RequestId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_\-]{4,40}$")]
RequestPath = Annotated[str, Path(pattern=r"^[A-Za-z0-9_\-]{4,40}$")]


class ExportIn(Strict):
    request: RequestId
    # None: the format the request was approved for; another one is refused.
    format: Literal["csv", "json"] | None = None


class DestroyIn(Strict):
    request: RequestId
    reason: Annotated[PlainText, StringConstraints(min_length=1, max_length=2000)] | None = None


@router.post("/exports")
def export(body: ExportIn, services: ServicesDep, caller: CallerDep) -> Response:
    """A file of exactly the approved archives and field groups (Art 23–24), in the
    approved format; each takes one of the approved copies (the header says which).
    The rows carry the export's own fingerprint (``policies.fingerprint``)."""
    done = services.acts.export(caller, body.request, body.format)
    grant, groups = done.grant, done.groups
    headers = {
        "Cache-Control": "no-store",
        "Content-Disposition": (
            f'attachment; filename="export-{grant.uid}-{done.copy}.{done.format}"'
        ),
        "X-Copy": f"{done.copy}/{grant.copies}",
    }
    if done.format == "json":
        payload = [{"archive_no": no, **content} for no, content in done.rows]
        return Response(
            json.dumps(payload, ensure_ascii=False), media_type="application/json", headers=headers
        )
    fields = [f for g in groups for f in services.store.schema.groups[g].fields]
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["archive_no", *fields])
    for no, content in done.rows:
        flat = {k: val for g in content.values() for k, val in g.items()}
        writer.writerow([no, *(_safe_cell(flat.get(f, "")) for f in fields)])
    return Response(out.getvalue(), media_type="text/csv; charset=utf-8", headers=headers)


def _safe_cell(value: str) -> str:
    """Neutralise spreadsheet formulas (CSV injection) in exported cells."""
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


@router.post("/customers/{archive_no}/destroy")
def destroy(
    archive_no: ArchivePath, body: DestroyIn, services: ServicesDep, caller: CallerDep
) -> dict[str, Any]:
    """Crypto-shred an archive under an approved destroy request; returns the certificate."""
    return services.acts.destroy(caller, archive_no, body.request, body.reason)


class ReportIn(Strict):
    purpose: Annotated[PlainText, StringConstraints(max_length=32)] = "statistics"
    reason: Annotated[PlainText, StringConstraints(min_length=1, max_length=2000)]
    scope: Literal["department", "all"] = "department"
    items: list[ReportItem] | None = Field(default=None, min_length=1, max_length=16)
    hours: int | None = Field(default=None, ge=1, le=24 * 366)


class ItemsIn(Strict):
    items: list[ReportItem] = Field(min_length=1, max_length=16)
    reason: Annotated[PlainText, StringConstraints(min_length=1, max_length=2000)]


@router.get("/reports/summary")
def report_summary(
    services: ServicesDep,
    caller: CallerDep,
    grant: Annotated[str | None, Query(pattern=r"^[A-Za-z0-9_\-]{4,40}$")] = None,
) -> dict[str, Any]:
    """Statistics over the customer list (Art 10) under an approved report request: only
    the departments and items its grant covers, named under ``covers``."""
    return services.acts.statistics(caller, grant)


@router.post("/reports", status_code=201)
def file_report(body: ReportIn, services: ServicesDep, caller: CallerDep) -> dict[str, Any]:
    """File a statistical report request (Art 10) stating its scope (your department, or
    all departments, which the general manager approves) and its items (default: all)."""
    req = services.in_transaction(
        lambda s: services.workflow.filing.file(
            s,
            caller.principal,
            kind="report",
            purpose=body.purpose,
            reason=body.reason,
            now=services.clock(),
            hours=body.hours,
            scope=body.scope,
            items=body.items,
        )
    )
    return _report_public(req)


@router.post("/reports/{uid}/items", status_code=202)
def change_items(
    uid: RequestPath, body: ItemsIn, services: ServicesDep, caller: CallerDep
) -> dict[str, Any]:
    """Ask to change an approved report's items (Art 11): a request the general manager
    alone signs, recorded with the customer-service department."""
    req = services.in_transaction(
        lambda s: report_items.file_items_change(
            services.workflow,
            s,
            caller.principal,
            target=uid,
            items=list(body.items),
            reason=body.reason,
            now=services.clock(),
        )
    )
    return request_public(req)


def _report_public(req: AccessRequest) -> dict[str, Any]:
    return request_public(req) | {
        "report": {
            "scope": req.report_scope,
            "departments": (
                "all" if req.report_departments is None else list(req.report_departments)
            ),
            "items": list(req.report_items or ()),
        }
    }
