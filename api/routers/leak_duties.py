"""Containment and notification duties of leak cases (Art 27, PIPL Art 57).

``POST /leaks/{uid}/contain`` cuts an account off in one audited step;
``POST /leaks/{uid}/duties`` records whether customers' personal information was
affected (and starts the legal clocks), ``POST /leaks/{uid}/notified`` records
a notice to the regulator or the individuals. The handlers do these;
``GET /leaks/{uid}/duties``, ``/notice`` and ``/affected`` are for the handlers
and compliance. The notice and the list carry identifiers and group names only.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path
from pydantic import AwareDatetime, Field, StringConstraints

from api.deps import CallerDep, ServicesDep
from api.schemas import Strict
from policies import leak_duties, leaks
from policies.leak_duties import Assessment

router = APIRouter(prefix="/leaks", tags=["leaks"])
CaseUid = Annotated[str, Path(pattern=r"^LK-[0-9A-F]{10}$")]
Reason = Annotated[str, StringConstraints(min_length=1, max_length=leaks.MAX_TEXT)]
Username = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._:@-]{1,64}$")]
ArchiveNo = Annotated[str, StringConstraints(max_length=32)]


class ContainIn(Strict):
    account: Username
    disable: bool = False
    reason: Reason


class DutiesIn(Strict):
    pi_affected: bool
    customers: Annotated[int, Field(ge=0, le=leak_duties.MAX_CUSTOMERS)] = 0
    groups: list[Annotated[str, StringConstraints(max_length=64)]] = Field(
        default_factory=list, max_length=64
    )
    archives: list[ArchiveNo] = Field(default_factory=list, max_length=leak_duties.MAX_AFFECTED)
    cause: Literal[leak_duties.CAUSES] = "under_investigation"  # type: ignore[valid-type]
    aware_at: AwareDatetime | None = None
    reason: Annotated[str, StringConstraints(max_length=leaks.MAX_TEXT)] = ""

    def assessment(self) -> Assessment:
        """The service's input (the route and the case page both send it)."""
        return Assessment(
            pi_affected=self.pi_affected,
            customers=self.customers,
            groups=tuple(self.groups),
            archives=tuple(self.archives),
            cause=self.cause,
            aware_at=self.aware_at,
            reason=self.reason,
        )


class NotifiedIn(Strict):
    whom: Literal["regulator", "individuals"]
    at: AwareDatetime | None = None
    customers: Annotated[int, Field(ge=0, le=leak_duties.MAX_CUSTOMERS)] | None = None
    reference: Annotated[str, StringConstraints(pattern=leak_duties.REFERENCE)] | None = None
    reason: Annotated[str, StringConstraints(max_length=leaks.MAX_TEXT)] = ""


@router.post("/{uid}/contain")
def contain(
    uid: CaseUid, body: ContainIn, services: ServicesDep, caller: CallerDep
) -> dict[str, Any]:
    """End an account's sessions, tokens, grants and loans (and disable it), at once."""

    def run(session: Any) -> dict[str, Any]:
        return services.containment.contain(
            session,
            uid,
            caller.principal,
            caller.actor,
            services.clock(),
            account=body.account,
            disable=body.disable,
            reason=body.reason,
        )

    return services.in_transaction(run)


@router.post("/{uid}/duties")
def record_duties(
    uid: CaseUid, body: DutiesIn, services: ServicesDep, caller: CallerDep
) -> dict[str, Any]:
    """Record whether customers' personal information was affected; the clocks start."""
    assessment = body.assessment()

    def run(session: Any) -> dict[str, Any]:
        now = services.clock()
        case, duty = services.leak_duties.assess(
            session, uid, caller.principal, caller.actor, now, assessment
        )
        return {"uid": case.uid} | services.leak_duties.view(duty, now)

    return services.in_transaction(run)


@router.post("/{uid}/notified", status_code=201)
def record_notice(
    uid: CaseUid, body: NotifiedIn, services: ServicesDep, caller: CallerDep
) -> dict[str, Any]:
    """Record that the regulator or the individuals were notified (the first stops its clock)."""

    def run(session: Any) -> dict[str, Any]:
        now = services.clock()
        case, duty = services.leak_duties.notified(
            session,
            uid,
            caller.principal,
            caller.actor,
            now,
            whom=body.whom,
            at=body.at,
            customers=body.customers,
            reference=body.reference or "",
            reason=body.reason,
        )
        return {"uid": case.uid} | services.leak_duties.view(duty, now)

    return services.in_transaction(run)


@router.get("/{uid}/duties")
def read_duties(uid: CaseUid, services: ServicesDep, caller: CallerDep) -> dict[str, Any]:
    """The case's duties and clocks (handlers and compliance)."""

    def run(session: Any) -> dict[str, Any]:
        now = services.clock()
        case, duty = services.leak_duties.read(session, uid, caller.principal, caller.actor, now)
        return {"uid": case.uid} | services.leak_duties.view(duty, now)

    return services.in_transaction(run)


@router.get("/{uid}/notice")
def read_notice(uid: CaseUid, services: ServicesDep, caller: CallerDep) -> dict[str, Any]:
    """The notice text (Chinese and English), from identifiers and group names only."""

    def run(session: Any) -> dict[str, Any]:
        case, duty = services.leak_duties.read(
            session, uid, caller.principal, caller.actor, services.clock()
        )
        return {"uid": case.uid} | services.leak_duties.notice(session, case, duty)

    return services.in_transaction(run)


@router.get("/{uid}/affected")
def read_affected(uid: CaseUid, services: ServicesDep, caller: CallerDep) -> dict[str, Any]:
    """The affected customers as archive numbers; contact details only by an audited read."""

    def run(session: Any) -> dict[str, Any]:
        case, duty = services.leak_duties.read(
            session, uid, caller.principal, caller.actor, services.clock()
        )
        return {"uid": case.uid} | services.leak_duties.affected(duty)

    return services.in_transaction(run)
