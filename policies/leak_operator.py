"""What the operator's command line shows of leak cases: the clocks, not the case.

The operator (``cli:<user>``) runs the vault and holds its key file, but is not
a handler: Art 27 sends reports to the information supervisor and the
customer-service manager, and an administrator in the API gets "no such case".
So the command line shows what keeps the legal clocks visible (which cases
exist, their state, their duties and deadlines, overdue first) and the notice
text, which is built from facts only. It never shows what was reported (sealed
text), who reported it, which account a case is about, or any reason; each
look is an audit entry (``leak:read`` as ``operator``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlmodel import Session, col, select

from audit.events import Actor, AuditAction, AuditEvent, AuditSink
from foundation.settings import Settings
from policies.errors import NotFound
from policies.leak_duties import clocks
from policies.leak_duty_models import LeakDuty, duty_order, overdue_clause
from policies.leak_models import LeakCase, LeakCaseEvent
from policies.leak_notice import notice_facts, render
from vault.schema import ProfileSchema

MAX_LIST = 500


def _summary(case: LeakCase, duty: LeakDuty | None, now: datetime) -> dict[str, Any]:
    return {
        "uid": case.uid,
        "state": case.state,
        "outcome": case.outcome or None,
        "source": case.source,
        "rule": case.rule or None,
        "created_at": case.created_at.isoformat(),
        "updated_at": case.updated_at.isoformat(),
        "archives": len(case.archives),
        "customers": duty.customers if duty and duty.pi_affected else 0,
        "groups": list(duty.groups) if duty and duty.pi_affected else [],
    } | clocks(duty, now)


def _seen(session: Session, audit: AuditSink, actor: Actor, detail: dict[str, Any]) -> None:
    audit.append(
        session,
        AuditEvent(action=AuditAction.LEAK_READ, actor=actor, detail={"as": "operator"} | detail),
    )


def list_cases(
    session: Session,
    audit: AuditSink,
    actor: Actor,
    now: datetime,
    *,
    overdue: bool = False,
    limit: int = MAX_LIST,
) -> list[dict[str, Any]]:
    """Every case (or the overdue ones), overdue first, then by deadline, then newest."""
    query = select(LeakCase, LeakDuty).outerjoin(
        LeakDuty, col(LeakDuty.case_id) == col(LeakCase.id)
    )
    if overdue:
        query = query.where(overdue_clause(now))
    rows = session.exec(
        query.order_by(
            *duty_order(now), col(LeakCase.created_at).desc(), col(LeakCase.id).desc()
        ).limit(min(limit, MAX_LIST))
    ).all()
    _seen(session, audit, actor, {"what": "list", "overdue": overdue, "count": len(rows)})
    return [_summary(case, duty, now) for case, duty in rows]


def _load(session: Session, uid: str) -> tuple[LeakCase, LeakDuty | None]:
    case = session.exec(select(LeakCase).where(LeakCase.uid == uid[:32])).first()
    if case is None:
        raise NotFound(f"no leak case {uid[:32]!r}")
    duty = session.exec(select(LeakDuty).where(LeakDuty.case_id == case.id)).first()
    return case, duty


def _events(session: Session, case: LeakCase) -> list[LeakCaseEvent]:
    return list(
        session.exec(
            select(LeakCaseEvent)
            .where(LeakCaseEvent.case_id == case.id)
            .order_by(col(LeakCaseEvent.id))
        ).all()
    )


def show_case(
    session: Session, audit: AuditSink, actor: Actor, uid: str, now: datetime
) -> dict[str, Any]:
    """One case's summary and its history as kinds and actions (no actors, no text)."""
    case, duty = _load(session, uid)
    _seen(session, audit, actor, {"what": "show", "case": case.uid})
    history = [
        {
            "at": e.at.isoformat(),
            "kind": e.kind,
            "what": e.to_state or str(e.detail.get("action") or e.detail.get("op") or ""),
        }
        for e in _events(session, case)
    ]
    return _summary(case, duty, now) | {"history": history}


def notice(
    session: Session,
    audit: AuditSink,
    actor: Actor,
    uid: str,
    schema: ProfileSchema,
    settings: Settings,
) -> dict[str, str]:
    """The notice text in Chinese and English (facts only, as the handlers get it)."""
    case, duty = _load(session, uid)
    _seen(session, audit, actor, {"what": "notice", "case": case.uid})
    facts = notice_facts(case, duty, _events(session, case))
    return {
        lang: render(facts, schema, settings.leak_notice_contact, lang) for lang in ("zh", "en")
    }
