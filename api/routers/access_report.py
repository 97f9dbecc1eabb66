"""The customer's access report (PIPL Art 45, GDPR Art 15), for compliance and the handlers."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path

from api.deps import CallerDep, ServicesDep
from api.schemas import ArchiveNo

router = APIRouter(prefix="/customers", tags=["customers"])


@router.get("/{archive_no}/access-report")
def access_report(
    archive_no: Annotated[ArchiveNo, Path(description="Archive number, e.g. KH-2026-000123")],
    services: ServicesDep,
    caller: CallerDep,
) -> dict[str, Any]:
    """What is held (names and states, never content) and every access: who, when, why,
    under which grant, exported to whom. Audited as ``archive:access-report``."""
    return services.access_reports.report(caller.principal, caller.actor, archive_no)
