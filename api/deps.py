"""Request dependencies as one-word ``Annotated`` aliases: routes declare what they need."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.security import OAuth2PasswordBearer

from api.errors import ApiProblem
from api.security import InvalidToken, TokenClaims
from api.services import Services
from audit.events import Actor
from foundation.db import is_sqlite_busy, sqlite_lock, sqlite_no_wait
from foundation.rawsql import raw_connect
from policies.archive_acts import Caller
from policies.directory import load_principal
from policies.errors import UnknownUser, UserDisabled

T = TypeVar("T")
oauth2 = OAuth2PasswordBearer(tokenUrl="/auth/token", auto_error=False)


async def get_services(request: Request) -> Services:
    return request.app.state.services


ServicesDep = Annotated[Services, Depends(get_services)]


def client_address(request: Request) -> str | None:
    return request.client.host if request.client else None


async def get_token(
    services: ServicesDep, token: Annotated[str | None, Depends(oauth2)]
) -> TokenClaims:
    """The verified token (CPU only, so it runs on the event loop without a thread hop)."""
    if not token:
        raise ApiProblem(
            401,
            "not-authenticated",
            "log in at POST /auth/token and send the token as 'Authorization: Bearer …'",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return services.tokens.verify(token, now=services.clock())


ClaimsDep = Annotated[TokenClaims, Depends(get_token)]


def caller_for(
    services: Services, claims: TokenClaims, client: str | None, handle: Any = None
) -> Caller:
    """Who is calling, re-read from the database on every request (disabling is instant).

    ``handle`` is an open transaction to read through (the hot read path loads
    the principal inside its own transaction); otherwise a short connection.
    """
    try:
        if handle is not None:
            principal = load_principal(
                handle,
                claims.username,
                token_issued_at=claims.issued_at,
                token_generation=claims.generation,
            )
        else:
            with raw_connect(services.engine) as conn:
                principal = load_principal(
                    conn,
                    claims.username,
                    token_issued_at=claims.issued_at,
                    token_generation=claims.generation,
                )
    except (UnknownUser, UserDisabled):
        raise InvalidToken(
            "this token is revoked: the account is disabled, gone, or its password changed"
        ) from None
    actor = Actor(principal.username, principal.role_label, client)
    return Caller(principal, actor)


def get_caller(request: Request, services: ServicesDep, claims: ClaimsDep) -> Caller:
    return caller_for(services, claims, client_address(request))


CallerDep = Annotated[Caller, Depends(get_caller)]


async def run_blocking(engine: Any, fn: Callable[..., T], *args: Any) -> T:
    """Run blocking vault work (database, decryption, audit) for an async route.

    On SQLite, when this process's write turn is free, the work runs right
    here on the event loop: it is a millisecond of CPU under the GIL either
    way, and the hop to a worker thread and back (with the GIL handed over
    twice) cost more than the read itself. It runs without waiting for other
    processes' locks (``foundation.db.sqlite_no_wait``): if one holds the file (a
    CLI import, say), the attempt is rolled back, released nothing, and the
    work is retried in a thread, where it may wait. Otherwise, and always on
    PostgreSQL, whose round trips and commits wait on the network and disk,
    the work runs in the thread pool. ``fn`` must therefore be one transaction
    that is safe to run again after a rollback (``Services.read_archive`` is).
    """
    if engine.dialect.name == "sqlite":
        lock = sqlite_lock(engine)
        if lock.acquire(blocking=False):
            try:
                with sqlite_no_wait():
                    return fn(*args)
            except Exception as exc:
                if not is_sqlite_busy(exc):
                    raise
            finally:
                lock.release()
    return await run_in_threadpool(fn, *args)
