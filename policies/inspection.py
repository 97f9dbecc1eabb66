"""The half-yearly inspection (Art 14): check everything, sign the report, record it.

One run opens every ciphertext of the store (``vault.integrity``) and the
sealed text of leak cases, re-verifies the audit log and its newest signed
checkpoint, and lists the register's loose ends (``policies.inspection_findings``).
The report holds identifiers and counts only: archive numbers, case uids,
usernames, seqs, dates. It is signed with the audit log's Ed25519 key
(``audit.report_signature``), stored in ``inspection`` (never deleted) and
recorded by an audit entry carrying its hash, in one transaction.

Over HTTP, compliance and the information supervisor run and read inspections
(policy action ``inspect``); anyone else is refused, and the refusal audited.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlmodel import Session, col, func, select

from audit.errors import AuditIntegrityError
from audit.events import Actor, AuditAction, AuditEvent
from audit.log import AuditLog
from audit.report_signature import body_sha256, sign_report
from foundation.db import transaction
from policies import inspection_findings as findings
from policies.archive_acts import Caller, denial
from policies.desk import new_uid
from policies.engine import PolicyEngine
from policies.errors import NotFound
from policies.inspection_models import Inspection
from policies.leak_models import LeakCase, LeakCaseEvent
from policies.leaks import CaseSeal
from policies.roles import Action
from vault.crypto import InvalidCiphertext
from vault.integrity import StoreWalk
from vault.store import ArchiveStore

REPORT_KIND = "archive-vault-inspection/1"
EVERY = timedelta(days=183)  # Art 14: every half year
AUDITED_ARCHIVES = 1000  # failing archive numbers named in the audit entry
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True, slots=True)
class Due:
    """When the last inspection was, and whether the next is due (more than 6 months)."""

    last_uid: str | None
    last_at: datetime | None
    due: bool
    every_days: int

    def public(self) -> dict[str, Any]:
        return {
            "last_inspection": self.last_uid,
            "last_at": self.last_at.isoformat() if self.last_at else None,
            "due": self.due,
            "every_days": self.every_days,
        }

    def line(self, now: datetime) -> str:
        if self.last_at is None:
            return "no inspection was ever recorded: run `archive-vault inspect` (Art 14)"
        days = (now - self.last_at).days
        text = f"last inspection {self.last_uid} on {self.last_at:%Y-%m-%d} ({days} days ago)"
        if self.due:
            return f"{text}: more than 6 months, inspect now (Art 14)"
        return text


class Inspections:
    """Runs, stores and reads inspections; decides who may over HTTP."""

    def __init__(
        self,
        *,
        store: ArchiveStore,
        audit: AuditLog,
        clock: Callable[[], datetime],
        policy: PolicyEngine | None = None,
        every: timedelta | None = None,
        batch: int | None = None,
    ) -> None:
        self.store = store
        self.audit = audit
        self.clock = clock
        self.policy = policy
        settings = store.settings
        self.every = every or timedelta(days=getattr(settings, "inspect_every_days", EVERY.days))
        self.batch = batch or int(getattr(settings, "inspect_batch", 200))

    # --- who may -------------------------------------------------------------------
    def require(self, caller: Caller, what: str) -> None:
        """Compliance and the information supervisor (``inspect``); refusals audited."""
        if self.policy is None:
            raise RuntimeError("no policy engine: only the operator's CLI runs without one")
        with Session(self.store.engine) as session:
            self.policy.sync(session)
        decision = self.policy.decide(caller.principal, Action.INSPECT, None, (), now=self.clock())
        if not decision.allowed:
            refused = denial(decision, caller.actor, AuditAction.INSPECT)
            if refused.event is not None:
                refused.event.detail["attempted"] = what
                with transaction(self.store.engine) as session:
                    self.audit.append(session, refused.event)
            raise refused

    # --- running -------------------------------------------------------------------
    def run(self, actor: Actor, progress: Progress | None = None) -> Inspection:
        """Inspect the whole vault now; the stored row (with its signed report)."""
        started = self.clock()
        uid = new_uid("IN")
        walk = StoreWalk(self.store.engine, self.store.envelope, batch=self.batch)
        content = walk.run(lambda d, t: progress("archives", d, t) if progress else None)
        cases = self._case_texts()
        # Sign what is new first, so the newest checkpoint covers the log as it is now; a
        # log that no longer extends its checkpoint is not signed (verify says where, below).
        with contextlib.suppress(AuditIntegrityError):
            self.audit.checkpoint()
        verified = self.audit.verify(lambda d, t: progress("audit log", d, t) if progress else None)
        now = self.clock()
        with Session(self.store.engine) as session:
            listed = {
                "overdue_loans": findings.overdue_loans(session, now),
                "past_retention": findings.past_retention(session, now),
                "without_custodian": findings.unkept_archives(session),
                "grants_outliving_users": findings.orphaned_grants(session, now),
            }
        cp = verified.latest_checkpoint
        audit_part = {
            "ok": verified.ok,
            "entries": verified.entries,
            "checkpoints": verified.checkpoints,
            "problems": [
                {"kind": p.kind, "seq": p.seq, "message": p.message[:300]}
                for p in verified.all_problems()[:100]
            ],
            "newest_checkpoint": None
            if cp is None
            else {
                "size": cp.size,
                "root": cp.root_b64,
                "signed_at": datetime.fromtimestamp(cp.timestamp, now.tzinfo).isoformat(),
                "entries_after": max(verified.entries - cp.size, 0),
            },
        }
        integrity_ok = content.ok and cases["failed"] == 0 and verified.ok and cp is not None
        found = sum(int(part["total"]) for part in listed.values())
        finished = self.clock()
        body = {
            "kind": REPORT_KIND,
            "inspection": uid,
            "vault_id": self.store.keys.vault_id,
            "started_at": started.isoformat(),
            "finished_at": finished.isoformat(),
            "by": actor.username,
            "integrity_ok": integrity_ok,
            "clean": integrity_ok and found == 0,
            "content": content.public(),
            "leak_case_texts": cases,
            "audit_log": audit_part,
            "findings": listed,
        }
        signed = sign_report(body, self.audit.keys.audit_signing_key(), self.audit.origin)
        digest = body_sha256(body)
        failing = sorted(content.failing)
        with transaction(self.store.engine) as session:
            seq = self.audit.append_sequenced(
                session,
                AuditEvent(
                    action=AuditAction.INSPECT,
                    actor=actor,
                    archives=tuple(failing[:AUDITED_ARCHIVES]),
                    detail={
                        "inspection": uid,
                        "report_sha256": digest,
                        "clean": body["clean"],
                        "integrity_ok": integrity_ok,
                        "failing_archives": len(failing),
                        "audit_ok": verified.ok,
                        "findings": {k: int(v["total"]) for k, v in listed.items()},
                    },
                ),
            )
            row = Inspection(
                uid=uid,
                started_at=started,
                finished_at=finished,
                actor=actor.username,
                clean=bool(body["clean"]),
                report_sha256=digest,
                report=json.dumps(signed, ensure_ascii=False, sort_keys=True),
                audit_seq=seq,
            )
            session.add(row)
            session.flush()
            session.expunge(row)
        return row

    def _case_texts(self) -> dict[str, Any]:
        """The sealed text of every leak case and case event opens (counts and uids only)."""
        seal = CaseSeal(self.store.keys)
        ok, failed, failing = 0, 0, set()
        with Session(self.store.engine) as session:
            for case in session.exec(select(LeakCase).order_by(col(LeakCase.id))):
                blobs = [
                    (f, getattr(case, f)) for f in ("what_seen", "how_found", "remedial_action")
                ]
                for e in session.exec(
                    select(LeakCaseEvent).where(LeakCaseEvent.case_id == case.id)
                ):
                    blobs.append((f"event:{e.id}", e.reason))
                for name, blob in blobs:
                    if not blob:
                        continue
                    try:
                        seal.open(case.uid, name, blob)
                        ok += 1
                    except (InvalidCiphertext, UnicodeDecodeError):
                        failed += 1
                        failing.add(case.uid)
        return {"ok": ok, "failed": failed, "failing_cases": sorted(failing)}

    # --- the record ----------------------------------------------------------------
    def due(self, now: datetime | None = None) -> Due:
        now = now or self.clock()
        with Session(self.store.engine) as session:
            last = session.exec(
                select(Inspection).order_by(col(Inspection.started_at).desc()).limit(1)
            ).first()
        if last is None:
            return Due(None, None, True, self.every.days)
        return Due(last.uid, last.started_at, now - last.started_at > self.every, self.every.days)

    def page(self, limit: int = 50, offset: int = 0) -> tuple[list[Inspection], int]:
        with Session(self.store.engine) as session:
            total = session.exec(select(func.count()).select_from(Inspection)).one()
            rows = session.exec(
                select(Inspection)
                .order_by(col(Inspection.started_at).desc(), col(Inspection.id).desc())
                .limit(limit)
                .offset(offset)
            ).all()
            return list(rows), int(total)

    def get(self, uid: str) -> Inspection:
        with Session(self.store.engine) as session:
            row = session.exec(select(Inspection).where(Inspection.uid == uid[:32])).first()
        if row is None:
            raise NotFound(f"no inspection {uid[:32]!r}")
        return row

    # --- over HTTP (decided and audited) -------------------------------------------
    def start(self, caller: Caller) -> Inspection:
        self.require(caller, "run")
        return self.run(caller.actor)

    def listing(self, caller: Caller, limit: int, offset: int) -> tuple[list[Inspection], int]:
        self.require(caller, "list")
        rows, total = self.page(limit, offset)
        self._read(caller.actor, endpoint="list", count=len(rows))
        return rows, total

    def show(self, caller: Caller, uid: str) -> Inspection:
        self.require(caller, "read")
        row = self.get(uid)
        self._read(caller.actor, endpoint="read", inspection=row.uid)
        return row

    def _read(self, actor: Actor, **detail: Any) -> None:
        with transaction(self.store.engine) as session:
            self.audit.append(
                session, AuditEvent(action=AuditAction.INSPECTION_READ, actor=actor, detail=detail)
            )


def report_of(row: Inspection) -> dict[str, Any]:
    """The signed report document of a stored inspection."""
    doc: dict[str, Any] = json.loads(row.report)
    return doc
