"""Liveness for outsiders: ok or not, and nothing else.

``/healthz`` needs no token, so it tells nothing a token would: not the audit
log's head (every read, search and login moves it, so polling it would show an
outsider the vault's activity), not the database kind, not why a probe failed.
It reads the database and the audit table and never appends: an append takes
the audit log's lock, which an unauthenticated caller must not be able to
queue behind. How far the log has grown is for authenticated readers
(``/audit/checkpoints/latest``, ``/audit/verify``).
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from fastapi import APIRouter
from fastapi.responses import JSONResponse

from api.deps import ServicesDep
from audit.models import AuditEntry

router = APIRouter(tags=["health"])

_ENTRY = AuditEntry.__table__  # type: ignore[attr-defined]
# Whether the audit table answers, not what is in it: at most one constant row.
_AUDIT_PROBE = sa.select(sa.literal(1)).select_from(_ENTRY).limit(1)


@router.get("/healthz")
def healthz(services: ServicesDep) -> Any:
    try:
        with services.engine.connect() as conn:
            conn.execute(sa.select(sa.literal(1)))
            conn.execute(_AUDIT_PROBE).all()
    except Exception:  # noqa: BLE001 - any failure is "not healthy"; no internals shown
        return JSONResponse({"status": "unavailable"}, status_code=503)
    return {"status": "ok"}
