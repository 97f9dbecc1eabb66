"""Leak reports and their cases (Art 27): file, list, read, move on, record actions.

Anyone with an account files a report; the information supervisor and the
customer-service manager handle cases; compliance reads them all; the filer sees
the state of their own report. Every step is audited; a case is never deleted.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query
from pydantic import AwareDatetime, Field, StringConstraints

from api.deps import CallerDep, ServicesDep
from api.schemas import Strict
from policies import leaks
from policies.leak_duties import clocks
from policies.leaks import LeakReport

router = APIRouter(prefix="/leaks", tags=["leaks"])
CaseUid = Annotated[str, Path(pattern=r"^LK-[0-9A-F]{10}$")]
LongText = Annotated[str, StringConstraints(max_length=leaks.MAX_TEXT)]


class LeakReportIn(Strict):
    what_seen: Annotated[str, StringConstraints(min_length=1, max_length=leaks.MAX_TEXT)]
    noticed_at: AwareDatetime | None = None
    how_found: LongText = ""
    archives: list[Annotated[str, StringConstraints(max_length=32)]] = Field(
        default_factory=list, max_length=leaks.MAX_ARCHIVES
    )
    channel: Literal[leaks.CHANNELS] = "unknown"  # type: ignore[valid-type]
    remedial_action: LongText = ""


class MoveIn(Strict):
    state: Literal["investigating", "contained", "closed"]
    reason: Annotated[str, StringConstraints(min_length=1, max_length=leaks.MAX_TEXT)]
    outcome: Literal["confirmed", "unfounded", "dismissed"] | None = None


class ActionIn(Strict):
    action: Literal[leaks.ACTIONS]  # type: ignore[valid-type]
    reason: LongText = ""


@router.post("", status_code=201)
def file_report(body: LeakReportIn, services: ServicesDep, caller: CallerDep) -> dict[str, Any]:
    """Report that customer information has leaked or may leak; both handlers are told."""
    report = LeakReport(
        what_seen=body.what_seen,
        noticed_at=body.noticed_at,
        how_found=body.how_found,
        archives=tuple(body.archives),
        channel=body.channel,
        remedial_action=body.remedial_action,
    )

    def run(session: Any) -> dict[str, Any]:
        case = services.leaks.file_report(
            session, caller.principal, caller.actor, report, services.clock()
        )
        return services.leaks.view(session, case, leaks.Access.REPORTER)

    return services.in_transaction(run)


@router.get("")
def list_cases(
    services: ServicesDep,
    caller: CallerDep,
    state: Literal["reported", "investigating", "contained", "closed"] | None = None,
    overdue: bool = False,
    limit: Annotated[int, Query(ge=1, le=leaks.MAX_PAGE)] = 50,
    offset: Annotated[int, Query(ge=0, le=10**6)] = 0,
) -> dict[str, Any]:
    """Every case for the handlers and compliance; your own reports otherwise.

    Cases owing a notice past its deadline come first (``overdue=true``: only those);
    the handlers and compliance see each case's clocks (``duties``)."""

    def run(session: Any) -> dict[str, Any]:
        now = services.clock()
        rows, total = services.leaks.page(
            session,
            caller.principal,
            now,
            state=state,
            overdue=overdue,
            limit=limit,
            offset=offset,
        )
        full = services.leaks.may_list_all(caller.principal, now)
        duties = (
            services.leak_duties.of_cases(session, [c.id for c in rows if c.id]) if full else {}
        )
        items: list[dict[str, Any]] = [
            {
                "uid": c.uid,
                "state": c.state,
                "outcome": c.outcome or None,
                "source": c.source,
                "created_at": c.created_at.isoformat(),
                "updated_at": c.updated_at.isoformat(),
            }
            | (
                {
                    "rule": c.rule or None,
                    "reporter": c.reporter,
                    "archives": len(c.archives),
                    "overdue": clocks(duties.get(c.id or 0), now)["overdue"],
                    "duties": clocks(duties.get(c.id or 0), now),
                }
                if full
                else {}
            )
            for c in rows
        ]
        return {"items": items, "total": total, "limit": limit, "offset": offset}

    return services.in_transaction(run)


@router.get("/{uid}")
def read_case(uid: CaseUid, services: ServicesDep, caller: CallerDep) -> dict[str, Any]:
    """A case: all of it for the handlers and compliance (audited), its state for its filer."""

    def run(session: Any) -> dict[str, Any]:
        case, access = services.leaks.load(
            session, uid, caller.principal, caller.actor, services.clock()
        )
        return services.leaks.view(session, case, access)

    return services.in_transaction(run)


@router.post("/{uid}/state")
def move_case(
    uid: CaseUid, body: MoveIn, services: ServicesDep, caller: CallerDep
) -> dict[str, Any]:
    """Move a case on (reported → investigating → contained → closed), saying why."""

    def run(session: Any) -> dict[str, Any]:
        case = services.leaks.move(
            session,
            uid,
            caller.principal,
            caller.actor,
            services.clock(),
            to_state=body.state,
            reason=body.reason,
            outcome=body.outcome or "",
        )
        return {"uid": case.uid, "state": case.state, "outcome": case.outcome or None}

    return services.in_transaction(run)


@router.post("/{uid}/actions", status_code=201)
def record_action(
    uid: CaseUid, body: ActionIn, services: ServicesDep, caller: CallerDep
) -> dict[str, Any]:
    """Record an action taken on a case (customers told, material recovered, …)."""

    def run(session: Any) -> dict[str, Any]:
        case = services.leaks.act(
            session,
            uid,
            caller.principal,
            caller.actor,
            services.clock(),
            action=body.action,
            reason=body.reason,
        )
        return {"uid": case.uid, "state": case.state}

    return services.in_transaction(run)
