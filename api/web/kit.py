"""What every page handler works with: who is signed in, the language, CSRF, rendering.

Pages are a second door to the same services, never a second implementation:
a handler gets a ``Caller`` exactly as an API route does (re-read from the
database on every request, so disabling is instant) and calls the services the
routes call. Everything a page shows is rendered by Jinja2 with autoescaping.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Annotated, Any
from urllib.parse import quote, unquote

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.datastructures import FormData

from api.deps import caller_for, client_address
from api.security import InvalidToken, TokenClaims
from api.services import Services
from api.web.i18n import Languages
from api.web.nav import nav_for
from api.web.sessions import (
    LANG_COOKIE,
    PRE_COOKIE,
    SESSION_COOKIE,
    Live,
    WebSessions,
    pre_binding,
    pre_secret,
)
from policies.archive_acts import Caller
from vault.demo import is_demo

FLASH_COOKIE = "av_flash"
# Pages may load only what the vault serves itself; nothing inline, nothing framed.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
)
WEB_PREFIXES = ("/ui", "/login", "/logout", "/lang", "/static/")


def is_web_path(path: str) -> bool:
    return path == "/" or path.startswith(WEB_PREFIXES)


@dataclass
class Web:
    """Built once per app: sessions and the language environments."""

    sessions: WebSessions
    languages: Languages
    secure_cookies: bool = False
    demo: bool = False

    def cookie(self, name: str) -> str:
        """A cookie's name as sent: ``__Host-`` prefixed when served over TLS.

        Browsers accept a ``__Host-`` cookie only from this very host, Secure, for
        path ``/`` and without a Domain, so a sibling host of the same domain cannot
        plant a session (signing a colleague in as someone else) or a flash message.
        """
        return f"__Host-{name}" if self.secure_cookies else name


class LoginRequired(Exception):
    """No open session: the handler answers with a redirect to the sign-in page."""

    def __init__(self, next_path: str) -> None:
        super().__init__(next_path)
        self.next_path = next_path


class CsrfRefused(Exception):
    """A state-changing form without a valid CSRF token."""


class PageError(Exception):
    """A refusal worded for a page: its status and a message already translated."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


@dataclass
class Page:
    """One request's view of the web: language, translations, CSRF token, caller."""

    request: Request
    services: Services
    web: Web
    lang: str
    live: Live | None = None
    caller: Caller | None = None
    claims: TokenClaims | None = None
    extra_cookies: list[tuple[str, str, int | None]] = field(default_factory=list)

    def _(self, message: str, **values: Any) -> str:
        text = self.web.languages.gettext[self.lang](message)
        return text % values if values else text

    @property
    def client(self) -> str | None:
        return client_address(self.request)

    @property
    def csrf(self) -> str:
        if self.live is not None:
            return self.web.sessions.csrf_for(self.live.key)
        pre = self.request.cookies.get(self.web.cookie(PRE_COOKIE))
        if not pre or len(pre) > 64:
            pre = pre_secret()
            self.extra_cookies.append((PRE_COOKIE, pre, None))
            self.request.state.pre = pre
        return self.web.sessions.csrf_for(pre_binding(pre))

    def me(self) -> Caller:
        if self.caller is None:
            raise LoginRequired(self.request.url.path)
        return self.caller

    def render(self, template: str, status: int = 200, **context: Any) -> HTMLResponse:
        env = self.web.languages.environments[self.lang]
        flash = self.request.cookies.get(self.web.cookie(FLASH_COOKIE))
        body = env.get_template(template).render(
            page=self,
            me=self.caller.principal if self.caller else None,
            csrf=self.csrf,
            flash=unquote(flash)[:300] if flash else None,
            path=self.request.url.path,
            nav=nav_for(self.caller.principal) if self.caller else [],
            **context,
        )
        response = HTMLResponse(body, status_code=status)
        self._finish(response)
        if flash:
            self.delete_cookie(response, FLASH_COOKIE)
        return response

    def redirect(self, url: str, flash: str | None = None) -> RedirectResponse:
        """After a successful form: see the result with GET (no resubmission on reload)."""
        response = RedirectResponse(url, status_code=303)
        self._finish(response)
        if flash:
            self.set_cookie(response, FLASH_COOKIE, flash[:300], max_age=60)
        return response

    def set_cookie(
        self, response: Response, name: str, value: str, *, max_age: int | None = None
    ) -> None:
        response.set_cookie(
            self.web.cookie(name),
            quote(value, safe="") if name == FLASH_COOKIE else value,
            max_age=max_age,
            path="/",
            httponly=True,
            samesite="strict",
            secure=self.web.secure_cookies,
        )

    def delete_cookie(self, response: Response, name: str) -> None:
        response.delete_cookie(
            self.web.cookie(name),
            path="/",
            httponly=True,
            samesite="strict",
            secure=self.web.secure_cookies,
        )

    def _finish(self, response: Response) -> None:
        response.headers["content-security-policy"] = CSP
        for name, value, max_age in self.extra_cookies:
            self.set_cookie(response, name, value, max_age=max_age)


