"""The audit trail for compliance: query, verify, checkpoints and inclusion proofs."""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from fastapi.concurrency import run_in_threadpool

from api.deps import Caller, CallerDep, ServicesDep
from api.errors import ApiProblem
from api.services import Services
from audit.events import AuditAction, AuditEvent
from foundation.db import transaction
from policies.errors import AccessDenied
from policies.roles import Action

router = APIRouter(prefix="/audit", tags=["audit"])


def _auditor(services: Services, caller: Caller) -> None:
    decision = services.decide(caller.principal, Action.AUDIT, None)
    if not decision.allowed:
        services.record_denial(caller.actor, AuditAction.AUDIT_READ, decision)
        raise AccessDenied(decision)


def _record_read(services: Services, caller: Caller, endpoint: str, **detail: Any) -> None:
    """Reading the audit trail is itself an access: one entry, committed before the answer.

    Called after the read and before anything is returned, so an entry that
    cannot be written (a 503) means nothing was shown. The detail holds the
    endpoint and the filters used, which are identifiers, never content.
    """
    with transaction(services.engine) as session:
        services.audit.append(
            session,
            AuditEvent(
                action=AuditAction.AUDIT_READ,
                actor=caller.actor,
                detail={"endpoint": endpoint, **detail},
            ),
        )


@router.get("")
def search_log(
    services: ServicesDep,
    caller: CallerDep,
    actor: Annotated[
        str | None,
        Query(max_length=64, pattern=r"^[^\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]*$"),
    ] = None,
    archive: Annotated[str | None, Query(pattern=r"^KH-\d{4}-\d{6}$")] = None,
    action: Annotated[str | None, Query(max_length=40)] = None,
    outcome: Annotated[str | None, Query(pattern="^(allowed|denied|error)$")] = None,
    since: datetime | None = None,
    until: datetime | None = None,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    """Who did what to which archive (compliance and the information supervisor)."""
    _auditor(services, caller)
    for name, moment in (("since", since), ("until", until)):
        if moment is not None and moment.tzinfo is None:
            raise ApiProblem(422, "validation-failed", f"{name} needs a time zone (e.g. +08:00)")
    records = services.audit.query(
        actor=actor,
        archive=archive,
        action=action,
        outcome=outcome,
        since=since,
        until=until,
        limit=limit,
        offset=offset,
    )
    _record_read(
        services,
        caller,
        "query",
        filters={
            name: value
            for name, value in (
                ("actor", actor),
                ("archive", archive),
                ("action", action),
                ("outcome", outcome),
                ("since", since.isoformat() if since else None),
                ("until", until.isoformat() if until else None),
            )
            if value is not None
        },
        offset=offset,
        limit=limit,
        count=len(records),
    )
    return {
        "items": [
            {
                "seq": r.seq,
                "time": r.time.isoformat(),
                "actor": r.actor,
                "actor_role": r.actor_role,
                "action": r.action,
                "outcome": r.outcome,
                "archives": list(r.archives),
                "groups": list(r.groups),
                "grant_id": r.grant_id,
                "purpose": r.purpose,
                "reason": r.reason,
                "client": r.client,
                "detail": r.detail,
                "entry_hash": r.entry_hash,
            }
            for r in records
        ],
        "offset": offset,
        "limit": limit,
    }


@router.get("/verify")
async def verify(services: ServicesDep, caller: CallerDep) -> dict[str, Any]:
    """Re-hash the whole log and check every signed checkpoint."""
    _auditor(services, caller)
    report = await run_in_threadpool(services.audit.verify)
    await run_in_threadpool(
        _record_read, services, caller, "verify", ok=report.ok, entries=report.entries
    )
    return {
        "ok": report.ok,
        "entries": report.entries,
        "checkpoints": report.checkpoints,
        "summary": report.summary(),
        "problem": str(report.problem) if report.problem else None,
        "problems": [str(p) for p in report.all_problems()],
        "notes": list(report.notes),
    }


@router.get("/checkpoints/latest")
def latest_checkpoint(services: ServicesDep, caller: CallerDep) -> dict[str, Any]:
    """The newest signed checkpoint (C2SP tlog-checkpoint note) and the verifier key."""
    _auditor(services, caller)
    cp = services.audit.latest_checkpoint() or services.audit.checkpoint()
    if cp is None:
        raise ApiProblem(404, "no-checkpoint", "the log is empty; nothing has been signed yet")
    _record_read(services, caller, "checkpoint", size=cp.size)
    return {
        "origin": cp.origin,
        "size": cp.size,
        "root": cp.root_b64,
        "timestamp": cp.timestamp,
        "note": cp.note,
        "verifier_key": services.audit.verifier_key(),
        "public_key_pem": services.audit.public_key_pem(),
    }


@router.get("/proof/{seq}")
def inclusion_proof(
    seq: Annotated[int, Path(ge=1, le=2**62)], services: ServicesDep, caller: CallerDep
) -> dict[str, Any]:
    """RFC 9162 inclusion proof of one entry in the newest signed checkpoint's tree."""
    _auditor(services, caller)
    cp = services.audit.latest_checkpoint()
    if cp is None or seq > cp.size:
        services.audit.checkpoint()
        cp = services.audit.latest_checkpoint()
    proof = services.audit.inclusion_proof(seq, cp.size if cp else None)
    _record_read(services, caller, "proof", seq=seq, tree_size=cp.size if cp else None)
    return {
        "seq": seq,
        "tree_size": cp.size if cp else None,
        "root": cp.root_b64 if cp else None,
        "proof": [base64.b64encode(p).decode() for p in proof],
        "checkpoint": cp.note if cp else None,
    }
