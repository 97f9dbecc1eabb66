"""The access-request workflow: file, approve stage by stage, deny, withdraw, expire;
the loan register; staff handover.

Rules enforced here (DOMAIN.md, issue 4), each refused with ``Refused(rule=...)``:
  self-approval          nobody signs their own request
  double-signing         one person signs at most one stage of a request, even
                         holding the roles of two stages
  wrong-role / wrong-custodian / wrong-department
                         a stage is signed by its role (or the archive's custodian);
                         a department head signs only for their own department
  order                  stages are signed in order and all are required
  not-pending            no step after a decision, withdrawal or expiry
  widen                  an approver may narrow (fewer groups, fewer hours), never widen
  loan-limit             a loan longer than 72 hours is refused when filed (Art 19.5)
Concurrency: every step bumps ``version`` with ``UPDATE ... WHERE version = seen`` as
its first write (and reads the row ``FOR UPDATE`` on PostgreSQL), so two approvers
acting at once cannot both move a stage; the loser gets ``Conflict``.

Every step appends its audit event through the sink inside the caller's
transaction, and records a notification for the requester. Nothing is deleted.
Grants reach the in-process ``PolicyEngine`` only after the transaction commits
(a rolled-back approval must never grant); other processes catch up with
``PolicyEngine.sync``. All time comes from the ``now`` argument.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlmodel import Session, col, select

from audit.events import SYSTEM, Actor, AuditAction, AuditEvent, AuditSink, Outcome
from policies import grant_terms, rechain
from policies.chains import Chains, KindSpec, load_chains
from policies.changes import apply_change, is_change, signer_problem
from policies.decide import PolicyEngine, Principal, link_of
from policies.errors import ConfigError, Conflict, InvalidInput, NotFound, Refused
from policies.models import (
    AccessGrant,
    AccessRequest,
    LoanEntry,
    Notification,
    PolicyCounter,
    RequestSignature,
)
from policies.roles import (
    Action,
    GrantState,
    LoanState,
    NotificationEvent,
    RequestKind,
    RequestState,
    Role,
)
from vault.models import Archive, ArchiveContact, ArchiveStatus, User, UserRole

_RANK = {"internal": 0, "secret": 1, "top_secret": 2}
MAX_REASON = 2000
MAX_ARCHIVES = 100


def _uid(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(5).upper()}"


def _actor(principal: Principal) -> Actor:
    return Actor(principal.username, principal.role_label)


def _fmt(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds")


@dataclass(frozen=True, slots=True)
class LoanView:
    """A loan register line with its status at ``now`` (overdue is computed, not stored)."""

    entry: LoanEntry
    status: LoanState


@dataclass
class SweepResult:
    expired_requests: list[str] = field(default_factory=list)
    expired_grants: list[str] = field(default_factory=list)
    overdue_loans: list[str] = field(default_factory=list)


@dataclass
class HandoverResult:
    from_user: str
    to_user: str
    archives: list[str] = field(default_factory=list)
    listed_on: list[str] = field(default_factory=list)
    # The leaver's open loans: not handed over (a loan is approved for its borrower).
    # Their grants are revoked; the register lines stay open until the material is
    # returned to an information officer.
    loans_to_return: list[str] = field(default_factory=list)
    revoked_grants: list[str] = field(default_factory=list)
    withdrawn_requests: list[str] = field(default_factory=list)
    # Top-secret archives the leaver kept as custodian: they need a new custodian
    # (a salesperson is not one by default), so they are listed, not moved.
    custodian_of: list[str] = field(default_factory=list)


def next_revision(session: Session) -> int:
    """Bump the grant revision counter inside the caller's transaction.

    The counter row is locked until commit, so revisions commit in order and
    ``PolicyEngine.sync`` never skips a change.
    """
    table = PolicyCounter.__table__  # type: ignore[attr-defined]
    dialect = session.get_bind().dialect.name
    ins = pg_insert(table) if dialect == "postgresql" else sqlite_insert(table)
    session.exec(ins.values(name="grants", value=0).on_conflict_do_nothing())  # type: ignore[call-overload]
    value = session.exec(  # type: ignore[call-overload]
        sa.update(table)
        .where(table.c.name == "grants")
        .values(value=table.c.value + 1)
        .returning(table.c.value)
    ).scalar_one()
    return int(value)


def _after_commit(session: Session, fn: Callable[[], None]) -> None:
    """Run ``fn`` once the caller's transaction commits; drop it on rollback."""
    pending: list[Callable[[], None]] | None = session.info.get("policies_after_commit")
    if pending is None:
        pending = session.info["policies_after_commit"] = []

        def _run(_s: Any) -> None:
            todo = list(session.info.get("policies_after_commit", []))
            session.info["policies_after_commit"] = []
            for job in todo:
                job()

        def _drop(_s: Any, *_a: Any) -> None:
            session.info["policies_after_commit"] = []

        sa.event.listen(session, "after_commit", _run)
        sa.event.listen(session, "after_soft_rollback", _drop)
    pending.append(fn)