_BUILD = threading.Lock()


def _web(request: Request) -> Web:
    """The app's ``Web``, built on first use from its services (after start-up)."""
    state = request.app.state
    if not hasattr(state, "web"):
        with _BUILD:
            if not hasattr(state, "web"):
                state.web = build_web(state.services)
    return state.web


def build_web(services: Services) -> Web:
    settings = services.vault.settings
    return Web(
        sessions=WebSessions(
            engine_of=lambda: services.engine,
            csrf_secret=services.vault.keys.secret("web_csrf"),
            idle=timedelta(minutes=settings.web_idle_minutes),
            absolute=timedelta(hours=settings.web_absolute_hours),
        ),
        languages=Languages(
            {},
            {
                code: {"zh": group.zh, "en": group.en}
                for code, group in services.store.schema.groups.items()
            },
        ),
        secure_cookies=settings.web_secure_cookies,
        demo=is_demo(services.engine, services.vault.keys),
    )


def _page(request: Request, signed_in: bool) -> Page:
    services: Services = request.app.state.services
    web = _web(request)
    page = Page(
        request, services, web, web.languages.pick(request.cookies.get(web.cookie(LANG_COOKIE)))
    )
    live = web.sessions.find(request.cookies.get(web.cookie(SESSION_COOKIE)), services.clock())
    if live is not None:
        claims = TokenClaims(
            username=live.username,
            jti="web",
            issued_at=live.created_at,
            expires_at=live.created_at + web.sessions.absolute,
            generation=live.generation,
        )
        try:
            page.caller = caller_for(services, claims, page.client)
            page.live, page.claims = live, claims
        except InvalidToken:  # disabled, gone, or the password changed: signed out
            page.caller = None
    # The form's CSRF check binds to this: a session whose user is disabled or whose
    # password changed counts as none (its browser signs in again with the pre token).
    request.state.web_live = page.live
    if signed_in and page.caller is None:
        raise LoginRequired(request.url.path)
    return page


def anonymous_page(request: Request) -> Page:
    return _page(request, signed_in=False)


def signed_in_page(request: Request) -> Page:
    return _page(request, signed_in=True)


AnyPage = Annotated[Page, Depends(anonymous_page)]
SignedIn = Annotated[Page, Depends(signed_in_page)]


async def checked_form(request: Request) -> FormData:
    """The submitted form, refused unless its CSRF token matches this browser's."""
    form = await request.form()
    token = form.get("csrf")
    web = _web(request)
    if hasattr(request.state, "web_live"):
        live = request.state.web_live
    else:
        secret = request.cookies.get(web.cookie(SESSION_COOKIE))
        live = web.sessions.find(secret, request.app.state.services.clock()) if secret else None
    # Signed in, only the session's own token counts: the pre-session token is printed
    # on the sign-in page and its cookie can be planted from a sibling host.
    bindings = [live.key] if live else []
    pre = request.cookies.get(web.cookie(PRE_COOKIE))
    if live is None and pre and len(pre) <= 64:
        bindings.append(pre_binding(pre))
    if not isinstance(token, str) or not any(web.sessions.csrf_ok(b, token) for b in bindings):
        raise CsrfRefused
    return form


Form = Annotated[FormData, Depends(checked_form)]


def field_text(form: FormData, name: str, *, limit: int = 2000) -> str:
    """A text field of a form, stripped; files and missing fields are ''.

    A value longer than ``limit`` is refused (422 naming the field), never cut:
    cutting would store less than the person typed without telling them. So is a
    NUL character: PostgreSQL cannot store one in text (SQLite can), and no form
    field has a use for it, so it is refused here rather than by the database as
    a server error halfway through the request.
    """
    value = form.get(name)
    if not isinstance(value, str):
        return ""
    value = value.strip()
    if len(value) > limit:
        raise PageError(422, f"{name}: longer than {limit} characters; nothing was saved")
    if "\x00" in value:
        raise PageError(422, f"{name}: contains a NUL character; nothing was saved")
    return value


def local_path(target: str | None, default: str = "/ui") -> str:
    """Only a path on this site is followed after sign-in (no open redirect)."""
    if (
        not target
        or not target.startswith("/")
        or target.startswith("//")
        or "\\" in target
        or any(ord(c) < 32 for c in target)
    ):
        return default
    return target[:500]
