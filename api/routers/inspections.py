"""The half-yearly inspection (Art 14) over HTTP: run one, list them, read one.

Compliance and the information supervisor only (policy action ``inspect``);
anyone else gets 403 and the refusal is audited. A run walks the whole vault,
so it is done in the thread pool; the answer is the signed report.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse

from api.deps import CallerDep, ServicesDep
from policies.inspection import report_of
from policies.inspection_html import render_html
from policies.inspection_models import Inspection

router = APIRouter(prefix="/inspections", tags=["inspections"])
InspectionUid = Annotated[str, Path(pattern=r"^IN-[0-9A-F]{10}$")]


def _line(row: Inspection) -> dict[str, Any]:
    return {
        "uid": row.uid,
        "started_at": row.started_at.isoformat(),
        "finished_at": row.finished_at.isoformat(),
        "by": row.actor,
        "clean": row.clean,
        "report_sha256": row.report_sha256,
        "audit_seq": row.audit_seq,
    }


@router.post("", status_code=201)
async def run_inspection(services: ServicesDep, caller: CallerDep) -> dict[str, Any]:
    """Inspect the whole vault now: signed, stored and recorded in the audit log."""
    row = await run_in_threadpool(services.inspections.start, caller)
    return _line(row) | {"report": report_of(row)}


@router.get("")
def list_inspections(
    services: ServicesDep,
    caller: CallerDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=10**6)] = 0,
) -> dict[str, Any]:
    """The record of inspections, newest first, and whether the next one is due."""
    rows, total = services.inspections.listing(caller, limit, offset)
    return {
        "items": [_line(r) for r in rows],
        "total": total,
        "offset": offset,
        "limit": limit,
        "due": services.inspections.due().public(),
    }


@router.get("/{uid}")
def read_inspection(uid: InspectionUid, services: ServicesDep, caller: CallerDep) -> dict[str, Any]:
    """One inspection and its signed report (verifiable offline)."""
    row = services.inspections.show(caller, uid)
    return _line(row) | {"report": report_of(row)}


@router.get("/{uid}/html", response_class=HTMLResponse)
def read_inspection_page(uid: InspectionUid, services: ServicesDep, caller: CallerDep) -> str:
    """The same report as a readable page (the signature is checked on the JSON)."""
    return render_html(report_of(services.inspections.show(caller, uid)))
