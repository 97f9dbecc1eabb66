"""Liveness that means something: the database answers and the audit log takes writes."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlmodel import Session

from api.deps import ServicesDep
from audit.events import Actor, AuditAction, AuditEvent

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz(services: ServicesDep) -> Any:
    try:
        # A write probe that is rolled back: proves the audit table accepts INSERTs.
        with Session(services.engine) as session:
            session.execute(sa.text("SELECT 1"))
            services.audit.append(
                session, AuditEvent(action=AuditAction.LIST, actor=Actor("healthz", "system"))
            )
            session.rollback()
    except Exception as exc:  # noqa: BLE001 - any failure is "not healthy"; no internals shown
        return JSONResponse(
            {"status": "unavailable", "reason": type(exc).__name__}, status_code=503
        )
    return {
        "status": "ok",
        "database": services.engine.dialect.name,
        "audit_head": services.audit.head(),
    }
