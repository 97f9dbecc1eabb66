"""User administration (admin only): add, change, hand over a leaver's clients."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path
from pydantic import Field, StringConstraints
from sqlmodel import select

from api.deps import Caller, CallerDep, ServicesDep
from api.errors import ApiProblem
from api.schemas import PlainText, Strict, Username
from api.security import hash_password
from api.services import Services
from audit.events import AuditAction, AuditEvent, Outcome
from policies.directory import add_user, disable_user, set_roles
from policies.errors import AccessDenied
from policies.roles import Action
from vault.models import User
from vault.records import USERNAME

router = APIRouter(prefix="/users", tags=["users"])
UserPath = Annotated[str, Path(pattern=f"^{USERNAME.pattern}$")]
Password = Annotated[str, StringConstraints(min_length=10, max_length=256)]
RoleName = Literal[
    "salesperson",
    "department_head",
    "information_officer",
    "info_supervisor",
    "cs_manager",
    "general_manager",
    "compliance",
    "external",
    "admin",
]


class UserIn(Strict):
    username: Username
    roles: list[RoleName] = Field(min_length=1, max_length=9)
    password: Password
    department: Annotated[PlainText, StringConstraints(max_length=64)] = ""
    clearance: Literal["internal", "secret", "top_secret"] = "internal"
    external: bool = False
    credential_ref: Annotated[PlainText, StringConstraints(max_length=128)] | None = None
    display_name: Annotated[PlainText, StringConstraints(max_length=128)] = ""


class UserPatch(Strict):
    roles: list[RoleName] | None = Field(default=None, max_length=9)
    disabled: Literal[True] | None = None
    password: Password | None = None


class HandoverIn(Strict):
    to: Username


def _admin(services: Services, caller: Caller) -> None:
    decision = services.decide(caller.principal, Action.MANAGE_USERS, None)
    if not decision.allowed:
        services.record_denial(caller.actor, AuditAction.USER_CHANGE, decision)
        raise AccessDenied(decision)


def _public(user: User, roles: list[str]) -> dict[str, Any]:
    return {
        "username": user.username,
        "roles": sorted(roles),
        "department": user.department,
        "clearance": user.clearance,
        "external": user.external,
        "disabled": user.disabled,
    }


@router.post("", status_code=201)
def create_user(body: UserIn, services: ServicesDep, caller: CallerDep) -> dict[str, Any]:
    _admin(services, caller)
    hashed = hash_password(body.password)

    def run(session: Any) -> dict[str, Any]:
        user = add_user(
            session,
            username=body.username,
            roles=body.roles,
            department=body.department,
            clearance=body.clearance,
            external=body.external,
            credential_ref=body.credential_ref,
            display_name=body.display_name,
            audit=services.audit,
            actor=caller.actor,
        )
        user.password_hash = hashed
        session.add(user)
        return _public(user, list(body.roles))

    return services.in_transaction(run)


@router.patch("/{username}")
def change_user(
    username: UserPath, body: UserPatch, services: ServicesDep, caller: CallerDep
) -> dict[str, Any]:
    _admin(services, caller)
    if body.password is not None:
        # Whoever sets a password can log in as that person: nobody sets another's.
        services.in_transaction(
            lambda s: services.audit.append(
                s,
                AuditEvent(
                    action=AuditAction.USER_CHANGE,
                    actor=caller.actor,
                    outcome=Outcome.DENIED,
                    reason="administrators do not set passwords",
                    detail={"op": "set_password", "user": username},
                ),
            )
        )
        raise ApiProblem(
            403,
            "password-set-refused",
            "administrators do not set passwords: issue a one-time reset with "
            f"POST /users/{username}/password-reset, which the user completes at "
            "POST /auth/password-reset; users change their own at POST /auth/password",
        )
    if body.roles is None and body.disabled is None:
        raise ApiProblem(422, "validation-failed", "give roles or disabled")

    def run(session: Any) -> dict[str, Any]:
        user = session.exec(select(User).where(User.username == username)).first()
        if user is None:
            raise ApiProblem(404, "not-found", f"no user {username!r}")
        roles = None
        if body.roles is not None:
            roles = set_roles(
                session, username, body.roles, audit=services.audit, actor=caller.actor
            )
        if body.disabled:
            disable_user(session, username, audit=services.audit, actor=caller.actor)
        from policies.directory import get_roles

        return _public(user, roles if roles is not None else get_roles(session, username))

    return services.in_transaction(run)


@router.post("/{username}/handover")
def handover(
    username: UserPath, body: HandoverIn, services: ServicesDep, caller: CallerDep
) -> dict[str, Any]:
    """Staff leaving (篇七): every archive and open loan to another salesperson, leaver disabled.

    The workflow decides who may (``Workflow.handover``) and audits the whole move.
    """
    result = services.in_transaction(
        lambda s: services.workflow.handover(
            s, from_user=username, to_user=body.to, actor=caller.principal, now=services.clock()
        )
    )
    return asdict(result)
