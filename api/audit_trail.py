"""Reading the audit trail over HTTP: decided, done, and itself audited.

Each public method is one ``/audit`` route's action, blocking: the decision
(compliance and the information supervisor; a refusal is audited in a
transaction of its own), the read, and one ``audit:read`` entry committed
before anything is returned, so an entry that cannot be written (a 503) means
nothing was shown. The entry's detail holds the endpoint and the filters used,
which are identifiers, never content.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session

from api.errors import ApiProblem
from api.text_stream import stream_text
from audit.checkpoint import SignedCheckpoint
from audit.events import Actor, AuditAction, AuditEvent, Outcome
from audit.log import AuditLog
from audit.queries import AuditRecord
from audit.verify import Report
from foundation.db import transaction
from policies.archive_acts import Caller, denial
from policies.engine import PolicyEngine
from policies.roles import Action
from vault.vault import Vault


@dataclass(frozen=True, slots=True)
class TrailQuery:
    """The filters of one search of the log, as the route parsed them."""

    actor: str | None = None
    archive: str | None = None
    action: str | None = None
    outcome: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    offset: int = 0
    limit: int = 100


@dataclass(frozen=True, slots=True)
class SignedHead:
    """The newest signed checkpoint and the key that verifies it."""

    checkpoint: SignedCheckpoint
    verifier_key: str
    public_key_pem: str


@dataclass(frozen=True, slots=True)
class Inclusion:
    """An entry's inclusion proof in the tree of ``checkpoint`` (None: nothing signed)."""

    seq: int
    checkpoint: SignedCheckpoint | None
    proof: list[bytes]


