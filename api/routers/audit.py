"""The audit trail for compliance: query, verify, checkpoints and inclusion proofs."""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from fastapi.concurrency import run_in_threadpool

from api.audit_trail import TrailQuery
from api.deps import CallerDep, ServicesDep
from api.errors import ApiProblem
from vault.records import ARCHIVE_NO

router = APIRouter(prefix="/audit", tags=["audit"])


@router.get("")
def search_log(
    services: ServicesDep,
    caller: CallerDep,
    actor: Annotated[
        str | None,
        Query(max_length=64, pattern=r"^[^\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]*$"),
    ] = None,
    archive: Annotated[str | None, Query(pattern=f"^{ARCHIVE_NO.pattern}$")] = None,
    action: Annotated[str | None, Query(max_length=40)] = None,
    outcome: Annotated[str | None, Query(pattern="^(allowed|denied|error)$")] = None,
    since: datetime | None = None,
    until: datetime | None = None,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    """Who did what to which archive (compliance and the information supervisor)."""
    records = services.audit_trail.search(
        caller,
        TrailQuery(
            actor=actor,
            archive=archive,
            action=action,
            outcome=outcome,
            since=since,
            until=until,
            offset=offset,
            limit=limit,
        ),
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
    report = await run_in_threadpool(services.audit_trail.verify, caller)
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
    head = services.audit_trail.signed_head(caller)
    if head is None:
        raise ApiProblem(404, "no-checkpoint", "the log is empty; nothing has been signed yet")
    cp = head.checkpoint
    return {
        "origin": cp.origin,
        "size": cp.size,
        "root": cp.root_b64,
        "timestamp": cp.timestamp,
        "note": cp.note,
        "verifier_key": head.verifier_key,
        "public_key_pem": head.public_key_pem,
    }


@router.get("/proof/{seq}")
def inclusion_proof(
    seq: Annotated[int, Path(ge=1, le=2**62)], services: ServicesDep, caller: CallerDep
) -> dict[str, Any]:
    """RFC 9162 inclusion proof of one entry in the newest signed checkpoint's tree."""
    inclusion = services.audit_trail.inclusion(caller, seq)
    cp, proof = inclusion.checkpoint, inclusion.proof
    return {
        "seq": seq,
        "tree_size": cp.size if cp else None,
        "root": cp.root_b64 if cp else None,
        "proof": [base64.b64encode(p).decode() for p in proof],
        "checkpoint": cp.note if cp else None,
    }
