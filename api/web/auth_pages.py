"""Signing in and out, the language switch, the home page and one's own password.

Sign-in runs ``Accounts.login``, the very check behind ``POST /auth/token``
(the same Argon2 verification, counters, delays, locks and audit entries); only
what a success hands out differs: a session cookie instead of a bearer token.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from fastapi import APIRouter, Query
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from sqlmodel import Session

from api import login_guard
from api.security import hash_password
from api.web.kit import AnyPage, Form, Page, SignedIn, field_text, local_path
from api.web.sessions import LANG_COOKIE, PRE_COOKIE, SESSION_COOKIE
from audit.events import Actor, AuditAction, AuditEvent
from foundation.db import transaction
from policies import notifications
from vault.models import User, UserRole

router = APIRouter()
YEAR = 365 * 24 * 3600


def _demo_accounts(page: Page) -> list[dict[str, Any]]:
    """Demo vaults only: who one can sign in as (the password is the demo's, printed by it)."""
    if not page.web.demo:
        return []
    u, r = User.__table__, UserRole.__table__  # type: ignore[attr-defined]
    with Session(page.services.engine) as session:
        rows = session.connection().execute(
            sa.select(u.c.username, u.c.display_name, u.c.department, r.c.role)
            .join(r, r.c.user_id == u.c.id, isouter=True)
            .where(u.c.disabled.is_(False))
            .order_by(u.c.username)
        )
        accounts: dict[str, dict[str, Any]] = {}
        for name, display, dept, role in rows:
            entry = accounts.setdefault(
                name, {"username": name, "name": display, "department": dept, "roles": []}
            )
            if role:
                entry["roles"].append(role)
    return list(accounts.values())


def _login_form(page: Page, *, status: int = 200, error: str = "", next_path: str = "") -> Any:
    return page.render(
        "login.html",
        status=status,
        error=error,
        next_path=local_path(next_path),
        demo_accounts=_demo_accounts(page),
    )


@router.get("/")
def root(page: AnyPage) -> Response:
    return page.redirect("/ui" if page.caller else "/login")


@router.get("/login")
def login_page(page: AnyPage, next: str = Query("", max_length=500)) -> Response:
    if page.caller is not None:
        return page.redirect(local_path(next))
    return _login_form(page, next_path=next)


@router.post("/login")
async def login(page: AnyPage, form: Form) -> Response:
    username = field_text(form, "username", limit=64)
    password = form.get("password")
    next_path = field_text(form, "next", limit=500)
    if not username or not isinstance(password, str) or not password:
        return _login_form(
            page, status=422, error=page._("Enter your username and password."), next_path=next_path
        )
    services = page.services
    outcome = await run_in_threadpool(
        services.accounts.login,
        username,
        password[:256],
        page.client,
        services.clock(),
        lambda session, user, generation, now: (
            page.web.sessions.open(session, user, generation, now),
            0,
        ),
    )
    if outcome.retry_after:
        return _login_form(
            page,
            status=429,
            error=page._("Too many failed attempts from this address; try again later."),
            next_path=next_path,
        )
    if outcome.token is None:
        delay = login_guard.failure_delay(
            services.vault.settings.login_delay_seconds, outcome.count
        )
        if delay:
            await services.sleep(delay)
        return _login_form(
            page,
            status=401,
            error=page._("Wrong username or password, or the account is locked for a while."),
            next_path=next_path,
        )
    # A browser holds one session: an earlier one (another user's, say) ends here.
    page.web.sessions.end(
        page.request.cookies.get(page.web.cookie(SESSION_COOKIE)), services.clock()
    )
    response = page.redirect(local_path(next_path))
    page.set_cookie(response, SESSION_COOKIE, outcome.token)
    page.delete_cookie(response, PRE_COOKIE)
    return response


@router.post("/logout")
def logout(page: AnyPage, _form: Form) -> Response:
    services = page.services
    secret = page.request.cookies.get(page.web.cookie(SESSION_COOKIE))
    who = page.web.sessions.end(secret, services.clock())
    if who is not None:
        with transaction(services.engine) as session:
            services.audit.append(
                session,
                AuditEvent(action=AuditAction.LOGOUT, actor=Actor(who, "logout", page.client)),
            )
    response = page.redirect("/login", flash=page._("You have signed out."))
    page.delete_cookie(response, SESSION_COOKIE)
    return response


@router.post("/lang")
def switch_language(page: AnyPage, form: Form) -> Response:
    chosen = field_text(form, "lang", limit=8)
    chosen = page.web.languages.pick(chosen)
    response = page.redirect(local_path(field_text(form, "next", limit=500), "/login"))
    page.set_cookie(response, LANG_COOKIE, chosen, max_age=YEAR)
    return response


@router.get("/ui")
def home(page: SignedIn) -> Response:
    caller = page.me()
    with Session(page.services.engine) as session:
        notes = notifications.page_for(
            session, caller.principal.username, unread_only=True, limit=5, offset=0
        )
    return page.render("home.html", unread=notes.unread, recent=notes.items)


@router.get("/ui/password")
def password_page(page: SignedIn) -> Response:
    return page.render("password.html")


@router.post("/ui/password")
async def change_password(page: SignedIn, form: Form) -> Response:
    caller = page.me()
    current = form.get("current_password")
    new = form.get("new_password")
    repeat = form.get("repeat_password")
    if not all(isinstance(v, str) and v for v in (current, new, repeat)):
        return page.render("password.html", status=422, error=page._("Fill in all three fields."))
    assert isinstance(current, str) and isinstance(new, str)
    if new != repeat:
        return page.render(
            "password.html", status=422, error=page._("The two new passwords differ.")
        )
    try:
        hashed = hash_password(new)
    except ValueError:
        return page.render(
            "password.html",
            status=422,
            error=page._("A password has 10 to 256 characters."),
        )
    sessions = page.web.sessions
    outcome = await run_in_threadpool(
        page.services.accounts.change_own_password,
        caller.username,
        current[:256],
        hashed,
        page.client,
        lambda session, user, generation, now: (sessions.open(session, user, generation, now), 0),
    )
    if outcome.token is None:
        return page.render(
            "password.html",
            status=429 if outcome.retry_after else 403,
            error=page._("The current password is wrong, or the account is locked for a while."),
        )
    # Every earlier session (this one included) ended with the generation; a new one starts.
    response = page.redirect("/ui", flash=page._("Your password was changed."))
    page.set_cookie(response, SESSION_COOKIE, outcome.token)
    return response
