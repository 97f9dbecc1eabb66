"""The customer's access report (PIPL Art 45, GDPR Art 15): what is held, who accessed it.

For one archive: the field groups that hold content and how many superseded
revisions each keeps, the consent record (notice, time, channel, groups; and
every withdrawal), how many interactions and attachments are filed — names,
states and counts, never content — and every access from the audit log: who,
in which role, when, why (purpose), under which grant, and for exports and
external provisions whom it went to (the request's recipient). The accesses
are found through the log's archive index, not by scanning its JSON.

Decided by the policy (``access_report``: compliance and the leak handlers);
a refusal is audited, and so is every report given (``archive:access-report``),
in the transaction that reads it, so a report that could not be audited was
never shown.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, func, select

from audit.events import Actor, AuditAction, AuditEvent, AuditSink
from audit.queries import MAX_QUERY_LIMIT, AuditRecord, query
from foundation.db import transaction
from policies.archive_acts import denial
from policies.decision import Principal
from policies.engine import PolicyEngine
from policies.errors import InvalidInput, NotFound, PolicyError
from policies.models import AccessRequest
from policies.roles import Action
from vault.models import Archive, Attachment, ContentHistory, Interaction, SealedGroup
from vault.records import ARCHIVE_NO

# What the report lists as an access of the archive (allowed entries only).
ACCESSES: frozenset[str] = frozenset(
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


class AccessReports:
    """Produces access reports from the store and the audit log, each one audited."""

    def __init__(
        self,
        *,
        engine: sa.Engine,
        audit: AuditSink,
        policy: PolicyEngine,
        clock: Callable[[], datetime],
    ) -> None:
        self.engine = engine
        self.audit = audit
        self.policy = policy
        self.clock = clock

    def report(self, principal: Principal, actor: Actor, archive_no: str) -> dict[str, Any]:
        """The report for one archive; AccessDenied (audited) for anyone but its readers."""
        if not ARCHIVE_NO.fullmatch(archive_no or ""):
            raise InvalidInput(f"not an archive number: {archive_no[:40]!r} (KH-YYYY-NNNNNN)")
        try:
            with transaction(self.engine) as session:
                decision = self.policy.decide(principal, Action.ACCESS_REPORT, now=self.clock())
                if not decision.allowed:
                    raise denial(decision, actor, AuditAction.ACCESS_REPORT, archives=(archive_no,))
                body = self._build(session, archive_no)
                self.audit.append(
                    session,
                    AuditEvent(
                        action=AuditAction.ACCESS_REPORT,
                        actor=actor,
                        archives=(archive_no,),
                        detail={
                            "accesses": len(body["accesses"]),
                            "groups": len(body["held"]["groups"]),
                        },
                    ),
                )
                return body
        except PolicyError as exc:
            if exc.event is not None:
                with transaction(self.engine) as session:
                    self.audit.append(session, exc.event)
            raise

    def _build(self, session: Session, archive_no: str) -> dict[str, Any]:
        archive = session.exec(select(Archive).where(Archive.archive_no == archive_no)).first()
        if archive is None:
            raise NotFound(f"no archive {archive_no}")
        groups = sorted(
            session.exec(
                select(SealedGroup.group_name).where(SealedGroup.archive_id == archive.id)
            ).all()
        )
        history = dict(
            session.exec(
                select(ContentHistory.group_name, func.count())
                .where(ContentHistory.archive_id == archive.id)
                .group_by(col(ContentHistory.group_name))
            ).all()
        )
        interactions = session.exec(
            select(func.count()).where(Interaction.archive_id == archive.id)
        ).one()
        attachments = session.exec(
            select(func.count()).where(
                Attachment.archive_id == archive.id, col(Attachment.complete).is_(True)
            )
        ).one()
        sequence = getattr(self.audit, "integrate", None)
        if sequence is not None:  # entries still queued (PostgreSQL) join the chain first
            sequence()
        records = query(self.engine, archive=archive_no, limit=MAX_QUERY_LIMIT, newest_first=False)
        withdrawals = [
            {"at": r.time.isoformat(), "groups": list(r.groups), "by": r.actor}
            for r in records
            if r.action == AuditAction.CONSENT_WITHDRAW.value and r.outcome == "allowed"
        ]
        accesses = [r for r in records if r.action in ACCESSES and r.outcome == "allowed"]
        recipients = self._recipients(session, accesses)
        return {
            "archive": {
                "archive_no": archive.archive_no,
                "status": archive.status,
                "classification": archive.classification,
                "category": archive.category,
                "created_at": archive.created_at.isoformat(),
                "retention_until": archive.retention_until.isoformat(),
                "destroyed_at": archive.destroyed_at.isoformat() if archive.destroyed_at else None,
            },
            "held": {
                "groups": [
                    {"group": g, "superseded_revisions": int(history.get(g, 0))} for g in groups
                ],
                "interactions": int(interactions),
                "attachments": int(attachments),
            },
            "consent": {
                "notice": archive.consent_notice or None,
                "at": archive.consent_at.isoformat() if archive.consent_at else None,
                "channel": archive.consent_channel or None,
                "groups": list(archive.consent_groups or []),
                "sensitive_groups": list(archive.consent_sensitive_groups or []),
                "withdrawals": withdrawals,
            },
            "accesses": [_access(r, recipients) for r in accesses],
            "truncated": len(records) >= MAX_QUERY_LIMIT,
        }

    @staticmethod
    def _recipients(session: Session, accesses: list[AuditRecord]) -> dict[str, dict[str, Any]]:
        """Export requests by uid: whom each export went to (a copy goes to its requester)."""
        uids = {
            str(r.detail.get("request"))
            for r in accesses
            if r.action == AuditAction.EXPORT.value and r.detail.get("request")
        }
        if not uids:
            return {}
        rows = session.exec(select(AccessRequest).where(col(AccessRequest.uid).in_(uids))).all()
        return {
            req.uid: {
                "request": req.uid,
                "kind": req.kind,
                "recipient": req.recipient or req.requester,
                "format": req.export_format or None,
            }
            for req in rows
        }


def _access(r: AuditRecord, recipients: dict[str, dict[str, Any]]) -> dict[str, Any]:
    who = r.actor
    if r.action == AuditAction.LOAN.value and r.detail.get("borrower"):
        who = str(r.detail["borrower"])  # loans are opened by the system for a borrower
    item: dict[str, Any] = {
        "seq": r.seq,
        "at": r.time.isoformat(),
        "who": who,
        "role": r.actor_role,
        "action": r.action,
        "groups": list(r.groups),
        "purpose": r.purpose,
        "grant": r.grant_id,
    }
    if r.action == AuditAction.EXPORT.value:
        item["exported_to"] = recipients.get(str(r.detail.get("request")))
        item["provision"] = bool(r.detail.get("provision"))
    if r.action == AuditAction.LOAN.value:
        item["loan"] = r.detail.get("loan")
    return item
