"""Re-derive a pending request's chain from its archives' current state.

A request's stages are copied from ``chains.toml`` when it is filed, for the
archives' highest classification and top-secret custodian at that moment. If an
archive is raised, or a top-secret archive gets another custodian, while the
request waits, the copied chain no longer says who must sign: a view request
filed on an internal archive would be approved without the customer-service
manager after the archive became secret. So before every approving signature
the chain is derived again from the archives as they are now (a denial needs
no re-derivation: it never widens access, and an unfinishable request must
stay deniable):

- the classification only ever rises here (a lowered marking keeps the chain as
  filed: dropping signers from a request in flight is never done on the side);
- signed stages stay signed (they keep their place, so each signature keeps its
  ``stage_index``), except a custodian stage signed by someone who is no longer
  the custodian: it is marked ``superseded`` and the current custodian signs anew;
- the stages still to sign become those the current chain needs and no valid
  signature covers, in the chain's order, so the next signer is the first of
  them: the request goes back to the first new stage that comes at or before
  where it stood;
- new stages carry their alternates as filing stores them; a requester who is
  now the custodian leaves the custodian's stage to its alternate. If nobody
  could finish the chain as it is now, the request still waits (it can be
  denied or withdrawn, and the staff may change) and the requester is told
  which stage is stuck and what would fix it (``policies.reach``).

A change is written to the request (``stages``, ``classification``,
``custodian``, ``chain_changes``, ``version``), appended to the audit log and
told to the requester, inside the caller's transaction. The grant a request
finally produces records what it was approved for (``policies.grant_terms``),
so a change after approval is caught at the read instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlmodel import Session, col, select

from audit.events import Actor, AuditAction, AuditEvent, Outcome
from policies import reach
from policies.chains import Chains
from policies.desk import Desk, bump
from policies.errors import Refused
from policies.models import AccessRequest, RequestSignature
from policies.roles import CHANGE_KINDS, NotificationEvent, RequestState, rank
from vault.models import Archive, ArchiveStatus


@dataclass(frozen=True, slots=True)
class ChainChange:
    """One re-derivation: what the archives are now and what that did to the chain."""

    classification: tuple[str, str]  # (as recorded, now)
    custodian: tuple[str | None, str | None]
    added: tuple[str, ...]
    superseded: tuple[str, ...]
    next_before: str | None
    next_after: str | None
    at: datetime = field(compare=False)

    def as_dict(self) -> dict[str, Any]:
        return {
            "at": self.at.isoformat(timespec="seconds"),
            "classification": {"from": self.classification[0], "to": self.classification[1]},
            "custodian": {"from": self.custodian[0], "to": self.custodian[1]},
            "added": list(self.added),
            "superseded": list(self.superseded),
            "next": {"from": self.next_before, "to": self.next_after},
        }


def _unfinishable(req: AccessRequest, actor: Actor, message: str) -> Refused:
    event = AuditEvent(
        action=AuditAction.REQUEST_RECHAIN,
        actor=actor,
        outcome=Outcome.DENIED,
        archives=tuple(req.archives),
        purpose=req.purpose,
        reason=message,
        detail={"request": req.uid, "rule": "unfinishable"},
    )
    return Refused(message, rule="unfinishable", event=event)


def _current_state(
    session: Session, req: AccessRequest, actor: Actor
) -> tuple[str, str | None] | None:
    """The archives' highest classification and top-secret custodian now (``None``: none left)."""
    rows = session.exec(
        select(Archive).where(
            col(Archive.archive_no).in_(list(req.archives)),
            Archive.status == ArchiveStatus.ACTIVE.value,
        )
    ).all()
    if not rows:
        return None
    highest = max((a.classification for a in rows), key=lambda c: rank(c, unknown=99))
    keepers = {a.custodian or None for a in rows if a.classification == "top_secret"}
    if len(keepers) > 1 or None in keepers:
        raise _unfinishable(
            req,
            actor,
            f"request {req.uid} can no longer be completed: its top-secret archives now "
            + (
                "have different custodians (each custodian signs their own request)"
                if len(keepers) > 1
                else "include one without a custodian (Art 22)"
            )
            + "; withdraw it and file again",
        )
    return highest, next(iter(keepers), None)


def _signed_by(session: Session, req: AccessRequest) -> dict[int, str]:
    return {
        index: signer
        for index, signer in session.exec(
            select(RequestSignature.stage_index, RequestSignature.signer).where(
                RequestSignature.request_id == req.id, RequestSignature.decision == "approve"
            )
        ).all()
    }


