"""Filing a request (Art 18.1): the object, purpose and reason, and its chain.

``Filing.file`` checks what is asked (kind, archives, groups, hours, purpose and
reason, a visitor's credential, a loan's material) and who asks (only a kind's
filers file it; a top-secret archive's custodian files for it only when their
stage has an alternate), derives the chain of stages from the archives' highest
classification and whether the requester is external, checks that someone could
sign every stage, and records the request with its audit entry and a
notification to the requester, in the caller's transaction.

Refusals: ``filer`` (no role may file the kind), ``self-approval`` (the custodian
files for their own archive and the custodian's stage has no alternate),
``loan-limit`` (a loan longer than the limit, Art 19.5), and ``Unfinishable``
(409) when no sequence of people could sign every stage (``policies.reach``).
Whoever may sign the first stage is told it waits for them.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlmodel import Session, col, select

from audit.events import AuditAction, AuditEvent, Outcome
from policies import copies as copies_terms
from policies import reach, reports
from policies.chains import KindSpec, StageSpec
from policies.decision import Principal
from policies.desk import (
    MAX_ARCHIVES,
    MAX_REASON,
    Desk,
    actor_of,
    check_reason,
    fmt,
    new_uid,
    refusal,
)
from policies.errors import ConfigError, InvalidInput, NotFound, Unfinishable
from policies.models import AccessRequest
from policies.roles import NotificationEvent, RequestKind, RequestState, rank
from vault.models import Archive, ArchiveStatus, User


class Filing:
    """Files access requests (view, loan, copy, external, report, destroy)."""

    def __init__(self, desk: Desk) -> None:
        self.desk = desk

    def file(
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
        scope: str | None = None,
        items: Sequence[str] | None = None,
        export_format: str | None = None,
    ) -> AccessRequest:
        """File a request (Art 18.1: object, purpose, reason, requester's particulars);
        a report states its ``scope`` and ``items`` (``policies.reports``)."""
        try:
            spec = self.desk.chains.kind(str(kind))
        except ConfigError:
            raise InvalidInput(
                f"unknown request kind {kind!r} (known: {', '.join(RequestKind)})"
            ) from None
        if spec.change:
            raise InvalidInput(f"a {spec.kind} request is filed through {spec.filed_at}")
        if not spec.filers & requester.roles:
            raise refusal(
                None,
                requester,
                AuditAction.REQUEST_FILE,
                "filer",
                f"none of your roles may file a {spec.kind} request "
                f"(filers: {', '.join(sorted(spec.filers))})",
            )
        if purpose not in self.desk.chains.purposes:
            raise InvalidInput(f"purpose must be one of {', '.join(self.desk.chains.purposes)}")
        reason = check_reason(reason, missing="a request states its reason (Art 18.1)")
        archive_rows = self._archives(session, spec, archives, now)
        classification = max(
            (a.classification for a in archive_rows),
            key=lambda c: rank(c, unknown=99),
            default="internal",
        )
        custodian = self._custodian(spec, requester, archive_rows)
        req_groups = self.desk.parse_groups(groups)
        hours = self._hours(spec, requester, hours)
        if spec.kind is RequestKind.LOAN:
            material = (material or "").strip()
            if not material:
                raise InvalidInput("a loan names the material borrowed (Art 19.5)")
            if not isinstance(copies, int) or copies < 1:
                raise InvalidInput("a loan records how many copies are borrowed (at least 1)")
        export_format, copies = copies_terms.export_terms(spec.kind, export_format, copies)
        if spec.kind is RequestKind.EXTERNAL and not (recipient or "").strip():
            raise InvalidInput("external provision names the outside party (recipient)")
        if requester.external:
            credential_ref = (credential_ref or self._credential(session, requester) or "").strip()
            if not credential_ref:
                raise InvalidInput(
                    "a visitor registers an introduction letter or work-ID number (Art 18.4)"
                )
        stages = spec.stages_for(classification=classification, external=requester.external)
        report = reports.terms(spec.kind, requester, scope=scope, items=items, stages=stages)
        self._check_reachable(
            session,
            spec,
            requester,
            stages,
            archive_rows,
            custodian,
            classification=classification,
            purpose=purpose,
        )
        req = AccessRequest(
            **report,
            uid=new_uid("R"),
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
            export_format=export_format,
            stages=[s.as_dict() for s in stages],
            next_stage=0,
            state=RequestState.PENDING.value,
            version=1,
            created_at=now,
            expires_at=now + timedelta(hours=self.desk.chains.pending_expiry_hours),
        )
        session.add(req)
        session.flush()
        self.desk.event(
            session,
            AuditEvent(
                action=AuditAction.REQUEST_FILE,
                actor=actor_of(requester),
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
                    **report,
                },
            ),
        )
        self.desk.notify(
            session,
            requester.username,
            req.uid,
            NotificationEvent.FILED,
            f"{spec.kind} request {req.uid} filed; it needs "
            f"{', '.join(s.label for s in stages)}; it expires unless decided by "
            f"{fmt(req.expires_at)}",
            now,
        )
        reach.tell_next_signers(self.desk, session, req, now)
        return req

    def _check_reachable(
        self,
        session: Session,
        spec: KindSpec,
        requester: Principal,
        stages: Sequence[StageSpec],
        rows: list[Archive],
        custodian: str | None,
        *,
        classification: str,
        purpose: str,
    ) -> None:
        """Refuse a request nobody could finish, naming the stage and the fix.

        Filed anyway, it would wait unsigned until it expired with nobody told why
        (the demo's only information officer keeping every top-secret archive).
        The refusal is audited as a denied filing, like the other refusals here."""
        blocked = reach.unfinishable_stage(
            session,
            [s.as_dict() for s in stages],
            requester.username,
            custodian,
            requester.department,
            archives=[a.archive_no for a in rows],
        )
        if blocked is None:
            return
        message = blocked.message(f"this {classification} {spec.kind} request")
        raise Unfinishable(
            message,
            stage=blocked.name,
            event=AuditEvent(
                action=AuditAction.REQUEST_FILE,
                actor=actor_of(requester),
                outcome=Outcome.DENIED,
                archives=tuple(a.archive_no for a in rows),
                purpose=purpose,
                reason=message[:MAX_REASON],
                detail={
                    "request": None,
                    "kind": spec.kind.value,
                    "rule": Unfinishable.rule,
                    "stage": blocked.name,
                },
            ),
        )

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
        # The custodian asking for their own archive: a custodian's stage with an
        # alternate goes to it (the reachability check then makes sure someone holds
        # it); one without an alternate could never be signed.
        stranded = any(
            s.custodian and not s.alternate_roles
            for s in spec.stages_for(classification="top_secret", external=requester.external)
        )
        if stranded and custodian == requester.username:
            raise refusal(
                None,
                requester,
                AuditAction.REQUEST_FILE,
                "self-approval",
                "you are the custodian of this top-secret archive and cannot "
                "sign your own request; ask for another custodian to be named",
            )
        return custodian

    def _hours(self, spec: KindSpec, requester: Principal, hours: int | None) -> int:
        limit = (
            self.desk.chains.max_loan_hours if spec.kind is RequestKind.LOAN else spec.grant_hours
        )
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
                raise refusal(
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
