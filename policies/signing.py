"""Signing a request: approve stage by stage, deny, withdraw; the signer rules.

Rules enforced here, each refused with ``Refused(rule=...)``:
  self-approval          nobody signs their own request
  double-signing         one person signs at most one stage of a request, even
                         holding the roles of two stages
  wrong-role / wrong-custodian / wrong-department
                         a stage is signed by its role (or the archive's custodian);
                         a department head signs only for their own department
  order                  stages are signed in order and all are required
  not-pending            no step after a decision, withdrawal or expiry
  widen                  an approver may narrow (fewer groups, fewer hours), never widen
Change requests add their own (``policies.changes.signer_problem``).

Concurrency: every step bumps ``version`` with ``UPDATE ... WHERE version = seen`` as
its first write (and reads the row ``FOR UPDATE`` on PostgreSQL), so two approvers
acting at once cannot both move a stage; the loser gets ``Conflict``.

The final signature creates the grant (stamped with the next grant revision, so
every engine catches up with it after commit; a rolled-back approval never
grants) or, for a change request, applies the change in the same transaction.
Every step appends its audit event inside the caller's transaction and records
a notification for the requester. All time comes from the ``now`` argument.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from audit.events import Actor, AuditAction, AuditEvent, Outcome
from policies import archive_changes, grant_terms, reach, rechain, report_items, reports, rolegrants
from policies import copies as copies_terms
from policies.changes import audited_refusals, is_change, signer_problem
from policies.custodians import lapsed_keeper
from policies.decision import Principal
from policies.desk import (
    MAX_REASON,
    Desk,
    actor_of,
    bump,
    check_reason,
    fmt,
    load_request,
    new_uid,
    persisted_id,
    refusal,
)
from policies.errors import Conflict, InvalidInput, Refused
from policies.handover import StaffHandover
from policies.loading import next_revision
from policies.loans import Loans
from policies.models import AccessGrant, AccessRequest, RequestSignature
from policies.reach import ALTERNATE
from policies.roles import GrantState, NotificationEvent, RequestKind, RequestState

# Applies an approved change in the final signature's transaction; returns what it did.
Applier = Callable[[Session, AccessRequest, Principal, datetime], dict[str, Any]]


class Signing:
    """Approves, denies and withdraws requests; knows who may sign what."""

    def __init__(self, desk: Desk, loans: Loans, staff: StaffHandover) -> None:
        self.desk = desk
        self.loans = loans
        self._appliers: dict[str, Applier] = {
            RequestKind.REASSIGN.value: lambda s, r, a, n: archive_changes.apply_reassign(
                desk, s, r, a, n
            ),
            RequestKind.RECLASSIFY.value: lambda s, r, a, n: archive_changes.apply_reclassify(
                desk, s, r, a, n
            ),
            RequestKind.ROLE.value: lambda s, r, a, n: rolegrants.apply_roles(desk, s, r, a, n),
            RequestKind.HANDOVER.value: staff.apply,
            RequestKind.REPORT_ITEMS.value: lambda s, r, a, n: report_items.apply_items(
                desk, s, r, a, n
            ),
        }

    def check_signer(
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
            raise refusal(
                req,
                signer,
                action,
                "not-pending",
                f"request {req.uid} is {req.state}; it can no longer be signed",
            )
        if now >= req.expires_at:
            raise refusal(
                req,
                signer,
                action,
                "not-pending",
                f"request {req.uid} expired at {fmt(req.expires_at)} without a decision",
            )
        if signer.username == req.requester:
            raise refusal(req, signer, action, "self-approval", "nobody signs their own request")
        signed = session.exec(
            select(RequestSignature.signer).where(RequestSignature.request_id == req.id)
        ).all()
        if signer.username in signed:
            raise refusal(
                req,
                signer,
                action,
                "double-signing",
                f"you already signed a stage of request {req.uid}; one person "
                "signs at most one stage, even holding both roles",
            )
        index = req.next_stage
        if index >= len(req.stages):
            raise refusal(
                req, signer, action, "order", f"request {req.uid} has no stage left to sign"
            )
        stage = req.stages[index]
        alternate, waiting = self._alternate(session, req, stage, signer)
        if alternate is not None:
            # An alternate is not bound by the stage's department scope (that is
            # why it signs); a change's beneficiaries still never sign.
            problem = signer_problem(req, signer, {**stage, "scope": "any"})
            if problem is not None:
                raise refusal(req, signer, action, *problem)
            return index, stage, alternate + ALTERNATE
        if stage.get("custodian"):
            if signer.username != req.custodian:
                raise refusal(
                    req,
                    signer,
                    action,
                    "wrong-custodian",
                    f"stage {stage['name']} of request {req.uid} is signed by "
                    f"the archive's custodian ({req.custodian})" + waiting,
                )
            lapsed = lapsed_keeper(session, req, signer.username, signer.roles)
            if lapsed:
                raise refusal(req, signer, action, "wrong-custodian", lapsed)
            role = "custodian"
        else:
            held = sorted(set(stage["roles"]) & signer.roles)
            if not held:
                raise refusal(
                    req,
                    signer,
                    action,
                    "wrong-role",
                    f"stage {stage['name']} of request {req.uid} is signed by "
                    f"{stage['label']} ({', '.join(stage['roles'])}); stages "
                    "are signed in order" + waiting,
                )
            role = held[0]
        if stage.get("scope") == "requester_department" and (
            not signer.department or signer.department != req.requester_department
        ):
            raise refusal(
                req,
                signer,
                action,
                "wrong-department",
                f"a department head signs only for their own department; "
                f"request {req.uid} is from "
                f"{req.requester_department or 'no department'}" + waiting,
            )
        problem = signer_problem(req, signer, stage)  # change requests' own rules
        if problem is not None:
            raise refusal(req, signer, action, problem[0], problem[1] + waiting)
        return index, stage, role

    @staticmethod
    def _alternate(
        session: Session, req: AccessRequest, stage: dict[str, Any], signer: Principal
    ) -> tuple[str | None, str]:
        """(the alternate role ``signer`` signs ``stage`` in, or None; what to add to a
        refusal). An alternate signs only when no usual signer is left
        (``policies.reach``); a usual signer always signs as such. Stages without
        alternates, and signers holding none of them, never touch the staff tables."""
        held = reach.alternate_roles_held(stage, signer.roles)
        if (
            not held
            or not reach.alternates_may_sign(session, req, stage)
            or reach.is_usual(
                stage,
                signer.username,
                signer.roles,
                signer.department,
                custodian=req.custodian,
                department=reach.scope_department(req, stage),
            )
        ):
            return None, ""
        left = reach.usual_left(session, req, stage)
        if left:
            return None, (
                f"; as {stage.get('alternate_label') or 'an alternate'} you sign it only "
                f"when no usual signer is left, and {len(left)} "
                + ("is" if len(left) == 1 else "are")
            )
        return held[0], ""

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
        copies: int | None = None,
    ) -> AccessRequest:
        """Sign the next stage; the last signature approves and creates the grant.

        ``groups``/``hours``/``copies`` narrow the request (never widen it). ``expected_version``
        is the version the approver saw; a different one means someone acted first.
        """
        req = load_request(session, request_uid)
        rechain.refresh(session, req, self.desk, actor=actor_of(approver), now=now)
        seen = req.version
        index, stage, role = self.check_signer(
            session, req, approver, AuditAction.REQUEST_APPROVE, now, expected_version
        )
        new_groups = list(req.groups)
        if groups is not None:
            narrowed = self.desk.parse_groups(groups)
            wider = [g for g in narrowed if g not in req.groups]
            if wider:
                raise refusal(
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
                raise refusal(
                    req,
                    approver,
                    AuditAction.REQUEST_APPROVE,
                    "widen",
                    f"an approver may shorten a request, never lengthen it "
                    f"({hours} > {req.hours} hours)",
                )
            new_hours = hours
        new_copies = copies_terms.narrowed(req, copies, approver)
        bump(session, req, seen)
        session.add(
            RequestSignature(
                request_id=persisted_id(req),
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
        req.copies = new_copies
        req.next_stage = index + 1
        final = req.next_stage >= len(req.stages)
        grant: AccessGrant | None = None
        if final:
            req.state = RequestState.APPROVED.value
            req.decided_at = now
            req.decided_by = approver.username
            if is_change(req.kind):
                self._apply_change(session, req, approver, now)  # in this transaction
            else:
                grant = self._issue_grant(session, req, now)
                req.grant_uid = grant.uid
        session.add(req)
        session.flush()
        self.desk.event(
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
                    "narrowed": groups is not None or hours is not None or copies is not None,
                    "copies": req.copies or None,
                    # Signed as an alternate: no usual signer of the stage was left.
                    **({"alternate_for": stage["name"]} if role.endswith(ALTERNATE) else {}),
                },
            ),
        )
        if not final:
            following = req.stages[req.next_stage]
            self.desk.notify(
                session,
                req.requester,
                req.uid,
                NotificationEvent.STAGE_APPROVED,
                f"{approver.username} ({role}) signed stage {stage['name']} of "
                f"request {req.uid}; next: {following['label']}",
                now,
            )
            reach.tell_next_signers(self.desk, session, req, now)
        else:
            self.desk.notify(
                session,
                req.requester,
                req.uid,
                NotificationEvent.APPROVED,
                f"request {req.uid} approved; "
                + (
                    f"grant {grant.uid} valid until {fmt(grant.not_after)}"
                    if grant is not None
                    else "the change is applied"
                ),
                now,
            )
        return req

    def _issue_grant(self, session: Session, req: AccessRequest, now: datetime) -> AccessGrant:
        spec = self.desk.chains.kind(req.kind)
        hours = req.hours or spec.grant_hours or 1
        grant = AccessGrant(
            uid=new_uid("G"),
            request_id=persisted_id(req),
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
            copies=req.copies,
            purpose=req.purpose,
            reason=req.reason,
            state=GrantState.ACTIVE.value,
            rev=next_revision(session),
        )
        grant_terms.stamp(grant, req, loan=spec.kind is RequestKind.LOAN)
        reports.stamp(grant, req)  # a report's departments and items
        session.add(grant)
        session.flush()
        if spec.kind is RequestKind.LOAN:
            self.loans.open(session, req, grant, now)
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
        reason = check_reason(reason, missing="a denial states its reason")
        req = load_request(session, request_uid)
        # As for approving: whoever decides, decides on the chain the archives need now.
        # A chain that can no longer be finished stays deniable: a denial never widens.
        with contextlib.suppress(Refused):
            rechain.refresh(session, req, self.desk, actor=actor_of(approver), now=now)
        seen = req.version
        index, stage, role = self.check_signer(
            session, req, approver, AuditAction.REQUEST_DENY, now, expected_version
        )
        bump(session, req, seen)
        session.add(
            RequestSignature(
                request_id=persisted_id(req),
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
        self.desk.event(
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
        self.desk.notify(
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
        req = load_request(session, request_uid)
        seen = req.version
        if requester.username != req.requester:
            raise refusal(
                req,
                requester,
                AuditAction.REQUEST_WITHDRAW,
                "not-requester",
                "only the requester withdraws a request",
            )
        if req.state != RequestState.PENDING:
            raise refusal(
                req,
                requester,
                AuditAction.REQUEST_WITHDRAW,
                "not-pending",
                f"request {req.uid} is {req.state}; only a pending request is withdrawn",
            )
        bump(session, req, seen)
        req.state = RequestState.WITHDRAWN.value
        req.decided_at = now
        req.decided_by = requester.username
        session.add(req)
        session.flush()
        self.desk.event(
            session,
            AuditEvent(
                action=AuditAction.REQUEST_WITHDRAW,
                actor=actor_of(requester),
                archives=tuple(req.archives),
                purpose=req.purpose,
                reason=req.reason,
                detail={"request": req.uid, "kind": req.kind},
            ),
        )
        self.desk.notify(
            session,
            req.requester,
            req.uid,
            NotificationEvent.WITHDRAWN,
            f"request {req.uid} withdrawn",
            now,
        )
        return req

    # -- sweeping -----------------------------------------------------------------------

    def queue_for(
        self,
        session: Session,
        approver: Principal,
        *,
        now: datetime,
    ) -> list[AccessRequest]:
        """Pending requests whose next stage this person may sign now: as a usual
        signer, or as an alternate when no usual signer is left (the rule of
        ``check_signer``, so the queue shows exactly what a signature would accept)."""
        out = []
        for req in session.exec(
            select(AccessRequest)
            .where(AccessRequest.state == RequestState.PENDING, AccessRequest.expires_at > now)
            .order_by(col(AccessRequest.created_at))
        ).all():
            try:
                self.check_signer(session, req, approver, AuditAction.REQUEST_APPROVE, now, None)
            except Refused:
                continue
            out.append(req)
        return out

    def _apply_change(
        self, session: Session, req: AccessRequest, approver: Principal, now: datetime
    ) -> None:
        """Apply an approved change in the final signature's transaction."""
        with audited_refusals(AuditAction.REQUEST_APPROVE, approver, req.archives):
            applier = self._appliers.get(req.kind)
            if req.change is None or applier is None:
                raise Refused(f"request {req.uid} carries no change to apply", rule="stale")
            applied = applier(session, req, approver, now)
        req.change = {**req.change, "applied": applied, "applied_at": now.isoformat()}
