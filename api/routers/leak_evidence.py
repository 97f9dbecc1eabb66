"""Evidence from the audit log on a leak case (Art 27): attach (handlers), read and re-check.

``POST /leaks/{uid}/evidence`` freezes the answer to one question into the case
(``archives``: who read, exported, copied or lent them; ``account``: what it
touched) for a window, with inclusion proofs against a signed checkpoint.
The handlers and compliance read it; ``…/verify`` re-checks it against the log
and its key. The filer of a report never sees evidence.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path
from pydantic import AwareDatetime, Field, StringConstraints

from api.deps import CallerDep, ServicesDep
from api.routers.leaks import CaseUid
from api.schemas import Strict
from policies import leaks
from policies.leak_evidence_check import EvidenceQuery

router = APIRouter(prefix="/leaks", tags=["leaks"])
EvidenceUid = Annotated[str, Path(pattern=r"^EV-[0-9A-F]{10}$")]


class EvidenceIn(Strict):
    kind: Literal["archives", "account"]
    since: AwareDatetime
    until: AwareDatetime
    archives: list[Annotated[str, StringConstraints(max_length=32)]] = Field(
        default_factory=list, max_length=leaks.MAX_ARCHIVES
    )
    account: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = None


@router.post("/{uid}/evidence", status_code=201)
def attach_evidence(
    uid: CaseUid, body: EvidenceIn, services: ServicesDep, caller: CallerDep
) -> dict[str, Any]:
    """Freeze audit entries of a window into the case, each proven against a signed checkpoint."""
    query = EvidenceQuery(
        kind=body.kind,
        since=body.since,
        until=body.until,
        archives=tuple(body.archives),
        account=body.account,
    )
    return services.evidence.attach(caller.principal, caller.actor, uid, query)


@router.get("/{uid}/evidence")
def list_evidence(uid: CaseUid, services: ServicesDep, caller: CallerDep) -> dict[str, Any]:
    """The evidence records of a case (summaries), for its handlers and compliance."""
    items = services.evidence.index(caller.principal, caller.actor, uid)
    return {"items": items, "total": len(items)}


@router.get("/{uid}/evidence/{evidence}")
def read_evidence(
    uid: CaseUid, evidence: EvidenceUid, services: ServicesDep, caller: CallerDep
) -> dict[str, Any]:
    """One record: the accounts and what they touched, the entries, proofs and checkpoint."""
    return services.evidence.read(caller.principal, caller.actor, uid, evidence)


@router.get("/{uid}/evidence/{evidence}/verify")
def verify_evidence(
    uid: CaseUid, evidence: EvidenceUid, services: ServicesDep, caller: CallerDep
) -> dict[str, Any]:
    """Re-check a record against the log's key, its audit entry and the log itself."""
    check = services.evidence.check(caller.principal, caller.actor, uid, evidence)
    return {
        "evidence": check.evidence,
        "ok": check.ok,
        "entries": check.entries,
        "tree_size": check.tree_size,
        "problems": check.problems,
    }
