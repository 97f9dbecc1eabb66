"""Exports under an approved copy or external request, and destruction under a destroy request."""

from __future__ import annotations

import csv
import io
import json
from typing import Annotated, Any, Literal

from fastapi import APIRouter
from fastapi.responses import Response
from pydantic import StringConstraints

from api.deps import CallerDep, ServicesDep
from api.routers.customers import ArchivePath
from api.schemas import PlainText, Strict

router = APIRouter(tags=["exports"])
RequestId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_\-]{4,40}$")]


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
    approved format; each takes one of the approved copies (the header says which)."""
    done = services.acts.export(caller, body.request, body.format)
    grant, groups, views = done.grant, done.groups, done.views
    headers = {
        "Cache-Control": "no-store",
        "Content-Disposition": (
            f'attachment; filename="export-{grant.uid}-{done.copy}.{done.format}"'
        ),
        "X-Copy": f"{done.copy}/{grant.copies}",
    }
    if done.format == "json":
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
    return services.acts.destroy(caller, archive_no, body.request, body.reason)


@router.get("/reports/summary")
def report_summary(services: ServicesDep, caller: CallerDep) -> dict[str, Any]:
    """Statistics over the customer list (Art 10) under an approved report request."""
    return services.acts.statistics(caller)
