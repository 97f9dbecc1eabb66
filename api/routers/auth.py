"""Login (OAuth2 password flow) and ``/me``."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.security import OAuth2PasswordRequestForm
from sqlmodel import select

from api.deps import CallerDep, ServicesDep, client_address
from api.errors import ApiProblem
from api.schemas import Me, Token
from api.security import verify_password
from audit.events import Actor, AuditAction, AuditEvent, Outcome
from vault.db import transaction
from vault.models import User
from vault.records import USERNAME

router = APIRouter(tags=["auth"])
FAILED = "wrong username or password, or the account is locked for a while"


@router.post("/auth/token", response_model=Token)
async def login(
    request: Request, services: ServicesDep, form: Annotated[OAuth2PasswordRequestForm, Depends()]
) -> Token:
    """Exchange a password for a short-lived bearer token.

    Failures are counted per account: after a few, each answer is slowed, and
    then the account is locked for a while; an address with too many failures
    is refused for a while too. Every attempt is audited. The Argon2 check and
    the database work run on a worker thread, never on the event loop.
    """
    settings = services.vault.settings
    address = client_address(request) or "unknown"
    now = services.clock()
    wait = services.login_throttle.blocked(
        address,
        now.timestamp(),
        settings.login_address_max_failures,
        settings.login_address_window_seconds,
    )
    if wait > 0:
        raise ApiProblem(
            429,
            "too-many-failed-logins",
            "too many failed logins from this address; try again later",
            headers={"Retry-After": str(int(wait) + 1)},
        )
    token, failures = await run_in_threadpool(_attempt, services, form, request, now)
    if token is not None:
        return token
    services.login_throttle.failed(address, now.timestamp())
    # Slow down repeated guessing (after the commit, so the count is durable).
    delay = (
        settings.login_delay_seconds * min(2 ** max(failures - 2, 0), 8)
        if failures
        else settings.login_delay_seconds
    )
    if delay:
        await asyncio.sleep(delay)
    raise ApiProblem(401, "login-failed", FAILED, headers={"WWW-Authenticate": "Bearer"})


def _attempt(
    services: Any, form: OAuth2PasswordRequestForm, request: Request, now: datetime
) -> tuple[Token | None, int]:
    """Check the password and record the attempt; returns (token, failures so far)."""
    settings = services.vault.settings
    username = form.username[:64]
    with transaction(services.engine) as session:
        # A name that cannot be a username (NUL bytes, controls, wrong shape) is not
        # looked up at all: PostgreSQL refuses NUL in text, and nobody has that name.
        user = (
            session.exec(select(User).where(User.username == username)).first()
            if USERNAME.fullmatch(username)
            else None
        )
        locked = bool(user and user.locked_until and user.locked_until > now)
        ok = verify_password(user.password_hash if user else None, form.password)
        # An unknown name is never logged as typed (people type passwords into the
        # username box); it is kept as a keyed hash, like a searched value.
        actor = Actor(user.username if user else "unknown", "login", client_address(request))
        if ok and user is not None and not user.disabled and not locked:
            user.failed_logins, user.locked_until = 0, None
            session.add(user)
            services.audit.append(session, AuditEvent(action=AuditAction.LOGIN, actor=actor))
            token, ttl = services.tokens.issue(user.username, now=now)
            return Token(access_token=token, expires_in=ttl), 0
        failures = 0
        if user is not None and not locked:
            user.failed_logins += 1
            failures = user.failed_logins
            if failures >= settings.login_max_failures:
                user.locked_until = now + timedelta(minutes=settings.login_lock_minutes)
                user.failed_logins = 0
            session.add(user)
        services.audit.append(
            session,
            AuditEvent(
                action=AuditAction.LOGIN_FAILED,
                actor=actor,
                outcome=Outcome.DENIED,
                detail={
                    "known_user": user is not None,
                    "username_hmac": None
                    if user
                    else services.store.query_hmac("login-username", username),
                    "locked": bool(
                        locked
                        or (user is not None and user.locked_until and user.locked_until > now)
                    ),
                    "disabled": bool(user and user.disabled),
                },
            ),
        )
    return None, failures


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
