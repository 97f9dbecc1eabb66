"""Login (OAuth2 password flow), changing one's own password, and ``/me``."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.security import OAuth2PasswordRequestForm
from pydantic import StringConstraints

from api import login_guard
from api.deps import CallerDep, ServicesDep, client_address
from api.errors import ApiProblem
from api.schemas import Me, Strict, Token
from api.security import hash_password, verify_password
from audit.events import Actor, AuditAction, AuditEvent, Outcome
from foundation.db import transaction
from policies.directory import revoke_tokens
from vault.models import User
from vault.records import USERNAME

router = APIRouter(tags=["auth"])
FAILED = "wrong username or password, or the account is locked for a while"
_U = User.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class _Outcome:
    """What one login attempt came to: a token, a refusal with its count, or a 429."""

    token: Token | None = None
    count: int = 0
    retry_after: float = 0.0


def too_many(retry_after: float) -> ApiProblem:
    return ApiProblem(
        429,
        "too-many-failed-logins",
        "too many failed attempts from this address; try again later",
        headers={"Retry-After": str(int(retry_after) + 1)},
    )


def address_key(services: Any, request: Request) -> str:
    """The client address as a keyed hash: the throttle table never holds an address."""
    return services.store.index.query_hmac("login-address", client_address(request) or "unknown")


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
        _attempt, services, form.username[:64], form.password, request, services.clock()
    )
    if outcome.retry_after:
        raise too_many(outcome.retry_after)
    if outcome.token is not None:
        return outcome.token
    # Slow down repeated guessing (after the commit, so the count is durable).
    delay = login_guard.failure_delay(services.vault.settings.login_delay_seconds, outcome.count)
    if delay:
        await services.sleep(delay)
    raise ApiProblem(401, "login-failed", FAILED, headers={"WWW-Authenticate": "Bearer"})


def _attempt(
    services: Any, username: str, password: str, request: Request, now: datetime
) -> _Outcome:
    """Reserve the attempt (committed), check the password only if allowed, record it."""
    settings = services.vault.settings
    addr_key = address_key(services, request)
    lock = timedelta(minutes=settings.login_lock_minutes)
    # A name that cannot be a username (NUL bytes, controls, wrong shape) is not
    # looked up at all: PostgreSQL refuses NUL in text, and nobody has that name.
    known = USERNAME.fullmatch(username) is not None
    with transaction(services.engine) as session:
        conn = session.connection()
        address = login_guard.reserve_address(
            conn,
            addr_key,
            now=now,
            limit=settings.login_address_max_failures,
            window=timedelta(seconds=settings.login_address_window_seconds),
        )
        if address.retry_after(now):
            return _Outcome(retry_after=address.retry_after(now))
        user = (
            conn.execute(
                sa.select(_U.c.username, _U.c.password_hash, _U.c.disabled).where(
                    _U.c.username == username
                )
            ).first()
            if known
            else None
        )
        reservation = (
            login_guard.reserve_account(
                conn, username, now=now, limit=settings.login_max_failures, lock=lock
            )
            if user is not None
            else None
        )
        if reservation is None:  # no such user: the same schedule, kept under a keyed hash
            user = None
            reservation = login_guard.reserve_name(
                conn,
                services.store.index.query_hmac("login-username", username),
                now=now,
                limit=settings.login_max_failures,
                lock=lock,
            )
    # Committed: concurrent attempts see this one's count before any password check.
    ok = reservation.may_check and verify_password(
        user.password_hash if user is not None else None, password
    )
    # An unknown name is never logged as typed (people type passwords into the
    # username box); it is kept as a keyed hash, like a searched value.
    actor = Actor(user.username if user else "unknown", "login", client_address(request))
    with transaction(services.engine) as session:
        conn = session.connection()
        if ok and user is not None and not user.disabled:
            login_guard.release_account(conn, user.username)
            login_guard.release_address(conn, addr_key, address)
            generation = conn.execute(
                sa.select(_U.c.token_generation).where(_U.c.username == user.username)
            ).scalar_one()
            services.audit.append(session, AuditEvent(action=AuditAction.LOGIN, actor=actor))
            token, ttl = services.tokens.issue(user.username, generation=generation, now=now)
            return _Outcome(token=Token(access_token=token, expires_in=ttl))
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
                    else services.store.index.query_hmac("login-username", username),
                    "locked": reservation.locked(now),
                    # False: refused on the count alone, the password was never checked.
                    "checked": reservation.may_check,
                    "disabled": bool(user and user.disabled),
                },
            ),
        )
    if address.count == 1:  # a new window: forget addresses whose window is over
        try:
            with transaction(services.engine) as session:
                login_guard.prune_addresses(
                    session.connection(),
                    now=now,
                    window=timedelta(seconds=settings.login_address_window_seconds),
                )
        except sa.exc.DBAPIError:  # housekeeping only; the next new window tries again
            pass
    return _Outcome(count=reservation.count)


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
        _change_own, services, caller.username, body.current_password, hashed, request
    )
    if outcome.retry_after:
        raise too_many(outcome.retry_after)
    if outcome.token is None:
        raise ApiProblem(
            403,
            "password-change-refused",
            "the current password is wrong, or the account is locked for a while",
        )
    return outcome.token


def _change_own(
    services: Any, username: str, current: str, hashed: str, request: Request
) -> _Outcome:
    settings = services.vault.settings
    now = services.clock()
    addr_key = address_key(services, request)
    with transaction(services.engine) as session:
        conn = session.connection()
        address = login_guard.reserve_address(
            conn,
            addr_key,
            now=now,
            limit=settings.login_address_max_failures,
            window=timedelta(seconds=settings.login_address_window_seconds),
        )
        if address.retry_after(now):
            return _Outcome(retry_after=address.retry_after(now))
        stored = conn.execute(
            sa.select(_U.c.password_hash).where(_U.c.username == username)
        ).scalar()
        reservation = login_guard.reserve_account(
            conn,
            username,
            now=now,
            limit=settings.login_max_failures,
            lock=timedelta(minutes=settings.login_lock_minutes),
        )
    if reservation is None:  # the caller's row is gone: nothing to change
        return _Outcome()
    ok = reservation.may_check and verify_password(stored, current)
    actor = Actor(username, "self", client_address(request))
    with transaction(services.engine) as session:
        conn = session.connection()
        if not ok:
            services.audit.append(
                session,
                AuditEvent(
                    action=AuditAction.USER_CHANGE,
                    actor=actor,
                    outcome=Outcome.DENIED,
                    detail={
                        "op": "change_own_password",
                        "user": username,
                        "locked": reservation.locked(now),
                    },
                ),
            )
            return _Outcome(count=reservation.count)
        conn.execute(
            sa.update(_U)
            .where(_U.c.username == username)
            .values(password_hash=hashed, failed_logins=0, locked_until=None)
        )
        login_guard.release_address(conn, addr_key, address)
        generation = revoke_tokens(session, username)
        services.audit.append(
            session,
            AuditEvent(
                action=AuditAction.USER_CHANGE,
                actor=actor,
                detail={"op": "change_own_password", "user": username},
            ),
        )
        token, ttl = services.tokens.issue(username, generation=generation, now=now)
    return _Outcome(token=Token(access_token=token, expires_in=ttl))


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
