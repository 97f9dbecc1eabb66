"""A server error becomes one log line with an error id, and a content-free 500.

The text of an exception can carry what the code was working on: SQL
statements with their parameters, field values, decrypted content. A logged
traceback puts that text in the server log, which is kept, shipped and read by
people who may not read archives. So a 500 is logged as one line: an error id
(also in the response, so a user's report finds the line), where it happened
and the exception's class, never its message. The full traceback is logged only
when an operator asks for it with ``VAULT_DEBUG=1`` on a machine where that is
acceptable.

Starlette's own outermost handler (``ServerErrorMiddleware``) answers a 500 and
then re-raises, and the server logs the re-raised exception with its traceback;
``InternalErrors`` sits inside it and never lets an exception through.
"""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.observe import route_template
from api.problems import internal_error

log = logging.getLogger("archive_vault.api")
_MAX_WHERE = 120


def debug_enabled() -> bool:
    return os.environ.get("VAULT_DEBUG") == "1"


def log_server_error(exc: BaseException, where: str, *, kind: str | None = None) -> str:
    """Log one line for a server error and return its id; a traceback only with VAULT_DEBUG=1.

    ``kind`` replaces the class name when the interesting class is another one
    (a database driver's error inside SQLAlchemy's wrapper).
    """
    error_id = secrets.token_hex(8)
    # repr() keeps a path with encoded line breaks on one line.
    log.error(
        "server error %s on %r: %s",
        error_id,
        where[:_MAX_WHERE],
        kind or type(exc).__name__,
        exc_info=exc if debug_enabled() else None,
    )
    return error_id


# A page's internal error: no template (the error may be in the templates), both languages.
_PAGE = (
    '<!doctype html><html lang="zh-CN"><head><meta charset="utf-8">'
    "<title>500</title></head><body><main><h1>出错了 / Something went wrong</h1>"
    "<p>请求未能完成，没有返回任何内容。请把错误编号告诉管理员。<br>"
    "The request could not be completed and nothing was returned. "
    "Give the administrator this error number: <code>{error_id}</code></p>"
    '<p><a href="/ui">首页 / Home</a></p></main></body></html>'
)


class InternalErrors:
    """Outermost middleware: what no exception handler mapped is answered here."""

    HEADERS = (
        (b"content-type", b"application/problem+json"),
        (b"cache-control", b"no-store"),
        (b"x-content-type-options", b"nosniff"),
    )

    def __init__(self, app: ASGIApp, *, page_path: Callable[[str], bool] | None = None) -> None:
        self.app = app
        # Paths of the web pages: their 500 is a small page, not problem+json.
        self.page_path = page_path or (lambda _path: False)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def watched(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, watched)
        except Exception as exc:  # noqa: BLE001 - the last place an error can be mapped
            error_id = log_server_error(exc, route_template(scope))
            if started:
                return  # a stream cut short: the client sees an incomplete response
            path = scope.get("path", "")
            headers = list(self.HEADERS)
            if self.page_path(path):
                body = _PAGE.format(error_id=error_id).encode()
                headers[0] = (b"content-type", b"text/html; charset=utf-8")
            else:
                body = bytes(internal_error(path, error_id).body)
            await send(
                {
                    "type": "http.response.start",
                    "status": 500,
                    "headers": [*headers, (b"content-length", str(len(body)).encode())],
                }
            )
            await send({"type": "http.response.body", "body": body})
