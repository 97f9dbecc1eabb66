"""Every request: an id, an access log line and its metrics, by route template only.

Outermost middleware, so the id is set for every line logged while the request
runs (error lines of ``api.internal_errors`` included), and the status counted
is the one the client got. The access line names the method, the route
template, the status, the time taken, the request id and the client address:
never the path (archive numbers are in paths) nor the query string (searched
values are in query strings).
"""

from __future__ import annotations

import logging
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.logging_setup import REQUEST_ID, request_id
from api.metrics import IN_PROGRESS, UNMATCHED, method_label, observe_request

# A middleware that answers before routing (``api.fastpath``) names its template here.
ROUTE_KEY = "archive_vault.route"
access_log = logging.getLogger("archive_vault.access")


def route_template(scope: Scope) -> str:
    """The template of the route that answered, or ``<unmatched>``; never the raw path."""
    named = scope.get(ROUTE_KEY)
    if isinstance(named, str):
        return named
    template = getattr(scope.get("route"), "path_format", None)
    return template if isinstance(template, str) and template else UNMATCHED


class ObserveRequests:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = None
        for name, value in scope.get("headers") or ():
            if name == b"x-request-id":
                incoming = value.decode("latin-1")
                break
        rid = request_id(incoming)
        token = REQUEST_ID.set(rid)
        status = 500  # if the app raises before answering, the server answers 500
        started = time.perf_counter()

        async def with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                headers = [(k, v) for k, v in message.get("headers", []) if k != b"x-request-id"]
                message = {**message, "headers": [*headers, (b"x-request-id", rid.encode())]}
            await send(message)

        IN_PROGRESS.inc()
        try:
            await self.app(scope, receive, with_id)
        finally:
            IN_PROGRESS.dec()
            seconds = time.perf_counter() - started
            route = route_template(scope)
            observe_request(scope["method"], route, status, seconds)
            client = scope.get("client")
            access_log.info(
                "%s %s %d",
                method_label(scope["method"]),
                route,
                status,
                extra={
                    "method": method_label(scope["method"]),
                    "route": route,
                    "status": status,
                    "duration_ms": round(seconds * 1000, 2),
                    "client": client[0] if client else None,
                },
            )
            REQUEST_ID.reset(token)
