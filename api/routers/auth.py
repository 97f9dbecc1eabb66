"""Login (OAuth2 password flow), changing one's own password, and ``/me``: who you are
and where your notifications are mailed."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.security import OAuth2PasswordRequestForm
from pydantic import AfterValidator, StringConstraints

from api import login_guard
from api.accounts import Attempt
from api.deps import CallerDep, ServicesDep, client_address
from api.errors import ApiProblem
from api.schemas import Me, Strict, Token
from api.security import hash_password
from foundation.addresses import check_email
from policies import notifications

router = APIRouter(tags=["auth"])
FAILED = "wrong username or password, or the account is locked for a while"


def too_many(retry_after: float) -> ApiProblem:
    return ApiProblem(
        429,
        "too-many-failed-logins",
        "too many failed attempts from this address; try again later",
        headers={"Retry-After": str(int(retry_after) + 1)},
    )


def _token(attempt: Attempt) -> Token | None:
    if attempt.token is None:
        return None
    return Token(access_token=attempt.token, expires_in=attempt.expires_in)


@router.post("/auth/token", response_model=Token)
async def login(
    request: Request, services: ServicesDep, form: Annotated[OAuth2PasswordRequestForm, Depends()]
) -> Token:
    """Exchange a password for a short-lived bearer token.

    Attempts are counted in the database, per account (a name that is no user
    is counted the same way) and per client address, before the password is
    checked; past the limits the account is locked for a while and the address
    is refused with 429, without a password check. After a few failures each
    answer is slowed, on one schedule for known and unknown names. Every
    attempt is audited. The Argon2 check and the database work run on a worker
    thread, never on the event loop.
    """
    outcome = await run_in_threadpool(
        services.accounts.login,
        form.username[:64],
        form.password,
        client_address(request),
        services.clock(),
    )
    if outcome.retry_after:
        raise too_many(outcome.retry_after)
    token = _token(outcome)
    if token is not None:
        return token
    # Slow down repeated guessing (after the commit, so the count is durable).
    delay = login_guard.failure_delay(services.vault.settings.login_delay_seconds, outcome.count)
    if delay:
        await services.sleep(delay)
    raise ApiProblem(401, "login-failed", FAILED, headers={"WWW-Authenticate": "Bearer"})


Password = Annotated[str, StringConstraints(min_length=1, max_length=256)]
NewPassword = Annotated[str, StringConstraints(min_length=10, max_length=256)]


class PasswordChange(Strict):
    current_password: Password
    new_password: NewPassword


@router.post("/auth/password", response_model=Token)
async def change_own_password(
    request: Request, body: PasswordChange, services: ServicesDep, caller: CallerDep
) -> Token:
    """Change your own password with your current one; every earlier token is revoked.

    The current password is checked like a login (the same counters), so a
    stolen token cannot be used to guess it. The answer is a fresh token.
    """
    try:
        hashed = hash_password(body.new_password)
    except ValueError as exc:
        raise ApiProblem(422, "validation-failed", str(exc)) from None
    outcome = await run_in_threadpool(
        services.accounts.change_own_password,
        caller.username,
        body.current_password,
        hashed,
        client_address(request),
    )
    if outcome.retry_after:
        raise too_many(outcome.retry_after)
    token = _token(outcome)
    if token is None:
        raise ApiProblem(
            403,
            "password-change-refused",
            "the current password is wrong, or the account is locked for a while",
        )
    return token


@router.get("/me", response_model=Me)
def me(caller: CallerDep) -> Me:
    p = caller.principal
    return Me(
        username=p.username,
        roles=sorted(p.roles),
        department=p.department,
        clearance=p.clearance,
        external=p.external,
    )


class OwnEmail(Strict):
    # Required: null clears the address, and a body without it says nothing.
    email: Annotated[str, AfterValidator(check_email)] | None


@router.put("/me/email")
def set_own_email(body: OwnEmail, services: ServicesDep, caller: CallerDep) -> dict[str, object]:
    """Set (or with null clear) where your own notifications are mailed.

    Only ever the caller's own address: the path names no one, so nobody points a
    colleague's notices (loan notices name archives and borrowers) at their own
    mailbox. Audited as a change of the user, without the address.
    """

    def run(session: Any) -> dict[str, object]:
        user = notifications.set_email(
            session,
            caller.username,
            body.email,
            audit=services.audit,
            actor=caller.actor,
            now=services.clock(),
        )
        return {"username": user.username, "email": user.email}

    return services.in_transaction(run)
