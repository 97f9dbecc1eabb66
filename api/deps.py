"""Request dependencies as one-word ``Annotated`` aliases: routes declare what they need."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import OAuth2PasswordBearer

from api.errors import ApiProblem
from api.security import InvalidToken, TokenClaims
from api.services import Services
from audit.events import Actor
from policies.decide import Principal
from policies.directory import load_principal
from policies.errors import UnknownUser, UserDisabled

oauth2 = OAuth2PasswordBearer(tokenUrl="/auth/token", auto_error=False)


async def get_services(request: Request) -> Services:
    return request.app.state.services


ServicesDep = Annotated[Services, Depends(get_services)]


@dataclass(frozen=True, slots=True)
class Caller:
    principal: Principal
    actor: Actor

    @property
    def username(self) -> str:
        return self.principal.username


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


def caller_for(services: Services, claims: TokenClaims, request: Request) -> Caller:
    """Who is calling, re-read from the database on every request (disabling is instant)."""
    with services.engine.connect() as conn:
        try:
            principal = load_principal(conn, claims.username, token_issued_at=claims.issued_at)
        except (UnknownUser, UserDisabled):
            raise InvalidToken(
                "this token is revoked: the account is disabled, gone, or its password changed"
            ) from None
    actor = Actor(principal.username, principal.role_label, client_address(request))
    return Caller(principal, actor)


def get_caller(request: Request, services: ServicesDep, claims: ClaimsDep) -> Caller:
    return caller_for(services, claims, request)


CallerDep = Annotated[Caller, Depends(get_caller)]
