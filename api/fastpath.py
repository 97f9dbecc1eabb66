"""``GET /customers/{archive_no}`` served before the framework's routing: the hot path.

Reading an archive is what the vault does most, and per request FastAPI's
routing, dependency solving and response classes cost more CPU than the
audited, decrypted read itself. ``FastRead`` answers the well-formed case
directly: it checks the path, the one ``groups`` parameter and the bearer
token, then calls the very function the route calls
(``Services.read_archive``, the unit of work of ``policies.access``), so
decisions, audit and decryption are one implementation. Anything it does not
recognise as well formed — a bad archive number, an unknown group, a missing,
expired or forged token, a body, an extra parameter — goes on to the FastAPI
route unchanged, which
validates it again and answers with the usual problem+json. Errors raised by
the read itself (denied, not found, database down) are rendered by the app's
own exception handlers, so both paths answer them identically.

It sits inside ``SecurityHeaders`` and ``BodyLimit``, so its responses carry
the same headers as every other response.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from api.deps import run_blocking
from api.observe import ROUTE_KEY
from api.security import InvalidToken
from api.services import GROUPS_MAX_CHARS, Services
from vault.errors import VaultError
from vault.records import ARCHIVE_NO

PREFIX = "/customers/"
TEMPLATE = "/customers/{archive_no}"  # the route's template, for the access log and metrics
# The read the route runs too, named here so a test can see the fast path take a request.
read_content = Services.read_archive


class FastRead:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = self._parse(scope) if scope["type"] == "http" else None
        if request is None:
            await self.app(scope, receive, send)
            return
        services, claims, archive_no, wanted = request
        scope[ROUTE_KEY] = TEMPLATE
        client = scope.get("client")
        try:
            body = await run_blocking(
                services.engine,
                read_content,
                services,
                claims,
                client[0] if client else None,
                archive_no,
                wanted,
            )
        except Exception as exc:  # noqa: BLE001 - rendered by the app's handlers, as routed
            await self._problem(scope, receive, send, exc)
            return
        payload = json.dumps(
            body, ensure_ascii=False, allow_nan=False, separators=(",", ":")
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(payload)).encode()),
                    (b"cache-control", b"no-store"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": payload})

    @staticmethod
    def _parse(scope: Scope) -> tuple[Any, Any, str, tuple[str, ...]] | None:
        """What a well-formed read asks for, or None to hand the request on."""
        path = scope["path"]
        if scope["method"] != "GET" or not path.startswith(PREFIX) or scope.get("root_path"):
            return None
        archive_no = path[len(PREFIX) :]
        if not ARCHIVE_NO.fullmatch(archive_no):
            return None
        groups: str | None = None
        query = scope.get("query_string", b"")
        if query:
            try:
                pairs = parse_qsl(
                    query.decode("ascii"), keep_blank_values=True, strict_parsing=True
                )
            except (UnicodeDecodeError, ValueError):
                return None
            if len(pairs) != 1 or pairs[0][0] != "groups" or len(pairs[0][1]) > GROUPS_MAX_CHARS:
                return None
            groups = pairs[0][1]
        token = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                scheme, _, credentials = value.decode("latin-1").partition(" ")
                if scheme.lower() != "bearer" or token is not None:
                    return None
                token = credentials
            elif name in (b"content-length", b"transfer-encoding") and value != b"0":
                return None
        app = scope.get("app")
        services = getattr(getattr(app, "state", None), "services", None)
        if not token or services is None:
            return None
        try:
            claims = services.tokens.verify(token, now=services.clock())
            wanted = services.parse_groups(groups)
        except (InvalidToken, VaultError):
            return None
        return services, claims, archive_no, wanted

    @staticmethod
    async def _problem(scope: Scope, receive: Receive, send: Send, exc: Exception) -> None:
        """The response the app's exception handlers give ``exc`` on the routed path."""
        handlers = scope["app"].exception_handlers
        handler = next((handlers[c] for c in type(exc).__mro__ if c in handlers), None)
        if handler is None:
            raise exc
        response = await handler(Request(scope, receive), exc)
        await response(scope, receive, send)
