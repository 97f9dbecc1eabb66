"""Giving an account a role that reads content, or ``compliance``, is a request the
information supervisor signs; taking roles away is done at once.

The roles no one gives alone (``SIGNED_ROLES``: salesperson, every approver role,
external, and compliance, which reads every request and the whole audit trail) are
filed, never given: ``POST /users``, ``PATCH /users/{name}`` and the CLI's
``user add``/``user set-role`` create the account (or apply the narrowing part of a
change) at once and file a ``role`` request for the rest, signed by an information
supervisor who is neither the filer nor the account. ``admin`` is given at once; an
account that holds or ever held ``admin`` is refused every signed role outright, so
an administrator never makes himself a reader of content or of every request.

The only exception is the first bootstrap of a vault: until anyone has ever been
made information supervisor (``directory.roles_need_approval``) nobody could sign,
so the CLI gives roles directly. ``init``, ``demo``, the seed and tests use the
library functions ``directory.add_user``/``set_roles`` directly; no API route uses
them for signed roles.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlmodel import Session, select

from audit.events import Actor, AuditAction, AuditEvent
from policies.changes import audits_refusals, file_change, stale
from policies.decision import Principal
from policies.desk import Desk
from policies.directory import (
    add_user,
    check_admin_separation,
    check_combination,
    disable_user,
    get_roles,
    set_roles,
)
from policies.errors import InvalidInput, NotFound, UnknownUser
from policies.models import AccessRequest
from policies.roles import SIGNED_ROLES, RequestKind, RequestState, Role
from vault.models import User


@dataclass(frozen=True, slots=True)
class RoleOutcome:
    """The account's roles now, and the request that will add the rest (if any)."""

    user: User
    roles: list[str]
    request: AccessRequest | None = None


def _parse(roles: Iterable[str]) -> list[str]:
    out = set()
    for role in roles:
        try:
            out.add(Role(str(role).strip()).value)
        except ValueError:
            raise InvalidInput(
                f"unknown role {role!r} (known: {', '.join(Role.__members__.values())})"
            ) from None
    return sorted(out)


def _file(
    desk: Desk,
    session: Session,
    filer: Principal,
    user: User,
    now_roles: list[str],
    add: list[str],
    reason: str,
    now: datetime,
) -> AccessRequest:
    change = {
        "user": user.username,
        "department": user.department,
        "roles": {"from": now_roles, "to": sorted({*now_roles, *add})},
        "add": add,
        "subjects": [user.username],
    }
    return file_change(
        desk,
        session,
        filer,
        kind=RequestKind.ROLE,
        change=change,
        reason=reason or f"roles {', '.join(add)} for {user.username}",
        now=now,
    )


@audits_refusals(AuditAction.USER_CHANGE, who="filer")
def create_user(
    desk: Desk,
    session: Session,
    filer: Principal,
    *,
    username: str,
    roles: Iterable[str],
    department: str = "",
    clearance: str = "internal",
    external: bool = False,
    credential_ref: str | None = None,
    display_name: str = "",
    reason: str = "",
    now: datetime,
    actor: Actor,
    bootstrap: bool = False,
) -> RoleOutcome:
    """Create the account with the roles anyone may give (``admin``); file the rest.

    ``bootstrap`` (the CLI before anyone was made information supervisor) gives
    every role at once, since no one could sign yet.
    """
    target = _parse(roles)
    if not target:
        raise InvalidInput("a user needs at least one role")
    check_combination(target, external, credential_ref)
    check_admin_separation(username, False, target)
    direct = target if bootstrap else sorted(set(target) - SIGNED_ROLES)
    add = sorted(set(target) - set(direct))
    user = add_user(
        session,
        username=username,
        roles=direct,
        department=department,
        clearance=clearance,
        external=external,
        credential_ref=credential_ref,
        display_name=display_name,
        audit=desk.audit,
        actor=actor,
        allow_no_roles=bool(add),
    )
    request = _file(desk, session, filer, user, direct, add, reason, now) if add else None
    return RoleOutcome(user=user, roles=direct, request=request)


