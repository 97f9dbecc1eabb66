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

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from api.deps import ServicesDep

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz(services: ServicesDep) -> Any:
    if not services.health():
        return JSONResponse({"status": "unavailable"}, status_code=503)
    return {"status": "ok"}