class AuditTrail:
    """The audited reads of the audit log for its readers."""

    def __init__(
        self,
        *,
        vault: Vault,
        audit: AuditLog,
        policy: PolicyEngine,
        clock: Callable[[], datetime],
    ) -> None:
        self.vault = vault
        self.audit = audit
        self.policy = policy
        self.clock = clock

    @property
    def engine(self) -> sa.Engine:
        return self.vault.engine

    def _require_auditor(self, caller: Caller) -> None:
        """Decide with fresh grants; a refusal is audited in its own transaction."""
        with Session(self.engine) as session:
            self.policy.sync(session)
        decision = self.policy.decide(caller.principal, Action.AUDIT, None, (), now=self.clock())
        if not decision.allowed:
            refused = denial(decision, caller.actor, AuditAction.AUDIT_READ)
            if refused.event is not None:
                with transaction(self.engine) as session:
                    self.audit.append(session, refused.event)
            raise refused

    def _record_read(self, actor: Actor, endpoint: str, **detail: Any) -> None:
        with transaction(self.engine) as session:
            self.audit.append(
                session,
                AuditEvent(
                    action=AuditAction.AUDIT_READ,
                    actor=actor,
                    detail={"endpoint": endpoint, **detail},
                ),
            )

    def search(self, caller: Caller, query: TrailQuery) -> list[AuditRecord]:
        """Who did what to which archive, filtered; times must carry a zone."""
        self._require_auditor(caller)
        for name, moment in (("since", query.since), ("until", query.until)):
            if moment is not None and moment.tzinfo is None:
                raise ApiProblem(
                    422, "validation-failed", f"{name} needs a time zone (e.g. +08:00)"
                )
            try:
                # The log stores UTC: a time with no UTC form is bad input, not a 500.
                if moment is not None:
                    moment.astimezone(UTC)
            except (OverflowError, ValueError):
                raise ApiProblem(
                    422, "validation-failed", f"{name} is outside the calendar once taken to UTC"
                ) from None
        records = self.audit.query(
            actor=query.actor,
            archive=query.archive,
            action=query.action,
            outcome=query.outcome,
            since=query.since,
            until=query.until,
            limit=query.limit,
            offset=query.offset,
        )
        self._record_read(
            caller.actor,
            "query",
            filters={
                name: value
                for name, value in (
                    ("actor", query.actor),
                    ("archive", query.archive),
                    ("action", query.action),
                    ("outcome", query.outcome),
                    ("since", query.since.isoformat() if query.since else None),
                    ("until", query.until.isoformat() if query.until else None),
                )
                if value is not None
            },
            offset=query.offset,
            limit=query.limit,
            count=len(records),
        )
        return records

    def verify(self, caller: Caller) -> Report:
        """Re-hash the whole log and check every signed checkpoint."""
        self._require_auditor(caller)
        report = self.audit.verify()
        with transaction(self.engine) as session:
            self.audit.append(
                session,
                AuditEvent(
                    action=AuditAction.AUDIT_VERIFY,
                    actor=caller.actor,
                    outcome=Outcome.ALLOWED,
                    detail={
                        "endpoint": "verify",
                        "ok": report.ok,
                        "entries": report.entries,
                        "checkpoints": report.checkpoints,
                    },
                ),
            )
        return report

    def last_verification(self, caller: Caller) -> AuditRecord | None:
        """The newest whole-log verification recorded in the log (its result is in it).

        Re-hashing a million entries takes seconds, so a page shows this and offers
        to verify again rather than verifying on every look.
        """
        self._require_auditor(caller)
        found = self.audit.query(action=AuditAction.AUDIT_VERIFY, limit=1)
        return found[0] if found else None

    def signed_head(self, caller: Caller) -> SignedHead | None:
        """The newest checkpoint (signed now if there is none yet); None for an empty log."""
        self._require_auditor(caller)
        cp = self.audit.latest_checkpoint() or self.audit.checkpoint()
        if cp is None:
            return None
        self._record_read(caller.actor, "checkpoint", size=cp.size)
        return SignedHead(
            checkpoint=cp,
            verifier_key=self.audit.verifier_key(),
            public_key_pem=self.audit.public_key_pem(),
        )

    def inclusion(self, caller: Caller, seq: int) -> Inclusion:
        """The entry's proof in the newest checkpoint, signing one first if it is not covered."""
        self._require_auditor(caller)
        cp = self.audit.latest_checkpoint()
        if cp is None or seq > cp.size:
            self.audit.checkpoint()
            cp = self.audit.latest_checkpoint()
        proof = self.audit.inclusion_proof(seq, cp.size if cp else None)
        self._record_read(caller.actor, "proof", seq=seq, tree_size=cp.size if cp else None)
        return Inclusion(seq=seq, checkpoint=cp, proof=proof)

    def entry(self, caller: Caller, seq: int) -> tuple[AuditRecord, Inclusion]:
        """One entry with its inclusion proof in the newest signed checkpoint (the proof
        route's answer, plus the entry it proves); an unknown seq is a 404."""
        self._require_auditor(caller)
        found = self.audit.query(newest_first=False, offset=seq - 1, limit=1)
        if not found or found[0].seq != seq:
            raise ApiProblem(404, "not-found", f"no audit entry {seq}")
        cp = self.audit.latest_checkpoint()
        if cp is None or seq > cp.size:
            self.audit.checkpoint()
            cp = self.audit.latest_checkpoint()
        proof = self.audit.inclusion_proof(seq, cp.size if cp else None)
        self._record_read(caller.actor, "entry", seq=seq, tree_size=cp.size if cp else None)
        return found[0], Inclusion(seq=seq, checkpoint=cp, proof=proof)

    def bundle(self, caller: Caller) -> Iterator[bytes]:
        """The offline-verifiable bundle ``archive-vault audit export`` writes, streamed.

        Decided and recorded (an ``audit:read`` entry, endpoint ``bundle``) before
        anything is written; then a checkpoint is signed so the bundle's tail, that
        entry included, is covered by a signature, as the CLI does."""
        self._require_auditor(caller)
        self._record_read(caller.actor, "bundle")
        self.audit.checkpoint_if_new()
        return stream_text(self.audit.export_bundle)
