"""User administration (admin only): add, change, hand over a leaver's clients.

Giving a role that reads content or compliance (which reads every request and the
audit trail) and handing over a leaver's clients widen who can read, so they file
requests that a second person signs (202 Accepted with the request;
``POST /requests/{id}/approve`` finishes them). Removing roles, disabling and
``admin`` are done at once.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Response
from pydantic import Field, StringConstraints

from api import user_admin
from api.deps import CallerDep, ServicesDep
from api.errors import ApiProblem
from api.routers.password_reset import reset_public
from api.routers.requests import request_public
from api.schemas import ArchiveNo, PlainText, Strict, Username
from audit.events import AuditAction, AuditEvent, Outcome
from policies import roster
from vault.models import User
from vault.records import USERNAME

router = APIRouter(prefix="/users", tags=["users"])
# Where a user's notifications are mailed. Whoever sets it receives that person's
# notices (a loan notice names archives and borrowers), so each person sets their own
# (PUT /me/email); an administrator may only clear one.
OWN_EMAIL = "each person sets their own address at PUT /me/email"
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
    # Refused when given: whoever sets a password can log in as that person.
    password: Password | None = None
    department: Annotated[PlainText, StringConstraints(max_length=64)] = ""
    clearance: Literal["internal", "secret", "top_secret"] = "internal"
    external: bool = False
    credential_ref: Annotated[PlainText, StringConstraints(max_length=128)] | None = None
    display_name: Annotated[PlainText, StringConstraints(max_length=128)] = ""
    # Why the account needs its roles: goes on the role request the supervisor signs.
    reason: Annotated[PlainText, StringConstraints(max_length=2000)] = ""
    # Refused when given (see OWN_EMAIL); kept so the answer can say where it is set.
    email: Annotated[str, StringConstraints(max_length=320)] | None = None


class UserPatch(Strict):
    roles: list[RoleName] | None = Field(default=None, max_length=9)
    disabled: Literal[True] | None = None
    password: Password | None = None
    # Only null (clearing the address) is accepted: see OWN_EMAIL.
    email: Annotated[str, StringConstraints(max_length=320)] | None = None
    reason: Annotated[PlainText, StringConstraints(max_length=2000)] = ""


class HandoverIn(Strict):
    # The successor for the leaver's clients; a leaver who owns nothing needs none.
    to: Username | None = None
    # Archives the leaver keeps as custodian (Art 22): a successor for each, or one for all.
    custodians: dict[ArchiveNo, Username] = Field(default_factory=dict, max_length=500)
    custodian_to: Username | None = None
    reason: Annotated[PlainText, StringConstraints(max_length=2000)] = ""


def _public(user: User, roles: list[str]) -> dict[str, Any]:
    return {
        "username": user.username,
        "roles": sorted(roles),
        "department": user.department,
        "clearance": user.clearance,
        "external": user.external,
        "disabled": user.disabled,
        "email": user.email,
    }


def _with_request(change: user_admin.AccountChange, response: Response) -> dict[str, Any]:
    """A filed role request answers 202 and says who signs it; otherwise as it was."""
    out = _public(change.user, change.roles)
    out["pending_roles"] = change.pending_roles
    out["request"] = request_public(change.request) if change.request is not None else None
    if change.request is not None:
        response.status_code = 202
    return out


@router.post("", status_code=201)
def create_user(
    body: UserIn, services: ServicesDep, caller: CallerDep, response: Response
) -> dict[str, Any]:
    """Create an account (201). Roles that read content (salesperson, the approver
    roles, external) and compliance are not given at once: the account is created without them and
    a role request is filed that the information supervisor signs (202).

    The administrator never knows the account's password: it is created without one,
    with a one-time reset in the same transaction. The answer's ``activation`` holds
    the administrator's code; the second code goes to the user's department head (or
    the information supervisor), and the user sets a password with both.
    """
    user_admin.require_admin(services, caller)
    if body.password is not None:
        raise ApiProblem(
            422,
            "validation-failed",
            "password: administrators do not set passwords; the account is created with a "
            "one-time reset the user completes at POST /auth/password-reset",
        )
    if body.email is not None:
        raise ApiProblem(
            422, "validation-failed", f"email: administrators do not set addresses; {OWN_EMAIL}"
        )

    change = user_admin.create_account(
        services,
        caller,
        user_admin.NewAccount(
            username=body.username,
            roles=body.roles,
            department=body.department,
            clearance=body.clearance,
            external=body.external,
            credential_ref=body.credential_ref,
            display_name=body.display_name,
            reason=body.reason,
        ),
    )
    out = _with_request(change, response)
    assert change.activation is not None  # a new account always has its reset
    out["activation"] = reset_public(change.activation)
    return out


@router.patch("/{username}")
def change_user(
    username: UserPath,
    body: UserPatch,
    services: ServicesDep,
    caller: CallerDep,
    response: Response,
) -> dict[str, Any]:
    """Change roles, disable an account or clear its address (``email: null``; the
    holder is told in the vault). Removing roles is done at once; adding a role that
    reads content, or compliance, files a role request (202). Setting an address is
    refused (422): each person sets their own at ``PUT /me/email``."""
    user_admin.require_admin(services, caller)
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
    if body.email is not None:
        # Whoever sets an address reads that person's notices: only its holder sets it.
        services.in_transaction(
            lambda s: services.audit.append(
                s,
                AuditEvent(
                    action=AuditAction.USER_CHANGE,
                    actor=caller.actor,
                    outcome=Outcome.DENIED,
                    reason="administrators do not set addresses",
                    detail={"op": "set_email", "user": username},
                ),
            )
        )
        raise ApiProblem(
            422,
            "validation-failed",
            f"email: administrators may only clear an address (null); {OWN_EMAIL}",
        )
    clear_email = "email" in body.model_fields_set
    if body.roles is None and body.disabled is None and not clear_email:
        raise ApiProblem(422, "validation-failed", "give roles, disabled or email (null)")

    change = user_admin.change_account(
        services,
        caller,
        username,
        roles=body.roles,
        disable=bool(body.disabled),
        clear_email=clear_email,
        reason=body.reason,
    )
    return _with_request(change, response)


@router.post("/{username}/handover", status_code=202)
def handover(
    username: UserPath, body: HandoverIn, services: ServicesDep, caller: CallerDep
) -> dict[str, Any]:
    """Staff leaving (篇七): files a handover request (202) that needs what reassigning
    the leaver's most secret archive needs. Its last signature moves the archives it
    recorded to the successor, a salesperson of the same department, revokes the
    leaver's grants (open loans stay on the register, to be returned) and disables
    the leaver (``policies.handover``). A leaver who keeps archives as custodian names
    a successor custodian for each (``custodians``) or for all (``custodian_to``),
    or the handover is refused (422 listing them). When it applies, the moved
    archives go on the successor's call list (``GET /handovers/calls``)."""
    req = user_admin.file_handover(
        services,
        caller,
        username,
        to=body.to,
        custodians=dict(body.custodians),
        custodian_to=body.custodian_to,
        reason=body.reason,
    )
    return request_public(req)


