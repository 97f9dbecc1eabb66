"""A leak case's notification duties (PIPL Art 57) and their legal clocks.

A handler records what the case found (``assess``): whether customers' personal
information was affected, how many customers, which field groups, which
archives (numbers only), and the cause (a fixed category: the notice is built
from categories, never from typed text). From then the case owes two notices
"without delay": the regulator, within ``leak_regulator_hours`` (default 4),
and the individuals, within ``leak_individuals_hours`` (default 72).

When the clocks start: when the handlers became aware that personal
information was affected (``aware_at``: the moment it is recorded, or earlier
if the handler says so), not when the case was opened. A report is often only
a suspicion; the duty to notify arises with knowing that personal information
was affected (GDPR Art 33 counts its 72 hours the same way). The awareness time
never moves later and a deadline never moves later: recording the duties
again, or saying "not affected" and then "affected" again, restarts no clock.
Deadlines are computed from the settings in force when first recorded.

Each notice is recorded (``notified``) as an ``action`` event on the case
(``regulator_told`` / ``customers_told``); the first notice stops its clock. A
duty is overdue when its deadline has passed without a notice; lists put such
cases first. Handlers record; compliance reads; both get the notice text and
the affected archives (numbers only: contact details only through the ordinary
audited read of each archive).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlmodel import Session, col, select

from audit.events import Actor
from foundation.settings import Settings
from policies.decision import Principal
from policies.errors import InvalidInput, NotFound
from policies.leak_duty_models import LeakDuty, stamp_notice
from policies.leak_models import LeakCase
from policies.leak_notice import notice_facts, render
from policies.leaks import Access, CaseState, LeakCases, check_archives
from vault.schema import ProfileSchema

# What caused the leak, as the notice names it (PIPL Art 57 (1): the cause).
CAUSES = (
    "under_investigation",
    "insider_disclosure",
    "unauthorised_access",
    "lost_material",
    "misdirected_transmission",
    "external_attack",
    "system_fault",
    "other",
)
WHOM = {"regulator": "regulator_told", "individuals": "customers_told"}
MAX_AFFECTED = 20_000
MAX_CUSTOMERS = 100_000_000
REFERENCE = r"^[A-Za-z0-9._/:-]{1,64}$"


@dataclass(frozen=True, slots=True)
class Assessment:
    """What a handler found: no typed text reaches the notice, only these facts."""

    pi_affected: bool
    customers: int = 0
    groups: tuple[str, ...] = ()
    archives: tuple[str, ...] = ()
    cause: str = "under_investigation"
    aware_at: datetime | None = None
    reason: str = ""


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def _utc(moment: datetime | None, what: str) -> datetime | None:
    """A zoned moment in UTC, or InvalidInput naming it when it has no UTC form.

    0001-01-01T00:00+12:00 is a valid ISO time whose UTC form falls before year 1:
    comparing it with ``now`` (or storing it) would raise OverflowError, a server
    error, instead of saying which input is wrong.
    """
    if moment is None:
        return None
    try:
        return moment.astimezone(UTC)
    except (OverflowError, ValueError):
        raise InvalidInput(f"{what} is outside the calendar once taken to UTC") from None


def _earliest(a: datetime | None, b: datetime) -> datetime:
    return b if a is None else min(a, b)


def clocks(duty: LeakDuty | None, now: datetime) -> dict[str, Any]:
    """The two clocks of a case at ``now``: due, notified, overdue (missed and still owed)."""

    def one(due: datetime | None, told: datetime | None) -> dict[str, Any]:
        return {
            "due_at": _iso(due),
            "notified_at": _iso(told),
            "overdue": due is not None and told is None and now >= due,
            "late": due is not None and told is not None and told > due,
        }

    if duty is None or not duty.pi_affected:
        empty = one(None, None)
        return {"pi_affected": bool(duty and duty.pi_affected), "overdue": False} | {
            "regulator": empty,
            "individuals": empty,
        }
    regulator = one(duty.regulator_due_at, duty.regulator_notified_at)
    individuals = one(duty.individuals_due_at, duty.individuals_notified_at)
    return {
        "pi_affected": True,
        "overdue": regulator["overdue"] or individuals["overdue"],
        "regulator": regulator,
        "individuals": individuals,
    }


class LeakDuties:
    """Records a case's duties and notices; reads them back for lists and notices."""

    def __init__(self, leaks: LeakCases, settings: Settings, schema: ProfileSchema) -> None:
        self.leaks = leaks
        self.settings = settings
        self.schema = schema

    # --- reading -----------------------------------------------------------------
    def of(self, session: Session, case: LeakCase) -> LeakDuty | None:
        return session.exec(select(LeakDuty).where(LeakDuty.case_id == case.id)).first()

    def of_cases(self, session: Session, ids: list[int]) -> dict[int, LeakDuty]:
        if not ids:
            return {}
        rows = session.exec(select(LeakDuty).where(col(LeakDuty.case_id).in_(ids))).all()
        return {d.case_id: d for d in rows}

    def view(self, duty: LeakDuty | None, now: datetime) -> dict[str, Any]:
        """The duties of a case: facts (no content) and both clocks."""
        facts: dict[str, Any] = {
            "customers": duty.customers if duty else 0,
            "groups": list(duty.groups) if duty else [],
            "archives": len(duty.archives) if duty else 0,
            "cause": duty.cause if duty else None,
            "aware_at": _iso(duty.aware_at) if duty else None,
            "recorded": duty is not None,
        }
        return facts | clocks(duty, now)

    def read(
        self, session: Session, uid: str, principal: Principal, actor: Actor, now: datetime
    ) -> tuple[LeakCase, LeakDuty | None]:
        """A case and its duties for a handler or compliance (audited by ``load``)."""
        case, access = self.leaks.load(session, uid, principal, actor, now)
        if access == Access.REPORTER:
            # The filer of a report sees its state only: as to anyone else, no case.
            raise NotFound(f"no leak case {uid[:32]!r}")
        return case, self.of(session, case)

    # --- recording ---------------------------------------------------------------
    def _locked(
        self, session: Session, uid: str, principal: Principal, actor: Actor, now: datetime
    ) -> tuple[LeakCase, LeakDuty | None]:
        case = self.leaks._handler_case(session, uid, principal, actor, now)
        # Two handlers recording at once: the second waits for the first's commit.
        session.exec(select(LeakCase).where(LeakCase.id == case.id).with_for_update()).one()
        return case, self.of(session, case)

    def _checked(self, a: Assessment, now: datetime) -> Assessment:
        if a.cause not in CAUSES:
            raise InvalidInput(f"unknown cause {a.cause[:32]!r} ({', '.join(CAUSES)})")
        aware_at = _utc(a.aware_at, "aware_at")
        if aware_at is not None and aware_at > now:
            raise InvalidInput("aware_at is in the future")
        unknown = [g for g in a.groups if g not in self.schema.groups]
        if unknown:
            raise InvalidInput(
                f"unknown field group {unknown[0][:32]!r} (known: {', '.join(self.schema.groups)})"
            )
        if len(a.archives) > MAX_AFFECTED:
            raise InvalidInput(f"at most {MAX_AFFECTED} affected archives per case")
        if not 0 <= a.customers <= MAX_CUSTOMERS:
            raise InvalidInput(f"customers is a count from 0 to {MAX_CUSTOMERS}")
        groups = tuple(g for g in self.schema.groups if g in a.groups)  # schema order, once
        archives = tuple(_archive_numbers(a.archives))
        if not a.pi_affected:
            if a.customers or groups or archives:
                raise InvalidInput(
                    "no personal information affected: name no customers, groups or archives"
                )
        else:
            if a.customers < 1:
                raise InvalidInput("personal information affected: say how many customers")
            if not groups:
                raise InvalidInput("personal information affected: name the field groups")
            if a.customers < len(archives):
                raise InvalidInput(
                    f"{len(archives)} affected archives but only {a.customers} customers"
                )
        return Assessment(
            a.pi_affected, a.customers, groups, archives, a.cause, a.aware_at, a.reason
        )

    def assess(
        self,
        session: Session,
        uid: str,
        principal: Principal,
        actor: Actor,
        now: datetime,
        assessment: Assessment,
    ) -> tuple[LeakCase, LeakDuty]:
        """Record (or correct) what the case found; the clocks start or keep running."""
        case, duty = self._locked(session, uid, principal, actor, now)
        if case.state == CaseState.CLOSED:
            raise InvalidInput("the case is closed: its findings stand as recorded")
        a = self._checked(assessment, now)
        if duty is None:
            assert case.id is not None  # a stored case
            duty = LeakDuty(case_id=case.id, updated_at=now, updated_by=principal.username)
        duty.pi_affected = a.pi_affected
        duty.customers, duty.groups, duty.archives = a.customers, list(a.groups), list(a.archives)
        duty.cause = a.cause
        if a.pi_affected:
            duty.aware_at = _earliest(duty.aware_at, a.aware_at or now)
            hours = self.settings.leak_regulator_hours, self.settings.leak_individuals_hours
            duty.regulator_due_at = _earliest(
                duty.regulator_due_at, duty.aware_at + timedelta(hours=hours[0])
            )
            duty.individuals_due_at = _earliest(
                duty.individuals_due_at, duty.aware_at + timedelta(hours=hours[1])
            )
        duty.updated_at, duty.updated_by = now, principal.username
        session.add(duty)
        session.flush()
        self.leaks.record(
            session,
            case,
            actor,
            now,
            kind="duty",
            detail={
                "op": "assessed",
                "pi_affected": a.pi_affected,
                "customers": a.customers,
                "groups": list(a.groups),
                "affected_archives": len(a.archives),
                "cause": a.cause,
                "aware_at": _iso(duty.aware_at),
                "regulator_due": _iso(duty.regulator_due_at) if a.pi_affected else None,
                "individuals_due": _iso(duty.individuals_due_at) if a.pi_affected else None,
            },
            reason=a.reason,
        )
        return case, duty

    def notified(
        self,
        session: Session,
        uid: str,
        principal: Principal,
        actor: Actor,
        now: datetime,
        *,
        whom: str,
        at: datetime | None = None,
        customers: int | None = None,
        reference: str = "",
        reason: str = "",
    ) -> tuple[LeakCase, LeakDuty]:
        """Record that the regulator or the individuals were notified; the first stops the clock."""
        if whom not in WHOM:
            raise InvalidInput(f"notified whom? ({', '.join(WHOM)})")
        _utc(at, "at")  # refused before the comparison below could overflow
        case, duty = self._locked(session, uid, principal, actor, now)
        if duty is None or not duty.pi_affected:
            raise InvalidInput(
                "record first that personal information was affected (POST /leaks/{uid}/duties)"
            )
        when = at or now
        if when > now:
            raise InvalidInput("the notice's time is in the future")
        if customers is not None and not 0 <= customers <= duty.customers:
            raise InvalidInput(f"customers told is a count from 0 to {duty.customers}")
        if customers is not None and whom == "regulator":
            raise InvalidInput("customers told is said of the individuals' notice")
        first = stamp_notice(session, case, WHOM[whom], when)
        due = getattr(duty, f"{whom}_due_at")
        self.leaks.record(
            session,
            case,
            actor,
            now,
            kind="action",
            detail={
                "action": WHOM[whom],
                "at": when.isoformat(),
                "first": first,
                "late": bool(due is not None and when > due),
                "reference": reference or None,
                "customers": customers,
            },
            reason=reason,
        )
        return case, duty

    def notice(self, session: Session, case: LeakCase, duty: LeakDuty | None) -> dict[str, Any]:
        """The notice's facts and its text in Chinese and English (``leak_notice``)."""
        facts = notice_facts(case, duty, self.leaks.events(session, case))
        contact = self.settings.leak_notice_contact
        return {
            "facts": facts,
            "text": {lang: render(facts, self.schema, contact, lang) for lang in ("zh", "en")},
        }

    def affected(self, duty: LeakDuty | None) -> dict[str, Any]:
        """The affected customers as archive numbers; their contact details are not here."""
        return {
            "customers": duty.customers if duty else 0,
            "archives": list(duty.archives) if duty else [],
            "contact_details": (
                "not in this list: read each customer's contact details with "
                "GET /customers/{archive_no}?groups=contact, an ordinary read decided by "
                "policy under your own access and audited"
            ),
        }


def _archive_numbers(numbers: tuple[str, ...]) -> list[str]:
    """Archive numbers checked in batches (``check_archives`` takes a case's few)."""
    out: list[str] = []
    for i in range(0, len(numbers), 100):
        out += check_archives(list(numbers[i : i + 100]))
    return list(dict.fromkeys(out))
