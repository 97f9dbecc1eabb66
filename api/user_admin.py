"""Account administration as the ``/users`` routes and the pages do it: one service.

Moved out of ``api.routers.users`` so the API and the administrator's pages call
the same code: the ``manage_users`` decision (a refusal audited), creating an
account without a password and with a one-time reset, changing roles (content
roles and compliance become a role request the information supervisor signs),
disabling (never a custodian who still keeps archives), listing (each list an
audit entry) and issuing a password reset.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from api.errors import ApiProblem
from api.services import Services
from audit.events import AuditAction, AuditEvent, Outcome
from policies import notifications, password_reset, rolegrants, roster
from policies.archive_acts import Caller
from policies.custodians import check_may_disable, drops_keeper_role
from policies.errors import AccessDenied, Conflict
from policies.models import AccessRequest
from policies.roles import Action
from vault.models import User


@dataclass(frozen=True, slots=True)
class AccountChange:
    """An account as it is now, the role request filed for the rest (if any), and, for a
    new account, the activation reset (the administrator's code, shown once)."""

    user: User
    roles: list[str]
    request: AccessRequest | None = None
    activation: password_reset.IssuedReset | None = None

    @property
    def pending_roles(self) -> list[str]:
        return list((self.request.change or {}).get("add", [])) if self.request else []


@dataclass(frozen=True, slots=True)
class NewAccount:
    username: str
    roles: Sequence[str]
    department: str = ""
    clearance: str = "internal"
    external: bool = False
    credential_ref: str | None = None
    display_name: str = ""
    reason: str = ""


def require_admin(services: Services, caller: Caller) -> None:
    """Only who may ``manage_users``; a refusal is audited in its own transaction."""
    decision = services.decide(caller.principal, Action.MANAGE_USERS, None)
    if not decision.allowed:
        services.record_denial(caller.actor, AuditAction.USER_CHANGE, decision)
        raise AccessDenied(decision)


def keeper_check(session: Any, username: str, caller: Caller, op: str) -> None:
    """A custodian is not disabled, nor loses the roles that let them keep archives, while
    archives would be left without one (409, audited)."""
    try:
        check_may_disable(session, username)
    except Conflict as exc:
        exc.event = AuditEvent(
            action=AuditAction.USER_CHANGE,
            actor=caller.actor,
            outcome=Outcome.DENIED,
            reason=exc.message[:500],
            detail={"op": op, "user": username, "rule": "custodian"},
        )
        raise


def _keys(services: Services) -> password_reset.ResetKeys:
    return password_reset.ResetKeys(services.vault.keys)


def create_account(services: Services, caller: Caller, new: NewAccount) -> AccountChange:
    """Create an account without a password, with a one-time reset in the same
    transaction; signed roles are filed as a role request."""
    require_admin(services, caller)

    def run(session: Any) -> AccountChange:
        outcome = rolegrants.create_user(
            services.workflow,
            session,
            caller.principal,
            username=new.username,
            roles=new.roles,
            department=new.department,
            clearance=new.clearance,
            external=new.external,
            credential_ref=new.credential_ref,
            display_name=new.display_name,
            reason=new.reason,
            now=services.clock(),
            actor=caller.actor,
        )
        session.flush()
        issued = password_reset.issue(
            session,
            username=new.username,
            issuer=caller.actor,
            keys=_keys(services),
            audit=services.audit,
            now=services.clock(),
        )
        return AccountChange(outcome.user, outcome.roles, outcome.request, issued)

    return services.in_transaction(run)


def change_account(
    services: Services,
    caller: Caller,
    username: str,
    *,
    roles: Sequence[str] | None = None,
    disable: bool = False,
    clear_email: bool = False,
    reason: str = "",
) -> AccountChange:
    """Remove roles or disable at once; adding a signed role files a role request."""
    require_admin(services, caller)

    def run(session: Any) -> AccountChange:
        if disable or (roles is not None and drops_keeper_role(session, username, list(roles))):
            # Nor does a custodian lose the role that lets them keep archives.
            keeper_check(session, username, caller, "disable" if disable else "set_roles")
        if clear_email:
            # The holder is told in the vault (policies.notifications.set_email).
            notifications.set_email(
                session,
                username,
                None,
                audit=services.audit,
                actor=caller.actor,
                now=services.clock(),
            )
        outcome = rolegrants.change_account(
            services.workflow,
            session,
            caller.principal,
            username=username,
            roles=list(roles) if roles is not None else None,
            disable=disable,
            reason=reason,
            now=services.clock(),
            actor=caller.actor,
        )
        return AccountChange(outcome.user, outcome.roles, outcome.request)

    return services.in_transaction(run)


def issue_reset(services: Services, caller: Caller, username: str) -> password_reset.IssuedReset:
    """Start a one-time reset; the administrator's code is in the answer only."""
    require_admin(services, caller)
    return services.in_transaction(
        lambda s: password_reset.issue(
            s,
            username=username,
            issuer=caller.actor,
            keys=_keys(services),
            audit=services.audit,
            now=services.clock(),
        )
    )


def refused_list(services: Services, caller: Caller, message: str) -> ApiProblem:
    """A refused list, audited as denied in a transaction of its own."""
    services.in_transaction(
        lambda s: services.audit.append(
            s,
            AuditEvent(
                action=AuditAction.USER_LIST,
                actor=caller.actor,
                outcome=Outcome.DENIED,
                reason=message,
            ),
        )
    )
    return ApiProblem(403, "access-denied", message)


def list_accounts(
    services: Services, caller: Caller, query: roster.UserQuery
) -> tuple[list[dict[str, Any]], int]:
    """One page of accounts, for administrators; each list is an audit entry."""
    decision = services.decide(caller.principal, Action.MANAGE_USERS, None)
    if not decision.allowed:
        raise refused_list(services, caller, "only administrators list the accounts")

    def run(session: Any) -> tuple[list[dict[str, Any]], int]:
        items, total = roster.list_users(session, query)
        services.audit.append(
            session,
            AuditEvent(
                action=AuditAction.USER_LIST,
                actor=caller.actor,
                detail={
                    "filters": query.filters(),
                    "offset": query.offset,
                    "count": len(items),
                },
            ),
        )
        return items, total

    return services.in_transaction(run)


def file_handover(
    services: Services,
    caller: Caller,
    username: str,
    *,
    to: str | None,
    custodians: dict[str, str] | None = None,
    custodian_to: str | None = None,
    reason: str = "",
) -> AccessRequest:
    """A leaver's handover request (篇七), signed by a second person."""
    return services.in_transaction(
        lambda s: services.workflow.staff.file(
            s,
            from_user=username,
            to_user=to,
            actor=caller.principal,
            now=services.clock(),
            reason=reason,
            custodians=custodians or {},
            custodian_to=custodian_to,
        )
    )