@audits_refusals(AuditAction.USER_CHANGE, who="filer")
def change_roles(
    desk: Desk,
    session: Session,
    filer: Principal,
    *,
    username: str,
    roles: Iterable[str],
    reason: str = "",
    now: datetime,
    actor: Actor,
    bootstrap: bool = False,
) -> RoleOutcome:
    """Replace an account's roles: removals and ``admin`` at once, signed roles
    (content roles and compliance) through a request (at once only in ``bootstrap``)."""
    user = session.exec(select(User).where(User.username == username)).first()
    if user is None:
        raise UnknownUser(f"no user {username!r}")
    target = _parse(roles)
    if target:
        check_combination(target, user.external, user.credential_ref)
    check_admin_separation(username, user.ever_admin, target)
    current = get_roles(session, username)
    _withdraw_pending(desk, session, filer, username, now)
    if bootstrap:
        direct = target
    else:
        direct = sorted((set(current) & set(target)) | (set(target) - SIGNED_ROLES))
    add = sorted(set(target) - set(direct))
    if direct != current:
        set_roles(session, username, direct, audit=desk.audit, actor=actor)
    request = _file(desk, session, filer, user, direct, add, reason, now) if add else None
    return RoleOutcome(user=user, roles=direct, request=request)


def change_account(
    desk: Desk,
    session: Session,
    filer: Principal,
    *,
    username: str,
    roles: Iterable[str] | None,
    disable: bool,
    reason: str = "",
    now: datetime,
    actor: Actor,
) -> RoleOutcome:
    """An administrator's change of an account: new roles (as :func:`change_roles`),
    then disabling it if asked; ``NotFound`` for an unknown account."""
    user = session.exec(select(User).where(User.username == username)).first()
    if user is None:
        raise NotFound(f"no user {username!r}")
    request = None
    if roles is not None:
        request = change_roles(
            desk,
            session,
            filer,
            username=username,
            roles=roles,
            reason=reason,
            now=now,
            actor=actor,
        ).request
    if disable:
        disable_user(session, username, audit=desk.audit, actor=actor)
    return RoleOutcome(user=user, roles=get_roles(session, username), request=request)


def _withdraw_pending(
    desk: Desk, session: Session, filer: Principal, username: str, now: datetime
) -> list[str]:
    """A new set of roles supersedes the account's pending role requests: signing one
    later must not bring back a role the administrator has since taken away."""
    out = []
    for req in session.exec(
        select(AccessRequest)
        .where(
            AccessRequest.kind == RequestKind.ROLE.value,
            AccessRequest.state == RequestState.PENDING.value,
        )
        .with_for_update()
    ).all():
        if (req.change or {}).get("user") != username:
            continue
        req.state = RequestState.WITHDRAWN.value
        req.decided_at, req.decided_by = now, filer.username
        req.version += 1
        session.add(req)
        desk.audit.append(
            session,
            AuditEvent(
                action=AuditAction.REQUEST_WITHDRAW,
                actor=Actor(filer.username, filer.role_label),
                purpose=req.purpose,
                reason="superseded by a newer change of the account's roles",
                detail={"request": req.uid, "kind": req.kind, "user": username},
            ),
        )
        out.append(req.uid)
    session.flush()
    return out


def apply_roles(
    desk: Desk, session: Session, req: AccessRequest, approver: Principal, now: datetime
) -> dict[str, Any]:
    change = req.change or {}
    username = change["user"]
    user = session.exec(select(User).where(User.username == username)).first()
    if user is None:
        raise stale(req, f"account {username}")
    roles = sorted({*get_roles(session, username), *change["add"]})
    check_admin_separation(username, user.ever_admin, roles)
    set_roles(
        session,
        username,
        roles,
        audit=desk.audit,
        actor=Actor(approver.username, approver.role_label),
    )
    return {"roles": roles}
