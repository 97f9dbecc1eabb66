"""What every step of the request workflow works with: the desk and its small tools.

A ``Desk`` holds the workflow's dependencies (the audit sink, the approval
chains, the policy engine, the field groups and the archive store that re-seals
an approved reclassification). The collaborators (filing, signing, loans,
sweep, handover) each take the desk, never each other's internals. The helper
functions here are the steps they share: loading a request for update, the
optimistic version bump, refusals that carry their audit event, notifications.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Protocol

import sqlalchemy as sa
from sqlalchemy.exc import OperationalError
from sqlmodel import Session, select

from audit.events import Actor, AuditAction, AuditEvent, AuditSink, Outcome
from policies.chains import Chains, load_chains
from policies.decision import Principal
from policies.engine import PolicyEngine
from policies.errors import Conflict, InvalidInput, NotFound, Refused
from policies.loading import known_groups_or_shipped
from policies.models import AccessRequest
from policies.notifications import Notice, Notifier
from policies.roles import Action, NotificationEvent, Role
from vault.meta import ArchiveMeta

MAX_REASON = 2000
MAX_ARCHIVES = 100
_REQUEST_T = AccessRequest.__table__  # type: ignore[attr-defined]


class Resealer(Protocol):
    """The part of the archive store an approved reclassification needs."""

    def reclassify(
        self,
        archive_no: str,
        level: str,
        *,
        actor: Actor,
        custodian: str | None = None,
        reason: str | None = None,
        session: Session | None = None,
    ) -> ArchiveMeta: ...


class Desk:
    """The workflow's dependencies, shared by its collaborators."""

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
        self.known_groups: tuple[str, ...] = (
            engine.known_groups
            if known_groups is None and engine is not None
            else known_groups_or_shipped(known_groups)
        )
        # The archive store, wired in by the service: a reclassification approved
        # here re-seals the archive under its new level in the signing transaction.
        self.store: Resealer | None = None
        # In-app only until the service wires in its mail settings.
        self.notifier = Notifier()

    def may(self, actor: Principal, action: Action, roles: set[Role], now: datetime) -> bool:
        """Ask the policy when an engine is wired in; otherwise the roles named here.

        Only actions that need no archive are asked, so no grant can change the
        answer and the engine needs no catching up first."""
        if self.engine is not None:
            return self.engine.decide(actor, action, now=now).allowed
        return bool(roles & actor.roles)

    def event(self, session: Session, event: AuditEvent) -> None:
        self.audit.append(session, event)

    def notify(
        self,
        session: Session,
        recipient: str,
        request_uid: str | None,
        event: NotificationEvent,
        message: str,
        now: datetime,
    ) -> None:
        """Tell ``recipient`` in the vault, and by mail when mail is on (``notifier``)."""
        self.notifier.notify(
            session, recipient, Notice(event.value, request_uid=request_uid), message, now
        )

    def notify_role(
        self,
        session: Session,
        roles: Iterable[Role | str],
        notice: Notice,
        message: str,
        now: datetime,
        *,
        department: str | None = None,
        exclude: Iterable[str] = (),
    ) -> list[str]:
        """Tell every enabled holder of ``roles`` (``Notifier.notify_role``)."""
        return self.notifier.notify_role(
            session, roles, notice, message, now, department=department, exclude=exclude
        )

    def parse_groups(self, groups: Sequence[str] | str | None) -> tuple[str, ...]:
        """Field groups named by a caller: known ones, deduplicated; all when none."""
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


def new_uid(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(5).upper()}"


def actor_of(principal: Principal) -> Actor:
    return Actor(principal.username, principal.role_label)


def fmt(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds")


def check_reason(reason: str | None, *, missing: str) -> str:
    """A stated reason, stripped; ``missing`` is the message when there is none."""
    reason = (reason or "").strip()
    if not reason:
        raise InvalidInput(missing)
    if len(reason) > MAX_REASON:
        raise InvalidInput(f"the reason is longer than {MAX_REASON} characters")
    return reason


def persisted_id(req: AccessRequest) -> int:
    """The row id of a request read from (or flushed to) the database."""
    if req.id is None:
        raise Conflict(f"request {req.uid} is not stored yet")
    return req.id


def load_request(session: Session, uid: str, *, lock: bool = True) -> AccessRequest:
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


def bump(session: Session, req: AccessRequest, seen: int) -> None:
    """The first write of every step: move ``version`` on, or lose the race."""
    stmt = (
        sa.update(_REQUEST_T)
        .where(_REQUEST_T.c.id == req.id, _REQUEST_T.c.version == seen)
        .values(version=seen + 1)
    )
    try:
        result = session.connection().execute(stmt)
    except OperationalError:
        raise Conflict(
            f"request {req.uid} was changed by someone else at the same time; reload it"
        ) from None
    if result.rowcount != 1:
        raise Conflict(f"request {req.uid} was changed by someone else; reload it")
    req.version = seen + 1


def refusal(
    req: AccessRequest | None,
    actor: Principal,
    action: AuditAction,
    rule: str,
    message: str,
) -> Refused:
    """A refusal carrying the audit event of the refused attempt."""
    event = AuditEvent(
        action=action,
        actor=actor_of(actor),
        outcome=Outcome.DENIED,
        archives=tuple(req.archives) if req else (),
        purpose=req.purpose if req else None,
        reason=message,
        detail={"request": req.uid if req else None, "rule": rule},
    )
    return Refused(message, rule=rule, event=event)