class Workflow:
    """The request workflow over one database; stateless apart from its collaborators."""

    # The archive store (vault.store.ArchiveStore), wired in by the service: a
    # reclassification approved here re-seals the archive under its new level.
    store: Any = None

    def __init__(
        self,
        *,
        audit: AuditSink,
        chains: Chains | None = None,
        engine: PolicyEngine | None = None,
        known_groups: Sequence[str] | None = None,
    ) -> None:
        self.audit = audit
        self.engine = engine
        self.chains = chains or (engine.chains if engine else load_chains())
        if known_groups is None:
            if engine is not None:
                known_groups = engine.known_groups
            else:
                from vault.schema import SHIPPED_SCHEMA_FILE, load_schema

                known_groups = list(load_schema(SHIPPED_SCHEMA_FILE).groups)
        self.known_groups: tuple[str, ...] = tuple(known_groups)

    # -- helpers ------------------------------------------------------------------
    def _event(self, session: Session, event: AuditEvent) -> None:
        self.audit.append(session, event)

    def _notify(
        self,
        session: Session,
        recipient: str,
        request_uid: str | None,
        event: NotificationEvent,
        message: str,
        now: datetime,
    ) -> None:
        session.add(
            Notification(
                recipient=recipient,
                request_uid=request_uid,
                event=event.value,
                message=message[:1000],
                created_at=now,
            )
        )

    def _mirror(self, session: Session, grant: AccessGrant) -> None:
        engine = self.engine
        if engine is None:
            return
        uid = grant.uid
        link = link_of(grant) if grant.state == GrantState.ACTIVE else None
        _after_commit(session, lambda: engine.put_link(uid, link))

    def _load(self, session: Session, uid: str, *, lock: bool = True) -> AccessRequest:
        query = select(AccessRequest).where(AccessRequest.uid == uid)
        if lock:
            query = query.with_for_update()
        try:
            req = session.exec(query).first()
        except OperationalError:
            raise Conflict(f"request {uid} is being changed by someone else; try again") from None
        if req is None:
            raise NotFound(f"no request {uid}")
        return req

    def _bump(self, session: Session, req: AccessRequest, seen: int) -> None:
        """The first write of every step: move ``version`` on, or lose the race."""
        table = AccessRequest.__table__  # type: ignore[attr-defined]
        stmt = (
            sa.update(table)
            .where(table.c.id == req.id, table.c.version == seen)
            .values(version=seen + 1)
        )
        try:
            result = session.exec(stmt)  # type: ignore[call-overload]
        except OperationalError:
            raise Conflict(
                f"request {req.uid} was changed by someone else at the same time; reload it"
            ) from None
        if result.rowcount != 1:
            raise Conflict(f"request {req.uid} was changed by someone else; reload it")
        req.version = seen + 1

    def _may(self, actor: Principal, action: Action, roles: set[Role], now: datetime) -> bool:
        """Ask the policy when an engine is wired in; otherwise the roles named here."""
        if self.engine is not None:
            return self.engine.decide(actor, action, now=now).allowed
        return bool(roles & actor.roles)

    def _refuse(
        self,
        req: AccessRequest | None,
        actor: Principal,
        action: AuditAction,
        rule: str,
        message: str,
    ) -> Refused:
        event = AuditEvent(
            action=action,
            actor=_actor(actor),
            outcome=Outcome.DENIED,
            archives=tuple(req.archives) if req else (),
            purpose=req.purpose if req else None,
            reason=message,
            detail={"request": req.uid if req else None, "rule": rule},
        )
        return Refused(message, rule=rule, event=event)

    # -- filing ---------------------------------------------------------------------
    def file_request(
        self,
        session: Session,
        requester: Principal,
        *,
        kind: RequestKind | str,
        purpose: str,
        reason: str,
        now: datetime,
        archives: Sequence[str] = (),
        groups: Sequence[str] = (),
        hours: int | None = None,
        material: str = "",
        copies: int = 0,
        recipient: str = "",
        credential_ref: str | None = None,
    ) -> AccessRequest:
        """File a request (Art 18.1: object, purpose, reason, requester's particulars)."""
        try:
            spec = self.chains.kind(str(kind))
        except ConfigError:
            raise InvalidInput(
                f"unknown request kind {kind!r} (known: {', '.join(RequestKind)})"
            ) from None
        if spec.change:
            raise InvalidInput(f"a {spec.kind} request is filed through {spec.filed_at}")
        if not spec.filers & requester.roles:
            raise self._refuse(
                None,
                requester,
                AuditAction.REQUEST_FILE,
                "filer",
                f"none of your roles may file a {spec.kind} request "
                f"(filers: {', '.join(sorted(spec.filers))})",
            )
        if purpose not in self.chains.purposes:
            raise InvalidInput(f"purpose must be one of {', '.join(self.chains.purposes)}")
        reason = (reason or "").strip()
        if not reason:
            raise InvalidInput("a request states its reason (Art 18.1)")
        if len(reason) > MAX_REASON:
            raise InvalidInput(f"the reason is longer than {MAX_REASON} characters")
        archive_rows = self._archives(session, spec, archives, now)
        classification = max(
            (a.classification for a in archive_rows),
            key=lambda c: _RANK.get(c, 99),
            default="internal",
        )
        custodian = self._custodian(spec, requester, archive_rows)
        req_groups = self._groups(groups)
        hours = self._hours(spec, requester, hours)
        if spec.kind is RequestKind.LOAN:
            material = (material or "").strip()
            if not material:
                raise InvalidInput("a loan names the material borrowed (Art 19.5)")
            if not isinstance(copies, int) or copies < 1:
                raise InvalidInput("a loan records how many copies are borrowed (at least 1)")
        if spec.kind is RequestKind.EXTERNAL and not (recipient or "").strip():
            raise InvalidInput("external provision names the outside party (recipient)")
        if requester.external:
            credential_ref = (credential_ref or self._credential(session, requester) or "").strip()
            if not credential_ref:
                raise InvalidInput(
                    "a visitor registers an introduction letter or work-ID number (Art 18.4)"
                )
        stages = spec.stages_for(classification=classification, external=requester.external)
        req = AccessRequest(
            uid=_uid("R"),
            kind=spec.kind.value,
            requester=requester.username,
            requester_department=requester.department,
            requester_external=requester.external,
            credential_ref=credential_ref if requester.external else None,
            archives=[a.archive_no for a in archive_rows],
            classification=classification,
            custodian=custodian,
            purpose=purpose,
            reason=reason,
            requested_groups=list(req_groups),
            groups=list(req_groups),
            requested_hours=hours,
            hours=hours,
            material=material,
            copies=copies,
            recipient=(recipient or "").strip(),
            stages=[s.as_dict() for s in stages],
            next_stage=0,
            state=RequestState.PENDING.value,
            version=1,
            created_at=now,
            expires_at=now + timedelta(hours=self.chains.pending_expiry_hours),
        )
        session.add(req)
        session.flush()
        self._event(
            session,
            AuditEvent(
                action=AuditAction.REQUEST_FILE,
                actor=_actor(requester),
                archives=tuple(req.archives),
                groups=tuple(req.groups),
                purpose=purpose,
                reason=reason,
                detail={
                    "request": req.uid,
                    "kind": req.kind,
                    "hours": hours,
                    "classification": classification,
                    "stages": [s.name for s in stages],
                    "credential_ref": req.credential_ref or None,
                    "recipient": req.recipient or None,
                },
            ),
        )
        self._notify(
            session,
            requester.username,
            req.uid,
            NotificationEvent.FILED,
            f"{spec.kind} request {req.uid} filed; it needs "
            f"{', '.join(s.label for s in stages)}; it expires unless decided by "
            f"{_fmt(req.expires_at)}",
            now,
        )
        return req

    def _archives(
        self,
        session: Session,
        spec: KindSpec,
        archives: Sequence[str],
        now: datetime,
    ) -> list[Archive]:
        wanted = list(dict.fromkeys(a.strip() for a in archives if a and a.strip()))
        if not spec.needs_archives:
            if wanted:
                raise InvalidInput(f"a {spec.kind} request names no archives")
            return []
        if not wanted:
            raise InvalidInput(f"a {spec.kind} request names at least one archive (Art 18.1)")
        if len(wanted) > MAX_ARCHIVES:
            raise InvalidInput(f"at most {MAX_ARCHIVES} archives per request")
        rows = session.exec(select(Archive).where(col(Archive.archive_no).in_(wanted))).all()
        found = {a.archive_no: a for a in rows}
        missing = [a for a in wanted if a not in found]
        if missing:
            raise NotFound(f"no archive {', '.join(missing)}")
        out = [found[a] for a in wanted]
        gone = [a.archive_no for a in out if a.status != ArchiveStatus.ACTIVE]
        if gone:
            raise InvalidInput(f"archive {', '.join(gone)} was destroyed")
        if spec.requires_retention_expired:
            early = [a.archive_no for a in out if a.retention_until >= now.date()]
            if early:
                raise InvalidInput(
                    f"archive {', '.join(early)} is still within its retention "
                    "period; only expired archives are destroyed (Art 25)"
                )
        return out

    def _custodian(
        self,
        spec: KindSpec,
        requester: Principal,
        rows: list[Archive],
    ) -> str | None:
        top = [a for a in rows if a.classification == "top_secret"]
        if not top:
            return None
        keepers = {a.custodian for a in top}
        if None in keepers or "" in keepers:
            missing = [a.archive_no for a in top if not a.custodian]
            raise InvalidInput(
                f"top-secret archive {', '.join(missing)} has no custodian; "
                "one must be named before anyone can access it (Art 22)"
            )
        if len(keepers) > 1:
            raise InvalidInput(
                "top-secret archives with different custodians go in separate "
                "requests (each custodian signs their own)"
            )
        custodian = next(iter(keepers))
        needs = any(
            s.custodian
            for s in spec.stages_for(classification="top_secret", external=requester.external)
        )
        if needs and custodian == requester.username:
            raise self._refuse(
                None,
                requester,
                AuditAction.REQUEST_FILE,
                "self-approval",
                "you are the custodian of this top-secret archive and cannot "
                "sign your own request; ask for another custodian to be named",
            )
        return custodian

    def _groups(self, groups: Sequence[str] | None) -> tuple[str, ...]:
        if isinstance(groups, str):
            groups = [g for g in groups.split(",") if g]
        wanted = tuple(dict.fromkeys(g.strip() for g in (groups or ()) if g.strip()))
        unknown = [g for g in wanted if g not in self.known_groups]
        if unknown:
            raise InvalidInput(
                f"unknown field group(s) {', '.join(unknown)} "
                f"(known: {', '.join(self.known_groups)})"
            )
        return wanted or self.known_groups

    def _hours(self, spec: KindSpec, requester: Principal, hours: int | None) -> int:
        limit = self.chains.max_loan_hours if spec.kind is RequestKind.LOAN else spec.grant_hours
        assert limit is not None
        if hours is None:
            if spec.kind is RequestKind.LOAN:
                raise InvalidInput(
                    f"a loan states its duration in hours (at most {limit}, Art 19.5)"
                )
            return limit
        if not isinstance(hours, int) or isinstance(hours, bool) or hours < 1:
            raise InvalidInput("hours must be a positive whole number")
        if hours > limit:
            if spec.kind is RequestKind.LOAN:
                raise self._refuse(
                    None,
                    requester,
                    AuditAction.REQUEST_FILE,
                    "loan-limit",
                    f"a loan may not exceed {limit} hours (Art 19.5); {hours} requested",
                )
            raise InvalidInput(f"a {spec.kind} grant lasts at most {limit} hours")
        return hours

    def _credential(self, session: Session, principal: Principal) -> str | None:
        return session.exec(
            select(User.credential_ref).where(User.username == principal.username)
        ).first()

    # -- signing ----------------------------------------------------------------------
    def _check_signer(
        self,
        session: Session,
        req: AccessRequest,
        signer: Principal,
        action: AuditAction,
        now: datetime,
        expected_version: int | None,
    ) -> tuple[int, dict[str, Any], str]:
        if expected_version is not None and expected_version != req.version:
            raise Conflict(
                f"request {req.uid} changed since you opened it "
                f"(version {expected_version} → {req.version}); reload it"
            )
        if req.state != RequestState.PENDING:
            raise self._refuse(
                req,
                signer,
                action,
                "not-pending",
                f"request {req.uid} is {req.state}; it can no longer be signed",
            )
        if now >= req.expires_at:
            raise self._refuse(
                req,
                signer,
                action,
                "not-pending",
                f"request {req.uid} expired at {_fmt(req.expires_at)} without a decision",
            )
        if signer.username == req.requester:
            raise self._refuse(
                req, signer, action, "self-approval", "nobody signs their own request"
            )
        signed = session.exec(
            select(RequestSignature.signer).where(RequestSignature.request_id == req.id)
        ).all()
        if signer.username in signed:
            raise self._refuse(
                req,
                signer,
                action,
                "double-signing",
                f"you already signed a stage of request {req.uid}; one person "
                "signs at most one stage, even holding both roles",
            )
        index = req.next_stage
        if index >= len(req.stages):
            raise self._refuse(
                req, signer, action, "order", f"request {req.uid} has no stage left to sign"
            )
        stage = req.stages[index]
        if stage.get("custodian"):
            if signer.username != req.custodian:
                raise self._refuse(
                    req,
                    signer,
                    action,
                    "wrong-custodian",
                    f"stage {stage['name']} of request {req.uid} is signed by "
                    f"the archive's custodian ({req.custodian})",
                )
            role = "custodian"
        else:
            held = sorted(set(stage["roles"]) & signer.roles)
            if not held:
                raise self._refuse(
                    req,
                    signer,
                    action,
                    "wrong-role",
                    f"stage {stage['name']} of request {req.uid} is signed by "
                    f"{stage['label']} ({', '.join(stage['roles'])}); stages "
                    "are signed in order",
                )
            role = held[0]
        if stage.get("scope") == "requester_department" and (
            not signer.department or signer.department != req.requester_department
        ):
            raise self._refuse(
                req,
                signer,
                action,
                "wrong-department",
                f"a department head signs only for their own department; "
                f"request {req.uid} is from "
                f"{req.requester_department or 'no department'}",
            )
        problem = signer_problem(req, signer, stage)  # change requests' own rules
        if problem is not None:
            raise self._refuse(req, signer, action, *problem)
        return index, stage, role

    def approve(
        self,
        session: Session,
        request_uid: str,
        approver: Principal,
        *,
        now: datetime,
        groups: Sequence[str] | None = None,
        hours: int | None = None,
        note: str = "",
        expected_version: int | None = None,
    ) -> AccessRequest:
        """Sign the next stage; the last signature approves and creates the grant.

        ``groups``/``hours`` narrow the request (never widen it). ``expected_version``
        is the version the approver saw; a different one means someone acted first.
        """
        req = self._load(session, request_uid)
        rechain.refresh(session, req, self.chains, self.audit, actor=_actor(approver), now=now)
        seen = req.version
        index, stage, role = self._check_signer(
            session, req, approver, AuditAction.REQUEST_APPROVE, now, expected_version
        )
        new_groups = list(req.groups)
        if groups is not None:
            narrowed = self._groups(groups)
            wider = [g for g in narrowed if g not in req.groups]
            if wider:
                raise self._refuse(
                    req,
                    approver,
                    AuditAction.REQUEST_APPROVE,
                    "widen",
                    f"an approver may narrow a request, never widen it: "
                    f"{', '.join(wider)} was not requested",
                )
            new_groups = list(narrowed)
        new_hours = req.hours
        if hours is not None:
            if not isinstance(hours, int) or isinstance(hours, bool) or hours < 1:
                raise InvalidInput("hours must be a positive whole number")
            if req.hours is not None and hours > req.hours:
                raise self._refuse(
                    req,
                    approver,
                    AuditAction.REQUEST_APPROVE,
                    "widen",
                    f"an approver may shorten a request, never lengthen it "
                    f"({hours} > {req.hours} hours)",
                )
            new_hours = hours
        self._bump(session, req, seen)
        session.add(
            RequestSignature(
                request_id=req.id,
                stage_index=index,
                stage_name=stage["name"],
                signer=approver.username,
                signer_role=role,
                decision="approve",
                reason=(note or "").strip()[:MAX_REASON],
                groups=new_groups,
                hours=new_hours,
                signed_at=now,
            )
        )
        try:
            session.flush()
        except IntegrityError:
            raise Conflict(
                f"stage {stage['name']} of request {req.uid} was signed by someone "
                "else at the same time"
            ) from None
        req.groups = new_groups
        req.hours = new_hours
        req.next_stage = index + 1
        final = req.next_stage >= len(req.stages)
        grant: AccessGrant | None = None
        if final:
            req.state = RequestState.APPROVED.value
            req.decided_at = now
            req.decided_by = approver.username
            if is_change(req.kind):
                apply_change(self, session, req, approver, now)  # in this transaction
            else:
                grant = self._grant(session, req, now)
                req.grant_uid = grant.uid
        session.add(req)
        session.flush()
        self._event(
            session,
            AuditEvent(
                action=AuditAction.REQUEST_APPROVE,
                actor=Actor(approver.username, role),
                archives=tuple(req.archives),
                groups=tuple(req.groups),
                grant_id=grant.uid if grant else None,
                purpose=req.purpose,
                reason=req.reason,
                detail={
                    "request": req.uid,
                    "kind": req.kind,
                    "stage": stage["name"],
                    "final": final,
                    "hours": req.hours,
                    "narrowed": groups is not None or hours is not None,
                },
            ),
        )
        if not final:
            following = req.stages[req.next_stage]
            self._notify(
                session,
                req.requester,
                req.uid,
                NotificationEvent.STAGE_APPROVED,
                f"{approver.username} ({role}) signed stage {stage['name']} of "
                f"request {req.uid}; next: {following['label']}",
                now,
            )
        else:
            self._notify(
                session,
                req.requester,
                req.uid,
                NotificationEvent.APPROVED,
                f"request {req.uid} approved; "
                + (
                    f"grant {grant.uid} valid until {_fmt(grant.not_after)}"
                    if grant is not None
                    else "the change is applied"
                ),
                now,
            )
        return req

    def _grant(self, session: Session, req: AccessRequest, now: datetime) -> AccessGrant:
        spec = self.chains.kind(req.kind)
        hours = req.hours or spec.grant_hours or 1
        grant = AccessGrant(
            uid=_uid("G"),
            request_id=req.id,
            request_uid=req.uid,
            kind=req.kind,
            subject=req.requester,
            archives=list(req.archives),
            actions=[a.value for a in spec.grants],
            groups=list(req.groups),
            # The clock starts at the final approval, not at filing.
            not_before=now,
            not_after=now + timedelta(hours=hours),
            custodian_signed=any(s.get("custodian") for s in req.stages),
            purpose=req.purpose,
            reason=req.reason,
            state=GrantState.ACTIVE.value,
            rev=next_revision(session),
        )
        grant_terms.stamp(grant, req, loan=spec.kind is RequestKind.LOAN)
        session.add(grant)
        session.flush()
        if spec.kind is RequestKind.LOAN:
            loan = LoanEntry(
                uid=_uid("L"),
                request_id=req.id,
                grant_id=grant.id,
                borrower=req.requester,
                archives=list(req.archives),
                material=req.material,
                copies=req.copies,
                reason=req.reason,
                start_at=now,
                due_at=grant.not_after,
                state=LoanState.OUT.value,
            )
            session.add(loan)
            session.flush()
            self._event(
                session,
                AuditEvent(
                    action=AuditAction.LOAN,
                    actor=SYSTEM,
                    archives=tuple(req.archives),
                    groups=tuple(req.groups),
                    grant_id=grant.uid,
                    purpose=req.purpose,
                    reason=req.reason,
                    detail={
                        "loan": loan.uid,
                        "request": req.uid,
                        "borrower": req.requester,
                        "material": loan.material or None,
                        "copies": loan.copies,
                        "start": _fmt(now),
                        "due": _fmt(loan.due_at),
                    },
                ),
            )
        self._mirror(session, grant)
        return grant

    def deny(
        self,
        session: Session,
        request_uid: str,
        approver: Principal,
        *,
        reason: str,
        now: datetime,
        expected_version: int | None = None,
    ) -> AccessRequest:
        """Deny at the current stage; the reason is required and kept for good."""
        reason = (reason or "").strip()
        if not reason:
            raise InvalidInput("a denial states its reason")
        if len(reason) > MAX_REASON:
            raise InvalidInput(f"the reason is longer than {MAX_REASON} characters")
        req = self._load(session, request_uid)
        seen = req.version
        index, stage, role = self._check_signer(
            session, req, approver, AuditAction.REQUEST_DENY, now, expected_version
        )
        self._bump(session, req, seen)
        session.add(
            RequestSignature(
                request_id=req.id,
                stage_index=index,
                stage_name=stage["name"],
                signer=approver.username,
                signer_role=role,
                decision="deny",
                reason=reason,
                groups=list(req.groups),
                hours=req.hours,
                signed_at=now,
            )
        )
        try:
            session.flush()
        except IntegrityError:
            raise Conflict(
                f"stage {stage['name']} of request {req.uid} was signed by someone "
                "else at the same time"
            ) from None
        req.state = RequestState.DENIED.value
        req.decided_at = now
        req.decided_by = approver.username
        req.denial_reason = reason
        session.add(req)
        session.flush()
        self._event(
            session,
            AuditEvent(
                action=AuditAction.REQUEST_DENY,
                actor=Actor(approver.username, role),
                outcome=Outcome.DENIED,
                archives=tuple(req.archives),
                groups=tuple(req.groups),
                purpose=req.purpose,
                reason=reason,
                detail={
                    "request": req.uid,
                    "kind": req.kind,
                    "stage": stage["name"],
                    "request_reason": req.reason,
                },
            ),
        )
        self._notify(
            session,
            req.requester,
            req.uid,
            NotificationEvent.DENIED,
            f"request {req.uid} denied by {approver.username} ({role}): {reason}",
            now,
        )
        return req

    def withdraw(
        self,
        session: Session,
        request_uid: str,
        requester: Principal,
        *,
        now: datetime,
    ) -> AccessRequest:
        """The requester takes back a request before it is decided; it can never be reused."""
        req = self._load(session, request_uid)
        seen = req.version
        if requester.username != req.requester:
            raise self._refuse(
                req,
                requester,
                AuditAction.REQUEST_WITHDRAW,
                "not-requester",
                "only the requester withdraws a request",
            )
        if req.state != RequestState.PENDING:
            raise self._refuse(
                req,
                requester,
                AuditAction.REQUEST_WITHDRAW,
                "not-pending",
                f"request {req.uid} is {req.state}; only a pending request is withdrawn",
            )
        self._bump(session, req, seen)
        req.state = RequestState.WITHDRAWN.value
        req.decided_at = now
        req.decided_by = requester.username
        session.add(req)
        session.flush()
        self._event(
            session,
            AuditEvent(
                action=AuditAction.REQUEST_WITHDRAW,
                actor=_actor(requester),
                archives=tuple(req.archives),
                purpose=req.purpose,
                reason=req.reason,
                detail={"request": req.uid, "kind": req.kind},
            ),
        )
        self._notify(
            session,
            req.requester,
            req.uid,
            NotificationEvent.WITHDRAWN,
            f"request {req.uid} withdrawn",
            now,
        )
        return req

    # -- sweeping -----------------------------------------------------------------------
    def sweep(self, session: Session, *, now: datetime) -> SweepResult:
        """Expire undecided requests and ended grants, flag overdue loans (idempotent)."""
        result = SweepResult()
        pending = session.exec(
            select(AccessRequest)
            .where(AccessRequest.state == RequestState.PENDING, AccessRequest.expires_at <= now)
            .with_for_update(skip_locked=True)
        ).all()
        for req in pending:
            req.state = RequestState.EXPIRED.value
            req.decided_at = req.expires_at
            req.version += 1
            session.add(req)
            self._event(
                session,
                AuditEvent(
                    action=AuditAction.REQUEST_EXPIRE,
                    actor=SYSTEM,
                    archives=tuple(req.archives),
                    purpose=req.purpose,
                    reason=req.reason,
                    detail={
                        "request": req.uid,
                        "kind": req.kind,
                        "what": "request",
                        "expired_at": _fmt(req.expires_at),
                    },
                ),
            )
            self._notify(
                session,
                req.requester,
                req.uid,
                NotificationEvent.EXPIRED,
                f"request {req.uid} expired at {_fmt(req.expires_at)} without a "
                "decision; file a new one if you still need access",
                now,
            )
            result.expired_requests.append(req.uid)
        grants = session.exec(
            select(AccessGrant)
            .where(AccessGrant.state == GrantState.ACTIVE, AccessGrant.not_after <= now)
            .with_for_update(skip_locked=True)
        ).all()
        for grant in grants:
            grant.state = GrantState.EXPIRED.value
            grant.ended_at = grant.not_after
            grant.rev = next_revision(session)
            session.add(grant)
            self._event(
                session,
                AuditEvent(
                    action=AuditAction.REQUEST_EXPIRE,
                    actor=SYSTEM,
                    archives=tuple(grant.archives),
                    groups=tuple(grant.groups),
                    grant_id=grant.uid,
                    purpose=grant.purpose,
                    reason=grant.reason,
                    detail={
                        "request": grant.request_uid,
                        "what": "grant",
                        "expired_at": _fmt(grant.not_after),
                    },
                ),
            )
            self._notify(
                session,
                grant.subject,
                grant.request_uid,
                NotificationEvent.GRANT_EXPIRED,
                f"grant {grant.uid} ended at {_fmt(grant.not_after)}",
                now,
            )
            self._mirror(session, grant)
            result.expired_grants.append(grant.uid)
        overdue = session.exec(
            select(LoanEntry).where(
                LoanEntry.state == LoanState.OUT,
                LoanEntry.due_at <= now,
                LoanEntry.overdue_notified.is_(False),  # type: ignore[attr-defined]
            )
        ).all()
        for loan in overdue:
            loan.overdue_notified = True
            session.add(loan)
            self._notify(
                session,
                loan.borrower,
                None,
                NotificationEvent.OVERDUE,
                f"loan {loan.uid} ({loan.material}) was due at {_fmt(loan.due_at)}; "
                "return it to the information officer now",
                now,
            )
            result.overdue_loans.append(loan.uid)
        session.flush()
        if self.engine is not None:
            self.engine.sweep(now)
        return result

    # -- the loan register ---------------------------------------------------------------
    def _loan(self, session: Session, loan_uid: str) -> LoanEntry:
        loan = session.exec(
            select(LoanEntry).where(LoanEntry.uid == loan_uid).with_for_update()
        ).first()
        if loan is None:
            raise NotFound(f"no loan {loan_uid}")
        return loan

    def confirm_loan(
        self,
        session: Session,
        loan_uid: str,
        borrower: Principal,
        *,
        now: datetime,
    ) -> LoanEntry:
        """The borrower confirms the register line (Art 19.5)."""
        loan = self._loan(session, loan_uid)
        if borrower.username != loan.borrower:
            raise Refused("only the borrower confirms a loan", rule="not-borrower")
        if loan.borrower_confirmed_at is not None:
            return loan
        loan.borrower_confirmed_at = now
        session.add(loan)
        # Only now does the loan's grant count (Art 19.5: the line is confirmed first).
        grant = session.get(AccessGrant, loan.grant_id, with_for_update=True)
        if grant is not None and grant.awaiting_confirmation:
            grant.awaiting_confirmation = False
            grant.rev = next_revision(session)
            session.add(grant)
            self._mirror(session, grant)
        session.flush()
        self._event(
            session,
            AuditEvent(
                action=AuditAction.LOAN,
                actor=_actor(borrower),
                archives=tuple(loan.archives),
                detail={"loan": loan.uid, "op": "borrower-confirmed"},
            ),
        )
        self._notify(
            session,
            loan.borrower,
            None,
            NotificationEvent.LOAN_CONFIRMED,
            f"you confirmed loan {loan.uid}; due {_fmt(loan.due_at)}",
            now,
        )
        return loan

    def return_loan(
        self,
        session: Session,
        loan_uid: str,
        actor: Principal,
        *,
        now: datetime,
    ) -> LoanEntry:
        """Cancel the register line (Art 20): the grant ends now and for good."""
        loan = self._loan(session, loan_uid)
        if actor.username != loan.borrower and not self._may(
            actor, Action.REGISTER_LOAN, {Role.INFORMATION_OFFICER}, now
        ):
            raise Refused(
                "a loan is returned by its borrower or registered by an information officer",
                rule="not-borrower",
            )
        if loan.state == LoanState.RETURNED:
            raise Refused(
                f"loan {loan.uid} was already returned at {_fmt(loan.returned_at or now)}",
                rule="already-returned",
            )
        loan.state = LoanState.RETURNED.value
        loan.returned_at = now
        loan.returned_to = actor.username
        session.add(loan)
        grant = session.get(AccessGrant, loan.grant_id, with_for_update=True)
        if grant is not None and grant.state == GrantState.ACTIVE:
            grant.state = GrantState.RETURNED.value
            grant.ended_at = now
            grant.rev = next_revision(session)
            session.add(grant)
            self._mirror(session, grant)
        session.flush()
        overdue = now > loan.due_at
        self._event(
            session,
            AuditEvent(
                action=AuditAction.LOAN_RETURN,
                actor=_actor(actor),
                archives=tuple(loan.archives),
                grant_id=grant.uid if grant else None,
                purpose=grant.purpose if grant else None,
                reason=loan.reason,
                detail={
                    "loan": loan.uid,
                    "borrower": loan.borrower,
                    "due": _fmt(loan.due_at),
                    "returned": _fmt(now),
                    "overdue": overdue,
                },
            ),
        )
        self._notify(
            session,
            loan.borrower,
            None,
            NotificationEvent.RETURNED,
            f"loan {loan.uid} returned{' late' if overdue else ''}; access ended",
            now,
        )
        return loan

    def loan_register(
        self,
        session: Session,
        *,
        now: datetime,
        open_only: bool = False,
    ) -> list[LoanView]:
        query = select(LoanEntry).order_by(col(LoanEntry.start_at).desc())
        if open_only:
            query = query.where(LoanEntry.state == LoanState.OUT)
        return [LoanView(e, loan_status(e, now)) for e in session.exec(query).all()]

    # -- views ----------------------------------------------------------------------------
    def requests_for(self, session: Session, username: str) -> list[AccessRequest]:
        return list(
            session.exec(
                select(AccessRequest)
                .where(AccessRequest.requester == username)
                .order_by(col(AccessRequest.created_at).desc())
            ).all()
        )

    def notifications_for(self, session: Session, username: str) -> list[Notification]:
        return list(
            session.exec(
                select(Notification)
                .where(Notification.recipient == username)
                .order_by(col(Notification.id))
            ).all()
        )

    def signatures(self, session: Session, request_uid: str) -> list[RequestSignature]:
        req = self._load(session, request_uid, lock=False)
        return list(
            session.exec(
                select(RequestSignature)
                .where(RequestSignature.request_id == req.id)
                .order_by(col(RequestSignature.stage_index))
            ).all()
        )

    def queue_for(
        self,
        session: Session,
        approver: Principal,
        *,
        now: datetime,
    ) -> list[AccessRequest]:
        """Pending requests whose next stage this person may sign now."""
        out = []
        for req in session.exec(
            select(AccessRequest)
            .where(AccessRequest.state == RequestState.PENDING, AccessRequest.expires_at > now)
            .order_by(col(AccessRequest.created_at))
        ).all():
            try:
                self._check_signer(session, req, approver, AuditAction.REQUEST_APPROVE, now, None)
            except Refused:
                continue
            out.append(req)
        return out

    # -- staff changes (篇七) ---------------------------------------------------------------
    def handover(
        self,
        session: Session,
        *,
        from_user: str,
        to_user: str,
        actor: Principal,
        now: datetime,
        reason: str = "",
    ) -> AccessRequest:
        """File a leaver's handover; another person's signature applies it
        (``policies.handover``, then ``apply_handover``)."""
        from policies.handover import file_handover

        return file_handover(
            self, session, from_user=from_user, to_user=to_user, actor=actor, now=now, reason=reason
        )

    def apply_handover(
        self,
        session: Session,
        *,
        from_user: str,
        to_user: str,
        actor: Principal,
        now: datetime,
        archives: Sequence[str],
        listed_on: Sequence[str],
    ) -> HandoverResult:
        """Give the recorded archives and contact listings of a leaver to another
        salesperson, revoke all the leaver's grants (loans' too: the open loans stay
        on the register in the leaver's name until returned), withdraw their pending
        requests, and disable them, in the caller's one transaction. Called only by
        the final signature of a handover request, which checked who filed, who signs,
        the successor, and that the leaver still holds exactly ``archives`` and
        ``listed_on`` as recorded when it was filed."""
        from policies.directory import disable_user, load_principal

        successor = load_principal(session, to_user)  # refuses disabled users
        if Role.SALESPERSON not in successor.roles:
            raise InvalidInput(f"{to_user} is not a salesperson")
        result = HandoverResult(from_user=from_user, to_user=to_user)
        result.custodian_of = list(
            session.exec(
                select(Archive.archive_no).where(
                    Archive.custodian == from_user, Archive.status == ArchiveStatus.ACTIVE
                )
            ).all()
        )
        for archive in session.exec(
            select(Archive)
            .where(Archive.owner == from_user, col(Archive.archive_no).in_(list(archives)))
            .with_for_update()
        ).all():
            archive.owner = to_user
            archive.updated_at = now
            session.add(archive)
            result.archives.append(archive.archive_no)
            # The new owner is not also listed as a contact (as in a reassignment).
            mine = session.get(ArchiveContact, (archive.id, to_user))
            if mine is not None:
                session.delete(mine)
        for contact, listed in session.exec(
            select(ArchiveContact, Archive)
            .join(Archive, col(Archive.id) == col(ArchiveContact.archive_id))
            .where(
                ArchiveContact.username == from_user,
                col(Archive.archive_no).in_(list(listed_on)),
            )
        ).all():
            exists = session.get(ArchiveContact, (contact.archive_id, to_user))
            session.delete(contact)
            if exists is None and listed.owner != to_user:
                session.add(ArchiveContact(archive_id=contact.archive_id, username=to_user))
            result.listed_on.append(listed.archive_no)
        session.flush()
        result.loans_to_return = sorted(
            session.exec(
                select(LoanEntry.uid).where(
                    LoanEntry.borrower == from_user, LoanEntry.state == LoanState.OUT
                )
            ).all()
        )
        for grant in session.exec(
            select(AccessGrant)
            .where(AccessGrant.subject == from_user, AccessGrant.state == GrantState.ACTIVE)
            .with_for_update()
        ).all():
            grant.state = GrantState.REVOKED.value
            grant.ended_at = now
            grant.rev = next_revision(session)
            session.add(grant)
            self._mirror(session, grant)
            result.revoked_grants.append(grant.uid)
        for req in session.exec(
            select(AccessRequest)
            .where(
                AccessRequest.requester == from_user, AccessRequest.state == RequestState.PENDING
            )
            .with_for_update()
        ).all():
            req.state = RequestState.WITHDRAWN.value
            req.decided_at = now
            req.decided_by = actor.username
            req.version += 1
            session.add(req)
            result.withdrawn_requests.append(req.uid)
        session.flush()
        self._event(
            session,
            AuditEvent(
                action=AuditAction.REASSIGN,
                actor=_actor(actor),
                archives=(*result.archives, *result.listed_on),
                reason="staff change: the responsible employee left",
                detail={
                    "from": from_user,
                    "to": to_user,
                    "listed_on": result.listed_on,
                    "loans_to_return": result.loans_to_return,
                    "revoked_grants": result.revoked_grants,
                    "withdrawn_requests": result.withdrawn_requests,
                    "custodian_of": result.custodian_of,
                },
            ),
        )
        disable_user(session, from_user, audit=self.audit, actor=_actor(actor))
        self._notify(
            session,
            to_user,
            None,
            NotificationEvent.REASSIGNED,
            f"{len(result.archives)} archive(s) of {from_user} are now yours and you are "
            f"listed on {len(result.listed_on)} more; tell the customers (篇七)"
            + (
                f". {from_user}'s open loan(s) {', '.join(result.loans_to_return)} are not "
                "yours: their access ended and the material must be returned to an "
                "information officer"
                if result.loans_to_return
                else ""
            ),
            now,
        )
        return result


def loan_status(entry: LoanEntry, now: datetime) -> LoanState:
    if entry.state == LoanState.RETURNED:
        return LoanState.RETURNED
    return LoanState.OVERDUE if now >= entry.due_at else LoanState.OUT


def users_with_role(session: Session, role: str) -> list[str]:
    """Enabled usernames holding ``role`` (for queues and notifications)."""
    return sorted(
        session.exec(
            select(User.username)
            .join(UserRole, col(UserRole.user_id) == col(User.id))
            .where(UserRole.role == role, User.disabled == False)  # noqa: E712
        ).all()
    )