# -- who works here (reads only) ------------------------------------------------------


@router.get("")
def list_users(
    services: ServicesDep,
    caller: CallerDep,
    role: RoleName | None = None,
    department: Annotated[PlainText | None, Query(max_length=64)] = None,
    disabled: bool | None = None,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> dict[str, Any]:
    """The accounts, for administrators: names, department, roles, disabled, visitor.
    Never a password hash, reset code or credential. Each list is an audit entry."""
    query = roster.UserQuery(
        role=role, department=department, disabled=disabled, offset=offset, limit=limit
    )
    items, total = user_admin.list_accounts(services, caller, query)
    return {"items": items, "total": total, "offset": offset, "limit": limit}


@router.get("/lookup")
def lookup_users(
    services: ServicesDep,
    caller: CallerDep,
    q: Annotated[PlainText, Query(min_length=1, max_length=64)],
    limit: Annotated[int, Query(ge=1, le=roster.LOOKUP_MAX)] = roster.LOOKUP_MAX,
) -> dict[str, Any]:
    """Names for people choosing signers or reading a chain (approvers and compliance):
    usernames, display names, departments and roles of active accounts, at most 20."""
    if not roster.LOOKUP_ROLES & caller.principal.roles:
        raise user_admin.refused_list(
            services, caller, "only approvers and compliance look up names of colleagues"
        )
    if not q.strip():
        raise ApiProblem(422, "validation-failed", "q: give part of a username or name")
    return {"items": services.in_transaction(lambda s: roster.lookup(s, q, limit))}
