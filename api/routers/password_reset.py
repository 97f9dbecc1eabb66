"""One-time password resets over HTTP: an administrator issues, two codes complete.

``POST /users/{username}/password-reset`` (administrators) revokes the user's
tokens and retires their password at once; the answer carries the first code,
once. The second code goes to the user's department head (or the information
supervisor), who is notified and fetches it once at ``GET /me/password-reset-codes``.
The user sets a new password at ``POST /auth/password-reset`` with both codes;
that route needs no token, so its attempts are counted per client address like
logins, and per reset (see ``policies.password_reset``).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import StringConstraints

from api import user_admin
from api.accounts import ResetCompletion
from api.deps import CallerDep, ServicesDep, client_address
from api.errors import ApiProblem
from api.routers.auth import too_many
from api.schemas import Strict, Username
from api.security import hash_password
from api.services import Services
from policies import password_reset
from vault.records import USERNAME

router = APIRouter(tags=["users"])
UserPath = Annotated[str, Path(pattern=f"^{USERNAME.pattern}$")]
Code = Annotated[str, StringConstraints(min_length=1, max_length=64)]
NewPassword = Annotated[str, StringConstraints(min_length=10, max_length=256)]
RESET_FAILED = (
    "the password was not reset: the username or a code is wrong, or the reset was used, "
    "has expired or had too many attempts; ask an administrator for a new one"
)


class ResetIn(Strict):
    username: Username
    admin_code: Code
    holder_code: Code
    new_password: NewPassword


def _keys(services: Services) -> password_reset.ResetKeys:
    return password_reset.ResetKeys(services.vault.keys)


@router.post("/users/{username}/password-reset", status_code=201)
def issue_reset(username: UserPath, services: ServicesDep, caller: CallerDep) -> dict[str, Any]:
    """Start a one-time reset (administrators); the first code is in this answer only."""
    issued = user_admin.issue_reset(services, caller, username)
    return reset_public(issued)


def reset_public(issued: password_reset.IssuedReset) -> dict[str, Any]:
    """What the issuing administrator is told: their code (once) and who holds the other."""
    return {
        "reset": issued.uid,
        "user": issued.username,
        "code": issued.admin_code,
        "holder": issued.holder,
        "expires_at": issued.expires_at.isoformat(),
        "detail": (
            f"{issued.username}'s tokens are revoked and the old password no longer works. "
            f"Give this code to {issued.username}; {issued.holder} received the second code "
            f"and hands it over in person. {issued.username} sets a new password at "
            "POST /auth/password-reset with both codes. This code is not shown again."
        ),
    }


@router.get("/me/password-reset-codes")
def my_codes(services: ServicesDep, caller: CallerDep) -> dict[str, Any]:
    """Codes you must hand over in person; each is shown once, then erased."""
    held = services.in_transaction(
        lambda s: password_reset.fetch_codes(
            s, holder=caller.actor, keys=_keys(services), audit=services.audit, now=services.clock()
        )
    )
    return {
        "items": [
            {
                "reset": h.uid,
                "user": h.username,
                "code": h.code,
                "expires_at": h.expires_at.isoformat(),
            }
            for h in held
        ]
    }


@router.post("/auth/password-reset")
async def complete_reset(request: Request, body: ResetIn, services: ServicesDep) -> dict[str, str]:
    """Set a new password with both codes of a pending reset (no token needed)."""
    try:
        hashed = hash_password(body.new_password)
    except ValueError as exc:
        raise ApiProblem(422, "validation-failed", str(exc)) from None
    completion = ResetCompletion(
        username=body.username,
        admin_code=body.admin_code,
        holder_code=body.holder_code,
        new_password_hash=hashed,
    )
    outcome = await run_in_threadpool(
        services.accounts.complete_reset, completion, client_address(request)
    )
    if outcome is None:
        return {"detail": "password set; log in at POST /auth/token"}
    if outcome > 0:
        raise too_many(outcome)
    raise ApiProblem(403, "password-reset-failed", RESET_FAILED)
