"""Evidence from the audit log, frozen into a leak case (Art 27), and checked again later.

Two questions a case asks of the log, each for a time window:

* ``archives``: who read, exported, copied or lent these archives (the case's
  own, or the ones named), with the purpose and grant of each entry;
* ``account``: which archives and field groups this account touched ("what
  did this person see?"): every entry the account wrote in the window.

Both are answered through the log's indexes (``audit.evidence``) up to the
log's head at that moment. The answer is frozen into the case: the entries as
stored, an inclusion proof of each against a signed checkpoint (one is signed
first when none covers them yet), and a digest of the whole record that the
attaching ``leak:change`` entry repeats. ``verify`` re-checks a record against
the public key, the digest, that audit entry and the log itself, so editing an
entry in the log or the evidence row afterwards is named.

Only the handlers (``handle_leaks``) attach; the handlers and compliance read;
the person who filed the report never sees evidence (403); anyone else gets
"no such case". Every attempt, allowed or refused, is an audit entry.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, select

from audit import evidence
from audit.events import Actor, AuditAction, AuditEvent, Outcome
from audit.log import AuditLog
from foundation.db import transaction
from policies.decision import Principal
from policies.desk import new_uid
from policies.errors import InvalidInput, NotFound, PolicyError, Refused
from policies.leak_evidence_check import (
    EvidenceCheck,
    EvidenceChecker,
    EvidenceQuery,
    record_digest,
)
from policies.leak_evidence_models import LeakEvidence
from policies.leak_models import LeakCase, LeakCaseEvent
from policies.leaks import Access, CaseState, LeakCases, check_archives

# At most this many entries in one record: a wider question is asked in narrower windows.
MAX_ENTRIES = 5000
MAX_ACCOUNT = 64
# What counts as reading, exporting, copying or lending an archive.
ACCESS_ACTIONS: tuple[str, ...] = tuple(
    a.value
    for a in (
        AuditAction.READ,
        AuditAction.SEARCH,
        AuditAction.EXPORT,
        AuditAction.LOAN,
        AuditAction.INTERACTION_READ,
        AuditAction.ATTACHMENT_READ,
        AuditAction.ATTACHMENT_LIST,
    )
)
KINDS = ("archives", "account")


def _utc(moment: datetime, what: str) -> datetime:
    if moment.tzinfo is None:
        raise InvalidInput(f"{what} needs a time zone (e.g. +08:00)")
    try:
        return moment.astimezone(UTC)
    except (OverflowError, ValueError):
        raise InvalidInput(f"{what} is outside the calendar once taken to UTC") from None


class LeakEvidenceService:
    """Attaching, reading and re-checking evidence on leak cases."""

    def __init__(
        self, leaks: LeakCases, audit: AuditLog, engine: sa.Engine, clock: Callable[[], datetime]
    ) -> None:
        self.leaks = leaks
        self.audit = audit
        self.engine = engine
        self.clock = clock
        self.checker = EvidenceChecker(audit, self._rows)

    # --- who may -----------------------------------------------------------------
    def _case(
        self,
        session: Session,
        uid: str,
        principal: Principal,
        actor: Actor,
        *,
        attach: bool,
        detail: dict[str, Any] | None = None,
    ) -> LeakCase:
        """The case when the caller may attach (handlers) or read (handlers, compliance)."""
        audit_action = AuditAction.LEAK_CHANGE if attach else AuditAction.LEAK_READ
        denied = AuditEvent(
            action=audit_action,
            actor=actor,
            outcome=Outcome.DENIED,
            detail={"case": uid[:32], "evidence": True} | (detail or {}),
        )
        case = session.exec(select(LeakCase).where(LeakCase.uid == uid[:32])).first()
        access = self.leaks.access(principal, case, self.clock()) if case is not None else None
        if case is None or access is None:
            raise NotFound(f"no leak case {uid[:32]!r}", event=denied)
        allowed = {Access.HANDLER} if attach else {Access.HANDLER, Access.REVIEWER}
        if access not in allowed:
            raise Refused(
                "only the information supervisor and the customer-service manager attach "
                "evidence to a leak case"
                if attach
                else "evidence is read by the case's handlers and compliance, not its reporter",
                rule="handle_leaks" if attach else "read_leaks",
                event=denied,
            )
        return case

    def _guarded(self, fn: Callable[[], Any]) -> Any:
        """Run a step; a refusal's audit event is appended in a transaction of its own."""
        try:
            return fn()
        except PolicyError as exc:
            if exc.event is not None:
                with transaction(self.engine) as session:
                    self.audit.append(session, exc.event)
            raise

    # --- attaching ---------------------------------------------------------------
    def attach(
        self, principal: Principal, actor: Actor, uid: str, query: EvidenceQuery
    ) -> dict[str, Any]:
        """Ask the log, prove the answer against a signed checkpoint, freeze it into the case."""
        result: dict[str, Any] = self._guarded(lambda: self._attach(principal, actor, uid, query))
        return result

    def _resolve(self, case: LeakCase, query: EvidenceQuery) -> EvidenceQuery:
        since, until = _utc(query.since, "since"), _utc(query.until, "until")
        if since >= until:
            raise InvalidInput("since must be before until")
        if query.kind == "archives":
            archives = check_archives(list(query.archives or case.archives))
            if not archives:
                raise InvalidInput("name the archives (the case names none)")
            return EvidenceQuery("archives", since, until, archives=tuple(archives))
        if query.kind == "account":
            account = (query.account or case.account or "").strip()
            if not account or len(account) > MAX_ACCOUNT or not account.isprintable():
                raise InvalidInput("name the account (the case names none)")
            return EvidenceQuery("account", since, until, account=account)
        raise InvalidInput(f"unknown evidence kind {query.kind[:16]!r} ({', '.join(KINDS)})")

    def _rows(self, q: EvidenceQuery, upto: int) -> list[tuple[Any, ...]]:
        limit = MAX_ENTRIES + 1
        if q.kind == "account":
            assert q.account is not None
            return self.audit.entries_by_account(
                q.account, q.since, q.until, upto=upto, limit=limit
            )
        return self.audit.entries_by_archives(
            q.archives, q.since, q.until, upto=upto, limit=limit, actions=ACCESS_ACTIONS
        )

    def _attach(
        self, principal: Principal, actor: Actor, uid: str, query: EvidenceQuery
    ) -> dict[str, Any]:
        # Decide and ask the log outside any write transaction: signing a checkpoint
        # takes the log's own locks and must not wait behind ours.
        with Session(self.engine) as session:
            case = self._case(session, uid, principal, actor, attach=True)
            if case.state == CaseState.CLOSED:
                raise InvalidInput("the case is closed")
            q = self._resolve(case, query)
        head = self.audit.head()
        rows = self._rows(q, head)
        if len(rows) > MAX_ENTRIES:
            raise InvalidInput(
                f"more than {MAX_ENTRIES} audit entries match; ask for a narrower window"
            )
        need = max((int(r[0]) for r in rows), default=head)
        cp = self.audit.latest_checkpoint()
        if cp is None or cp.size < need:
            self.audit.checkpoint()
            cp = self.audit.latest_checkpoint()
        if cp is None or cp.size < need:
            raise InvalidInput("the audit log has no signed checkpoint covering these entries")
        proofs = self.audit.inclusion_proofs([int(r[0]) for r in rows], cp.size)
        now = self.clock().astimezone(UTC)
        with transaction(self.engine) as session:
            case = self._case(session, uid, principal, actor, attach=True)
            if case.state == CaseState.CLOSED:
                raise InvalidInput("the case is closed")
            assert case.id is not None
            ev = LeakEvidence(
                uid=new_uid("EV"),
                case_id=case.id,
                digest="",
                kind=q.kind,
                account=q.account,
                archives=list(q.archives),
                since=q.since,
                until=q.until,
                head_seq=head,
                entries=evidence.freeze(rows),
                tree_size=cp.size,
                checkpoint=cp.note,
                proofs={str(seq): [h.hex() for h in p] for seq, p in proofs.items()},
                created_by=actor.username,
                created_at=now,
            )
            ev.digest = record_digest(ev, case.uid)
            session.add(ev)
            session.flush()
            assert case.id is not None
            detail = {
                "evidence": ev.uid,
                "query": q.kind,
                "entries": len(rows),
                "tree_size": cp.size,
                "digest": ev.digest,
            }
            session.add(
                LeakCaseEvent(
                    case_id=case.id, at=now, actor=actor.username, kind="evidence", detail=detail
                )
            )
            case.updated_at = now
            session.add(case)
            ev.audit_seq = self.audit.append_sequenced(
                session,
                AuditEvent(
                    action=AuditAction.LEAK_CHANGE,
                    actor=actor,
                    archives=tuple(q.archives),
                    detail={"case": case.uid, "kind": "evidence", "account": q.account} | detail,
                ),
            )
            session.add(ev)
            return self.view(ev, case.uid)

    # --- reading -----------------------------------------------------------------
    def _load(
        self, principal: Principal, actor: Actor, uid: str, ev_uid: str | None, op: str
    ) -> tuple[LeakCase, list[LeakEvidence]]:
        def run() -> tuple[LeakCase, list[LeakEvidence]]:
            with transaction(self.engine) as session:
                case = self._case(session, uid, principal, actor, attach=False, detail={"op": op})
                stmt = select(LeakEvidence).where(LeakEvidence.case_id == case.id)
                if ev_uid is not None:
                    stmt = stmt.where(LeakEvidence.uid == ev_uid[:32])
                rows = list(session.exec(stmt.order_by(col(LeakEvidence.id))).all())
                if ev_uid is not None and not rows:
                    raise NotFound(f"no evidence {ev_uid[:32]!r} on case {case.uid}")
                self.audit.append(
                    session,
                    AuditEvent(
                        action=AuditAction.LEAK_READ,
                        actor=actor,
                        detail={"case": case.uid, "evidence": ev_uid or "all", "op": op},
                    ),
                )
                return case, rows

        result: tuple[LeakCase, list[LeakEvidence]] = self._guarded(run)
        return result

    def index(self, principal: Principal, actor: Actor, uid: str) -> list[dict[str, Any]]:
        case, rows = self._load(principal, actor, uid, None, "list")
        return [self.summary(ev, case.uid) for ev in rows]

    def read(self, principal: Principal, actor: Actor, uid: str, ev_uid: str) -> dict[str, Any]:
        case, rows = self._load(principal, actor, uid, ev_uid, "read")
        return self.view(rows[0], case.uid)

    def check(self, principal: Principal, actor: Actor, uid: str, ev_uid: str) -> EvidenceCheck:
        case, rows = self._load(principal, actor, uid, ev_uid, "verify")
        return self.checker.verify(rows[0], case.uid)

    @staticmethod
    def summary(ev: LeakEvidence, case_uid: str) -> dict[str, Any]:
        return {
            "uid": ev.uid,
            "case": case_uid,
            "kind": ev.kind,
            "account": ev.account,
            "archives": list(ev.archives),
            "since": ev.since.isoformat(),
            "until": ev.until.isoformat(),
            "head_seq": ev.head_seq,
            "entries": len(ev.entries),
            "tree_size": ev.tree_size,
            "digest": ev.digest,
            "audit_seq": ev.audit_seq,
            "created_by": ev.created_by,
            "created_at": ev.created_at.isoformat(),
        }

    def view(self, ev: LeakEvidence, case_uid: str) -> dict[str, Any]:
        """The record: who touched what (a digest of the entries) and the entries with proofs."""
        touched: dict[str, dict[str, set[str]]] = {}
        for e in ev.entries:
            who = e.get("actor", "?")
            if e.get("action") == AuditAction.LOAN.value and isinstance(e.get("detail"), dict):
                who = e["detail"].get("borrower") or who  # the system opens loans for borrowers
            slot = touched.setdefault(str(who), {"archives": set(), "groups": set()})
            slot["archives"].update(a for a in e.get("archives", []) if isinstance(a, str))
            slot["groups"].update(g for g in e.get("groups", []) if isinstance(g, str))
        return self.summary(ev, case_uid) | {
            "accounts": {
                who: {"archives": sorted(v["archives"]), "groups": sorted(v["groups"])}
                for who, v in sorted(touched.items())
            },
            "items": [
                {
                    "seq": e.get("seq"),
                    "time": e.get("time"),
                    "actor": e.get("actor"),
                    "actor_role": e.get("actor_role"),
                    "action": e.get("action"),
                    "outcome": e.get("outcome"),
                    "archives": e.get("archives"),
                    "groups": e.get("groups"),
                    "purpose": e.get("purpose"),
                    "grant_id": e.get("grant_id"),
                    "detail": e.get("detail"),
                    "entry_hash": e.get("entry_hash"),
                    "proof": ev.proofs.get(str(e.get("seq")), []),
                }
                for e in ev.entries
            ],
            "checkpoint": ev.checkpoint,
        }