def derive(
    session: Session, req: AccessRequest, chains: Chains, *, actor: Actor, now: datetime
) -> tuple[list[dict[str, Any]], str, str | None, ChainChange] | None:
    """The chain the request needs now, or ``None`` when it is unchanged. No writes."""
    if req.state != RequestState.PENDING or now >= req.expires_at:
        return None  # no signature can follow; the workflow says why
    if req.kind in {k.value for k in CHANGE_KINDS}:
        # A change request's chain was resolved with its alternates when filed, and the
        # final signature refuses to apply it if its archive or account has moved on
        # since (``policies.changes``): deriving it again from this file would drop them.
        return None
    spec = chains.kind(req.kind)
    if not spec.needs_archives or not req.archives:
        return None
    state = _current_state(session, req, actor)
    if state is None:
        return None
    current, keeper = state
    recorded = req.classification
    raised = rank(current, unknown=99) > rank(recorded, unknown=99)
    classification = current if raised else recorded
    custodian = req.custodian
    if current == "top_secret" and keeper != req.custodian:
        custodian = keeper
    if not raised and custodian == req.custodian:
        return None
    needed = spec.stages_for(classification=classification, external=req.requester_external)
    stranded = any(s.custodian and not s.alternate_roles for s in needed)
    if custodian is not None and custodian == req.requester and stranded:
        raise _unfinishable(
            req,
            actor,
            f"request {req.uid} can no longer be completed: its requester is now the "
            "custodian of its top-secret archive and cannot sign it; ask for another "
            "custodian to be named, or withdraw it",
        )
    signed = _signed_by(session, req)
    prefix: list[dict[str, Any]] = []
    credited: set[str] = set()
    superseded: list[str] = []
    for index, stage in enumerate(req.stages[: req.next_stage]):
        entry = dict(stage)
        stale = signed.get(index) != custodian
        if entry.get("custodian") and not entry.get("superseded") and stale:
            entry["superseded"] = True
            superseded.append(entry["name"])
        if not entry.get("superseded"):
            credited.add(entry["name"])
        prefix.append(entry)
    # Snapshots as filing takes them, alternates included.
    rest = [s.as_dict() for s in needed if s.name not in credited]
    names = {s["name"] for s in rest}
    # Stages the request was filed with and nobody signed yet stay required (fail closed).
    rest += [dict(s) for s in req.stages[req.next_stage :] if s["name"] not in names | credited]
    before = {s["name"] for s in req.stages[req.next_stage :]}
    following = req.stages[req.next_stage]["name"] if req.next_stage < len(req.stages) else None
    change = ChainChange(
        classification=(recorded, classification),
        custodian=(req.custodian, custodian),
        added=tuple(s["name"] for s in rest if s["name"] not in before or s["name"] in superseded),
        superseded=tuple(superseded),
        next_before=following,
        next_after=rest[0]["name"] if rest else None,
        at=now,
    )
    return prefix + rest, classification, custodian, change


def refresh(
    session: Session,
    req: AccessRequest,
    desk: Desk,
    *,
    actor: Actor,
    now: datetime,
) -> ChainChange | None:
    """Re-derive ``req``'s chain (locked by the caller) and record a change; see module doc.

    The requester is told through the desk, so the notice also goes by mail."""
    derived = derive(session, req, desk.chains, actor=actor, now=now)
    if derived is None:
        return None
    stages, classification, custodian, change = derived
    bump(session, req, req.version)
    req.stages = stages
    req.classification = classification
    req.custodian = custodian
    req.chain_changes = [*req.chain_changes, change.as_dict()]
    session.add(req)
    session.flush()
    desk.event(
        session,
        AuditEvent(
            action=AuditAction.REQUEST_RECHAIN,
            actor=actor,
            archives=tuple(req.archives),
            purpose=req.purpose,
            reason="the archives' classification or custodian changed while the request waited",
            detail={"request": req.uid, "kind": req.kind, **change.as_dict()},
        ),
    )
    labels = {s["name"]: s["label"] for s in stages}
    message = _message(req.uid, change, labels)
    # A chain nobody could finish now keeps waiting (it may still be denied or
    # withdrawn, and the staff may change), but the requester learns which stage
    # is stuck and what would unstick it.
    blocked = reach.unfinishable_request(session, req)
    if blocked is not None:
        message += "; " + blocked.message(f"request {req.uid} as it is now")
    desk.notify(session, req.requester, req.uid, NotificationEvent.RECHAINED, message, now)
    return change


def _message(uid: str, change: ChainChange, labels: dict[str, str]) -> str:
    parts = [f"the archives of request {uid} changed"]
    if change.classification[0] != change.classification[1]:
        parts.append(f"they are now {change.classification[1]}")
    if change.custodian[0] != change.custodian[1]:
        parts.append(f"their custodian is now {change.custodian[1]}")
    if change.added:
        parts.append("it now also needs " + ", ".join(labels.get(n, n) for n in change.added))
    if change.next_after:
        parts.append(f"next: {labels.get(change.next_after, change.next_after)}")
    return "; ".join(parts)


def refresh_uid(
    session: Session,
    uid: str,
    desk: Desk,
    *,
    actor: Actor,
    now: datetime,
) -> ChainChange | None:
    """:func:`refresh` for a request named by uid (nothing happens for an unknown uid)."""
    req = session.exec(
        select(AccessRequest).where(AccessRequest.uid == uid).with_for_update()
    ).first()
    if req is None:
        return None
    return refresh(session, req, desk, actor=actor, now=now)
