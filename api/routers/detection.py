"""Decoy archives (issue 13): the information supervisor marks and lists them.

Only the information supervisor sees which archives are decoys: anyone else
gets 403 (audited) here, and nothing elsewhere in the API says so. Detection
itself needs no route: decoys are checked on every read, search and export,
and the other rules run in the service's minute housekeeping and in
``archive-vault detect``.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter
from pydantic import StringConstraints

from api.deps import CallerDep, ServicesDep
from api.schemas import Strict
from policies.detection_models import DecoyArchive
from vault.records import ARCHIVE_NO

router = APIRouter(prefix="/detection", tags=["detection"])


class DecoyIn(Strict):
    archive_no: Annotated[str, StringConstraints(pattern=f"^{ARCHIVE_NO.pattern}$")]


def _public(decoy: DecoyArchive) -> dict[str, Any]:
    return {
        "archive_no": decoy.archive_no,
        "marked_by": decoy.marked_by,
        "marked_at": decoy.marked_at.isoformat(),
        "notified_at": decoy.notified_at.isoformat() if decoy.notified_at else None,
    }


@router.post("/decoys", status_code=201)
def mark_decoy(body: DecoyIn, services: ServicesDep, caller: CallerDep) -> dict[str, Any]:
    """Mark an existing archive as a decoy: any read, search hit or export of it raises a case."""

    def run(session: Any) -> dict[str, Any]:
        decoy = services.decoys.mark(
            session, caller.principal, caller.actor, body.archive_no, services.clock()
        )
        return _public(decoy)

    return services.in_transaction(run)


@router.get("/decoys")
def list_decoys(services: ServicesDep, caller: CallerDep) -> dict[str, Any]:
    """Every decoy (the information supervisor only; audited)."""

    def run(session: Any) -> dict[str, Any]:
        rows = services.decoys.listing(session, caller.principal, caller.actor, services.clock())
        return {"items": [_public(d) for d in rows]}

    return services.in_transaction(run)
