"""Server-rendered pages for the people who use the vault, on the API's own services.

Plain HTML forms (Jinja2, gettext catalogs in Chinese and English) that work
without JavaScript. Every page handler gets its ``Caller`` the way an API route
does and calls the same services, so a rule has one implementation. Errors the
services raise on a page are answered as pages, with the API's status codes.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from api.web import (
    admin_pages,
    archive_forms,
    audit_pages,
    auth_pages,
    client_records,
    clients,
    custodian_pages,
    leak_duty_pages,
    leak_pages,
    loan_pages,
    notices,
    profile,
    queue,
    register,
    request_pages,
    retention,
)
from api.web.i18n import HERE
from api.web.kit import CSP, CsrfRefused, LoginRequired, PageError, anonymous_page, is_web_path

__all__ = ["install", "is_web_path"]

PAGE_MODULES = [
    auth_pages,
    notices,
    clients,
    archive_forms,
    profile,
    client_records,
    request_pages,
    queue,
    loan_pages,
    leak_pages,
    leak_duty_pages,
    register,
    retention,
    custodian_pages,
    audit_pages,
    admin_pages,
]


def _error_page(request: Request, status: int, message: str) -> Response:
    """An error on a page, as a page: the same status, the message, a way back."""
    try:
        page = anonymous_page(request)
        return page.render("error.html", status=status, status_code=status, message=message)
    except Exception:  # noqa: BLE001 - the error page itself never fails: a bare page then
        return HTMLResponse(
            f"<!doctype html><html lang=en><title>{status}</title><main><h1>{status}</h1></main>",
            status,
            headers={"content-security-policy": CSP},
        )


def _wrap(handler: Callable[..., Any]) -> Callable[..., Awaitable[Response]]:
    """An API exception handler that answers pages with a page, the API with JSON."""

    async def answer(request: Request, exc: Exception) -> Response:
        response = handler(request, exc)
        if inspect.isawaitable(response):
            response = await response
        if not is_web_path(request.url.path):
            return response
        try:
            detail = json.loads(bytes(response.body)).get("detail", "")
        except (ValueError, AttributeError):
            detail = ""
        return _error_page(request, response.status_code, str(detail))

    return answer


def install(app: FastAPI) -> None:
    """Add the pages, their static files and their error answers to the app."""
    for exc_class, handler in list(app.exception_handlers.items()):
        app.exception_handlers[exc_class] = _wrap(handler)

    @app.exception_handler(LoginRequired)
    async def _login(request: Request, exc: LoginRequired) -> Response:
        target = "/login"
        if exc.next_path and exc.next_path.startswith("/ui") and request.method == "GET":
            target += "?next=" + quote(exc.next_path, safe="/")
        return RedirectResponse(target, status_code=303)

    @app.exception_handler(CsrfRefused)
    async def _csrf(request: Request, _exc: CsrfRefused) -> Response:
        page = anonymous_page(request)
        return _error_page(
            request,
            403,
            page._(
                "This form has expired or did not come from this site. "
                "Go back, reload the page and try again."
            ),
        )

    @app.exception_handler(PageError)
    async def _page_error(request: Request, exc: PageError) -> Response:
        return _error_page(request, exc.status, exc.message)

    for module in PAGE_MODULES:
        app.include_router(module.router, include_in_schema=False)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
