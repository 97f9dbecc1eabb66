"""Leak cases (Art 27): filed by anyone, handled by the supervisor and the manager.

Anyone who finds that customer information has leaked or may leak reports it at
once; the report goes to the information supervisor and the customer-service
manager, who must act at once (Art 27). A report (or a detection rule's alert,
``raise_case``) becomes a case: reported → investigating → contained → closed
(confirmed, unfounded, or dismissed for a false alarm). Each change names who,
when and why, is an event row and an audit entry; cases are never deleted.

Who sees what: the handlers (``handle_leaks``) see and move every case;
compliance (``read_leaks``) sees every case and changes none; the person who
filed a report sees only its state. Anyone else gets "no such case", so case
numbers reveal nothing; so does the account a case is about (``LeakCase.account``),
even a handler: the other handler investigates them, and they are not told.
The text people type is sealed (``leak_models``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, select

from audit.events import Actor, AuditAction, AuditEvent, Outcome
from policies.decision import Principal
from policies.desk import Desk, new_uid
from policies.errors import InvalidInput, NotFound, Refused
from policies.leak_duty_models import LeakDuty, duty_order, overdue_clause, stamp_notice
from policies.leak_models import LeakCase, LeakCaseEvent
from policies.notifications import LEAK_HANDLERS, Notice
from policies.roles import Action, NotificationEvent, Role
from vault.crypto import Sealer, aad
from vault.records import ARCHIVE_NO

MAX_TEXT = 4000
MAX_ARCHIVES = 200
MAX_PAGE = 200
SYSTEM = "system"
CHANNELS = (
    "email",
    "phone",
    "messaging",
    "paper",
    "in_person",
    "website",
    "removable_media",
    "unknown",
    "other",
)
# What a handler records as done on a case (Art 27 "remedial action").
ACTIONS = (
    "tokens_revoked",
    "sessions_ended",
    "grants_ended",
    "loans_recalled",
    "user_disabled",
    "customers_told",
    "regulator_told",
    "material_recovered",
    "other",
)
# Notices a case owes (PIPL Art 57); ``POST /leaks/{uid}/notified`` records them with
# their time and reference, an action recorded here stamps the same clock.
NOTICES = ("regulator_told", "customers_told")


class CaseState(StrEnum):
    REPORTED = "reported"
    INVESTIGATING = "investigating"
    CONTAINED = "contained"
    CLOSED = "closed"


OUTCOMES = ("confirmed", "unfounded", "dismissed")
# Where a case may go from each state; closing needs an outcome.
MOVES: dict[str, tuple[str, ...]] = {
    CaseState.REPORTED: (CaseState.INVESTIGATING, CaseState.CLOSED),
    CaseState.INVESTIGATING: (CaseState.CONTAINED, CaseState.CLOSED),
    CaseState.CONTAINED: (CaseState.INVESTIGATING, CaseState.CLOSED),
    CaseState.CLOSED: (),
}


class Access(StrEnum):
    HANDLER = "handler"  # sees everything, moves the case
    REVIEWER = "reviewer"  # compliance: sees everything, moves nothing
    REPORTER = "reporter"  # the filer: the state of their own report


@dataclass(frozen=True, slots=True)
class LeakReport:
    """What a person reports; every text is optional but one must say what was seen."""

    what_seen: str
    noticed_at: datetime | None = None
    how_found: str = ""
    archives: tuple[str, ...] = ()
    channel: str = "unknown"
    remedial_action: str = ""


class CaseSeal:
    """Seals the text of cases under a key from the key file, bound to case and field."""

    def __init__(self, keys: Any) -> None:
        self._sealer = Sealer(keys.index_key("leak-case:seal"), 1)

    def seal(self, uid: str, field: str, text: str) -> bytes | None:
        if not text:
            return None
        return self._sealer.seal(text.encode(), aad("leak-case", uid, field))

    def open(self, uid: str, field: str, blob: bytes | None) -> str:
        if not blob:
            return ""
        return self._sealer.open(bytes(blob), aad("leak-case", uid, field)).decode()


def _text(value: str, what: str) -> str:
    value = (value or "").strip()
    if len(value) > MAX_TEXT:
        raise InvalidInput(f"{what} is longer than {MAX_TEXT} characters")
    if "\x00" in value:
        raise InvalidInput(f"{what} contains a NUL character")
    return value


def check_archives(numbers: tuple[str, ...] | list[str]) -> list[str]:
    if len(numbers) > MAX_ARCHIVES:
        raise InvalidInput(f"at most {MAX_ARCHIVES} archives per case")
    bad = [n for n in numbers if not ARCHIVE_NO.fullmatch(str(n))]
    if bad:
        raise InvalidInput(f"not an archive number: {str(bad[0])[:40]!r} (KH-YYYY-NNNNNN)")
    return list(dict.fromkeys(str(n) for n in numbers))


class LeakCases:
    """Filing, raising, reading and moving leak cases, each step audited."""

    def __init__(self, desk: Desk, keys: Any) -> None:
        self.desk = desk
        self.seal = CaseSeal(keys)

    # --- who may -----------------------------------------------------------------
    def access(self, principal: Principal, case: LeakCase, now: datetime) -> Access | None:
        """How much of ``case`` the caller sees. The account a case is about never
        handles or reviews it, whatever their roles: a handler who touched a decoy
        would otherwise see which archive it was, contain the other handler from
        their own case and close it as dismissed, alone (one person never clears
        themselves). They keep only a reporter's view of a report they filed."""
        if case.account is not None and case.account == principal.username:
            if case.source == "report" and case.reporter == principal.username:
                return Access.REPORTER
            return None
        if self.desk.may(
            principal, Action.HANDLE_LEAKS, {Role.INFO_SUPERVISOR, Role.CS_MANAGER}, now
        ):
            return Access.HANDLER
        if self.desk.may(principal, Action.READ_LEAKS, {Role.COMPLIANCE}, now):
            return Access.REVIEWER
        if case.source == "report" and case.reporter == principal.username:
            return Access.REPORTER
        return None

    def may_list_all(self, principal: Principal, now: datetime) -> bool:
        return self.desk.may(
            principal,
            Action.READ_LEAKS,
            {Role.INFO_SUPERVISOR, Role.CS_MANAGER, Role.COMPLIANCE},
            now,
        )

    # --- filing ------------------------------------------------------------------
    def file_report(
        self,
        session: Session,
        principal: Principal,
        actor: Actor,
        report: LeakReport,
        now: datetime,
    ) -> LeakCase:
        """A person's report: a case in state ``reported``, both handlers told at once."""
        if not self.desk.may(principal, Action.REPORT_LEAK, set(Role), now):
            raise Refused("you may not file leak reports", rule="report_leak")
        what = _text(report.what_seen, "what was seen")
        if not what:
            raise InvalidInput("say what was seen (what_seen)")
        if report.channel not in CHANNELS:
            raise InvalidInput(f"unknown channel {report.channel[:32]!r} ({', '.join(CHANNELS)})")
        if report.noticed_at is not None:
            try:
                report.noticed_at.astimezone(UTC)
            except OverflowError:  # 0001-01-01 in UTC+8 has no UTC form
                raise InvalidInput("noticed_at is outside the calendar once taken to UTC") from None
        if report.noticed_at is not None and report.noticed_at > now:
            raise InvalidInput("noticed_at is in the future")
        uid = new_uid("LK")
        case = LeakCase(
            uid=uid,
            source="report",
            reporter=principal.username,
            state=CaseState.REPORTED.value,
            noticed_at=report.noticed_at,
            channel=report.channel,
            archives=check_archives(report.archives),
            what_seen=self.seal.seal(uid, "what_seen", what),
            how_found=self.seal.seal(uid, "how_found", _text(report.how_found, "how_found")),
            remedial_action=self.seal.seal(
                uid, "remedial_action", _text(report.remedial_action, "remedial_action")
            ),
            created_at=now,
            updated_at=now,
        )
        self._open(session, case, actor, now)
        return case

    def raise_case(
        self,
        session: Session,
        *,
        rule: str,
        now: datetime,
        account: str | None = None,
        archives: tuple[str, ...] | list[str] = (),
        facts: dict[str, Any] | None = None,
        notify: bool = True,
    ) -> LeakCase:
        """A detection rule's alert, saved as a case (before anyone is told)."""
        case = LeakCase(
            uid=new_uid("LK"),
            source="detection",
            rule=rule[:64],
            reporter=SYSTEM,
            state=CaseState.REPORTED.value,
            account=account,
            archives=check_archives(list(archives)),
            facts=dict(facts or {}),
            created_at=now,
            updated_at=now,
        )
        self._open(session, case, Actor(SYSTEM, "detection"), now, notify=notify)
        return case

    def _open(
        self, session: Session, case: LeakCase, actor: Actor, now: datetime, *, notify: bool = True
    ) -> None:
        session.add(case)
        session.flush()
        assert case.id is not None
        session.add(
            LeakCaseEvent(
                case_id=case.id,
                at=now,
                actor=actor.username,
                kind="state",
                to_state=case.state,
                detail={"source": case.source, "rule": case.rule},
            )
        )
        self.desk.event(
            session,
            AuditEvent(
                action=AuditAction.LEAK_REPORT,
                actor=actor,
                archives=tuple(case.archives),
                detail={
                    "case": case.uid,
                    "source": case.source,
                    "rule": case.rule,
                    "account": case.account,
                    "channel": case.channel,
                },
            ),
        )
        if notify:
            self.tell_handlers(session, case, NotificationEvent.LEAK_REPORTED, now)

    def tell_handlers(
        self, session: Session, case: LeakCase, event: NotificationEvent, now: datetime
    ) -> list[str]:
        """Both handlers at once (Art 27); the message names the case, never its content."""
        message = (
            f"Leak case {case.uid} was opened ({case.source}"
            + (f": {case.rule}" if case.rule else "")
            + "). Act at once: open the case."
            if event == NotificationEvent.LEAK_REPORTED
            else f"Leak case {case.uid} is now {case.state}."
        )
        return self.desk.notify_role(
            session,
            LEAK_HANDLERS,
            Notice(event.value, case_uid=case.uid),
            message,
            now,
            exclude=[case.account] if case.account else (),  # no tip-off to the suspect
        )

    # --- reading -----------------------------------------------------------------
    def load(
        self, session: Session, uid: str, principal: Principal, actor: Actor, now: datetime
    ) -> tuple[LeakCase, Access]:
        """The case and how much of it the caller sees; NotFound for anyone else."""
        case = session.exec(select(LeakCase).where(LeakCase.uid == uid[:32])).first()
        access = self.access(principal, case, now) if case is not None else None
        if case is None or access is None:
            raise NotFound(f"no leak case {uid[:32]!r}")
        if access != Access.REPORTER:
            self.desk.event(
                session,
                AuditEvent(
                    action=AuditAction.LEAK_READ,
                    actor=actor,
                    detail={"case": case.uid, "as": access.value},
                ),
            )
        return case, access

    def page(
        self,
        session: Session,
        principal: Principal,
        now: datetime,
        *,
        state: str | None = None,
        overdue: bool = False,
        limit: int = 50,
        offset: int = 0,
    ) -> tuple[list[LeakCase], int]:
        """Cases the caller may see: all for handlers and compliance, own reports otherwise.

        Cases with a notification duty past its deadline come first (the earliest
        missed first), then those with a deadline still running (the soonest
        first), then the rest, newest first (``leak_duty_models.duty_order``).
        """
        query = select(LeakCase).outerjoin(LeakDuty, col(LeakDuty.case_id) == col(LeakCase.id))
        if not self.may_list_all(principal, now):
            query = query.where(
                LeakCase.source == "report", LeakCase.reporter == principal.username
            )
        else:  # never the cases about the caller (``access``)
            query = query.where(
                col(LeakCase.account).is_(None) | (LeakCase.account != principal.username)
            )
        if state:
            query = query.where(LeakCase.state == state)
        if overdue:
            query = query.where(overdue_clause(now))
        total = session.exec(select(sa.func.count()).select_from(query.subquery())).one()
        rows = session.exec(
            query.order_by(
                *duty_order(now), col(LeakCase.created_at).desc(), col(LeakCase.id).desc()
            )
            .limit(min(limit, MAX_PAGE))
            .offset(offset)
        ).all()
        return list(rows), int(total)

    def events(self, session: Session, case: LeakCase) -> list[LeakCaseEvent]:
        return list(
            session.exec(
                select(LeakCaseEvent)
                .where(LeakCaseEvent.case_id == case.id)
                .order_by(col(LeakCaseEvent.id))
            ).all()
        )

    def view(self, session: Session, case: LeakCase, access: Access) -> dict[str, Any]:
        """What the caller sees of a case: the reporter only its state."""
        base: dict[str, Any] = {
            "uid": case.uid,
            "state": case.state,
            "outcome": case.outcome or None,
            "source": case.source,
            "created_at": case.created_at.isoformat(),
            "updated_at": case.updated_at.isoformat(),
        }
        if access == Access.REPORTER:
            return base
        return base | {
            "rule": case.rule or None,
            "reporter": case.reporter,
            "noticed_at": case.noticed_at.isoformat() if case.noticed_at else None,
            "channel": case.channel,
            "archives": list(case.archives),
            "account": case.account,
            "facts": dict(case.facts),
            "what_seen": self.seal.open(case.uid, "what_seen", case.what_seen),
            "how_found": self.seal.open(case.uid, "how_found", case.how_found),
            "remedial_action": self.seal.open(case.uid, "remedial_action", case.remedial_action),
            "closed_at": case.closed_at.isoformat() if case.closed_at else None,
            "events": [
                {
                    "at": e.at.isoformat(),
                    "actor": e.actor,
                    "kind": e.kind,
                    "from_state": e.from_state or None,
                    "to_state": e.to_state or None,
                    "detail": dict(e.detail),
                    "reason": self.seal.open(case.uid, f"event:{e.id}", e.reason),
                }
                for e in self.events(session, case)
            ],
        }

    # --- handling ----------------------------------------------------------------
    def _handler_case(
        self, session: Session, uid: str, principal: Principal, actor: Actor, now: datetime
    ) -> LeakCase:
        case, access = self.load(session, uid, principal, actor, now)
        if access != Access.HANDLER:
            raise Refused(
                "only the information supervisor and the customer-service manager act on "
                "leak cases (Art 27)",
                rule="handle_leaks",
                event=AuditEvent(
                    action=AuditAction.LEAK_CHANGE,
                    actor=actor,
                    outcome=Outcome.DENIED,
                    detail={"case": case.uid},
                ),
            )
        return case

    def record(
        self,
        session: Session,
        case: LeakCase,
        actor: Actor,
        now: datetime,
        *,
        kind: str,
        detail: dict[str, Any],
        reason: str = "",
        to_state: str = "",
    ) -> LeakCaseEvent:
        """One event on a case and its audit entry (no text in the entry: it is sealed)."""
        assert case.id is not None
        event = LeakCaseEvent(
            case_id=case.id,
            at=now,
            actor=actor.username,
            kind=kind,
            from_state=case.state if to_state else "",
            to_state=to_state,
            detail=detail,
        )
        session.add(event)
        session.flush()
        event.reason = self.seal.seal(case.uid, f"event:{event.id}", _text(reason, "reason"))
        case.updated_at = now
        session.add(case)
        self.desk.event(
            session,
            AuditEvent(
                action=AuditAction.LEAK_CHANGE,
                actor=actor,
                archives=tuple(case.archives),
                detail={"case": case.uid, "kind": kind, "to_state": to_state or None} | detail,
            ),
        )
        return event

    def move(
        self,
        session: Session,
        uid: str,
        principal: Principal,
        actor: Actor,
        now: datetime,
        *,
        to_state: str,
        reason: str,
        outcome: str = "",
    ) -> LeakCase:
        """Move a case on; the reason is required, closing names its outcome."""
        case = self._handler_case(session, uid, principal, actor, now)
        if not _text(reason, "reason"):
            raise InvalidInput("say why (reason)")
        if to_state not in MOVES.get(case.state, ()):
            allowed = ", ".join(MOVES.get(case.state, ())) or "none: the case is closed"
            raise InvalidInput(f"a {case.state} case cannot become {to_state[:16]!r} ({allowed})")
        if to_state == CaseState.CLOSED:
            if outcome not in OUTCOMES:
                raise InvalidInput(f"closing a case names its outcome ({', '.join(OUTCOMES)})")
            if outcome == "dismissed" and case.source != "detection":
                raise InvalidInput("only a detection's alert is dismissed; a report is unfounded")
        elif outcome:
            raise InvalidInput("only closing a case names an outcome")
        self.record(
            session,
            case,
            actor,
            now,
            kind="state",
            detail={"outcome": outcome or None},
            reason=reason,
            to_state=to_state,
        )
        case.state = to_state
        if to_state == CaseState.CLOSED:
            case.outcome, case.closed_at = outcome, now
        session.add(case)
        self.tell_handlers(session, case, NotificationEvent.LEAK_CHANGED, now)
        return case

    def act(
        self,
        session: Session,
        uid: str,
        principal: Principal,
        actor: Actor,
        now: datetime,
        *,
        action: str,
        reason: str = "",
        detail: dict[str, Any] | None = None,
    ) -> LeakCase:
        """Record an action taken on a case (what was done outside or through the vault)."""
        case = self._handler_case(session, uid, principal, actor, now)
        if action not in ACTIONS:
            raise InvalidInput(f"unknown action {action[:32]!r} ({', '.join(ACTIONS)})")
        if case.state == CaseState.CLOSED:
            raise InvalidInput("the case is closed")
        if action in NOTICES:  # the first notice of its kind stops its legal clock
            detail = (detail or {}) | {"first": stamp_notice(session, case, action, now)}
        self.record(
            session,
            case,
            actor,
            now,
            kind="action",
            detail={"action": action} | (detail or {}),
            reason=reason,
        )
        return case
