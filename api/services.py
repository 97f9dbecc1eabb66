"""What the routers work with: one container built at start-up from the vault.

Routers ask for ``Services`` and call these; they never build a store or an
engine themselves, so tests can hand the app a vault and a clock. Reads of an
archive's content go through ``read_archive`` (the route and the fast path
alike); everything else done to an archive through ``acts``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlmodel import Session

from api.accounts import Accounts
from api.audit_trail import AuditTrail
from api.metrics import CountingPolicyEngine
from api.security import InvalidToken, TokenClaims, TokenService
from audit.events import Actor, AuditAction, AuditEvent, Outcome
from audit.log import AuditLog
from audit.models import entry_table
from foundation.clock import utcnow
from foundation.db import transaction
from policies.access import ArchiveReads, Credentials
from policies.access_report import AccessReports
from policies.archive_acts import ArchiveActs
from policies.attribution import Attribution
from policies.decision import Decision, Principal
from policies.decoys import Decoys
from policies.detection import Detector, SweepResult
from policies.detection_cases import Alerts
from policies.detection_rules import load_rules
from policies.engine import PolicyEngine
from policies.errors import PolicyError, UnknownUser, UserDisabled
from policies.export_marks import ExportMarks
from policies.fingerprint import Fingerprinter
from policies.inspection import Inspections
from policies.leak_containment import Containment
from policies.leak_duties import LeakDuties
from policies.leak_evidence import LeakEvidenceService
from policies.leaks import LeakCases
from policies.notifications import MailOptions, Notifier
from policies.version import policy_files, record_policy_version
from policies.workflow import Workflow
from vault.meta import ArchiveMeta
from vault.store import ArchiveStore
from vault.vault import Vault

T = TypeVar("T")
# The longest ``groups`` query parameter a read accepts (the route and the fast path).
GROUPS_MAX_CHARS = 400
# Whether the audit table answers, not what is in it: at most one constant row.
_AUDIT_PROBE = sa.select(sa.literal(1)).select_from(entry_table).limit(1)


def health(engine: sa.Engine) -> bool:
    """Whether the database and the audit table answer; never appends, never says why not.

    An append would take the audit log's lock, which an unauthenticated caller
    must not be able to queue behind.
    """
    try:
        with engine.connect() as conn:
            conn.execute(sa.select(sa.literal(1)))
            conn.execute(_AUDIT_PROBE).all()
    except Exception:  # noqa: BLE001 - any failure is "not healthy"; no internals shown
        return False
    return True


@dataclass
class Services:
    vault: Vault
    store: ArchiveStore
    audit: AuditLog
    policy: PolicyEngine
    tokens: TokenService
    workflow: Workflow
    reads: ArchiveReads
    acts: ArchiveActs
    accounts: Accounts
    audit_trail: AuditTrail
    leaks: LeakCases
    traces: Attribution
    # Containment and notification duties of leak cases (policies.leak_containment,
    # policies.leak_duties), on the same cases.
    containment: Containment
    leak_duties: LeakDuties
    inspections: Inspections
    decoys: Decoys
    detector: Detector
    evidence: LeakEvidenceService
    access_reports: AccessReports
    clock: Callable[[], datetime] = field(default=utcnow)
    # How a failed login's answer is slowed; tests record the delays instead of waiting.
    sleep: Callable[[float], Awaitable[None]] = field(default=asyncio.sleep)

    @classmethod
    def build(cls, vault: Vault, *, clock: Callable[[], datetime] = utcnow) -> Services:
        audit = vault.audit_log()
        store = ArchiveStore(vault, audit, clock)
        with Session(vault.engine) as session:
            policy = CountingPolicyEngine.from_db(session, known_groups=list(vault.schema.groups))
        tokens = TokenService(
            secret=vault.keys.secret("token_signing"),
            issuer=f"archive-vault:{vault.keys.vault_id}",
            ttl=timedelta(minutes=vault.settings.token_ttl_minutes),
        )
        workflow = Workflow(audit=audit, engine=policy)
        workflow.store = store.lifecycle  # approved reclassifications re-seal in their transaction
        workflow.notifier = Notifier(MailOptions.from_settings(vault.settings))  # mail if on
        # Checked before anything is served: a bad rules file is a start-up error.
        rules = load_rules(vault.settings.detection_file)
        leaks = LeakCases(workflow, vault.keys)
        alerts = Alerts(leaks)
        decoys = Decoys(engine=vault.engine, desk=workflow, alerts=alerts, rules=rules, clock=clock)
        record_policy_version(
            vault.engine,
            audit,
            actor=Actor("system", "system"),
            files=policy_files(vault.settings.schema_file),
        )
        # Export fingerprints: one key from the key file, for marking and for tracing.
        fingerprinter = Fingerprinter(vault.keys.index_key("export:fingerprint"), vault.schema)
        leaks = LeakCases(workflow, vault.keys)
        return cls(
            vault=vault,
            store=store,
            audit=audit,
            policy=policy,
            tokens=tokens,
            workflow=workflow,
            reads=ArchiveReads(store, policy, clock, decoys=decoys),
            acts=ArchiveActs(
                store=store,
                policy=policy,
                workflow=workflow,
                audit=audit,
                clock=clock,
                marks=ExportMarks(fingerprinter),
                decoys=decoys,
            ),
            accounts=Accounts(
                vault=vault, index=store.index, audit=audit, tokens=tokens, clock=clock
            ),
            audit_trail=AuditTrail(vault=vault, audit=audit, policy=policy, clock=clock),
            leaks=leaks,
            traces=Attribution(leaks, fingerprinter),
            containment=Containment(leaks, workflow.loans),
            leak_duties=LeakDuties(leaks, vault.settings, vault.schema),
            inspections=Inspections(store=store, audit=audit, clock=clock, policy=policy),
            decoys=decoys,
            detector=Detector(
                engine=vault.engine,
                alerts=alerts,
                decoys=decoys,
                rules=rules,
                clock=clock,
                sequence=audit.integrate,
            ),
            evidence=LeakEvidenceService(leaks, audit, vault.engine, clock),
            access_reports=AccessReports(
                engine=vault.engine, audit=audit, policy=policy, clock=clock
            ),
            clock=clock,
        )

    @property
    def engine(self) -> Any:
        return self.vault.engine

    def health(self) -> bool:
        """The liveness probe of ``/healthz``, on the engine the service runs on now."""
        return health(self.engine)

    def parse_groups(self, raw: str | None) -> tuple[str, ...]:
        """The ``groups`` query parameter, checked against the schema (ValidationFailed if not)."""
        if raw is None or raw == "":
            return ()
        return tuple(self.store.schema.check_groups([g.strip() for g in raw.split(",")]))

    def read_archive(
        self, claims: TokenClaims, client: str | None, archive_no: str, wanted: tuple[str, ...]
    ) -> dict[str, Any]:
        """The audited read behind ``GET /customers/{archive_no}``, as its JSON body.

        Blocking, one transaction (``policies.access``), safe to run again after a
        rollback. A principal that no longer exists or is disabled, or a token
        revoked by a password change, answers as an invalid token.
        """
        who = Credentials(
            username=claims.username,
            issued_at=claims.issued_at,
            generation=claims.generation,
            client=client,
        )
        try:
            result = self.reads.read(who, archive_no, wanted)
        except (UnknownUser, UserDisabled):
            raise InvalidToken(
                "this token is revoked: the account is disabled, gone, or its password changed"
            ) from None
        view, d = result.view, result.decision
        return {
            "archive": view.meta.public(),
            "content": view.content,
            "masked_groups": list(view.masked),
            "decision": {
                "basis": d.basis,
                "why": d.why,
                "grant_id": d.grant_id,
                "purpose": d.purpose,
                "valid_until": d.valid_until.isoformat() if d.valid_until else None,
            },
        }

    def decide(
        self,
        principal: Principal,
        action: str,
        archive: ArchiveMeta | None,
        groups: tuple[str, ...] | list[str] = (),
        *,
        session: Session | None = None,
    ) -> Decision:
        """Decide with grants fresh from the database (other workers may have changed them).

        Given a session, the sync reads through it (the read path decides inside
        its own transaction); otherwise a short session of its own.
        """
        if session is not None:
            self.policy.sync(session)
        else:
            with Session(self.engine) as own:
                self.policy.sync(own)
        return self.policy.decide(principal, action, archive, tuple(groups), now=self.clock())

    def sweep(self) -> Any:
        """Expire requests and grants, flag overdue loans (idempotent, safe in every worker)."""
        return self.in_transaction(lambda s: self.workflow.sweeper.sweep(s, now=self.clock()))

    def detect(self) -> SweepResult:
        """One detection sweep (``policies.detection``): safe in every worker at once."""
        return self.detector.sweep()

    def in_transaction(self, fn: Callable[[Session], T]) -> T:
        """Run a workflow step in one transaction; a refused step is still audited.

        Grants the step changed reach this process's engine the way every other
        process's do: by revision, at the next decision's sync.

        A refusal rolls its transaction back, so the event describing the refused
        attempt (carried on the exception) is appended in a transaction of its own.
        """
        try:
            with transaction(self.engine) as session:
                return fn(session)
        except PolicyError as exc:
            if exc.event is not None:
                with transaction(self.engine) as session:
                    self.audit.append(session, exc.event)
            raise

    def record_denial(
        self,
        actor: Actor,
        action: AuditAction,
        decision: Decision,
        *,
        archives: tuple[str, ...] = (),
        groups: tuple[str, ...] = (),
    ) -> None:
        """A denial is audited too, in a transaction of its own."""
        with transaction(self.engine) as session:
            self.audit.append(
                session,
                AuditEvent(
                    action=action,
                    actor=actor,
                    outcome=Outcome.DENIED,
                    archives=archives,
                    groups=groups,
                    reason=decision.why[:500],
                    detail={"basis": decision.basis},
                ),
            )
