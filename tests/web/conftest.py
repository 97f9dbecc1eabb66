"""Pages over a fresh vault (SQLite and PostgreSQL), with one user per role.

``pages`` signs a TestClient in through the sign-in form, as a browser does;
browser tests (``tests/web/browser``) serve the same app on a real port.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from tests.api.conftest import PASSWORD, USERS, Clock, activate, api_vault, client, clock, login
from vault.vault import Vault

__all__ = ["PASSWORD", "USERS", "Clock", "activate", "api_vault", "client", "clock", "login"]

CSRF = re.compile(r'name="csrf" value="([0-9a-f]{64})"')


def csrf_of(html: str) -> str:
    found = CSRF.search(html)
    assert found, "the page has no CSRF token"
    return found.group(1)


class Browser:
    """One signed-in browser: its own cookies, and the CSRF token of its last page."""

    def __init__(self, app: object, base_url: str = "http://testserver") -> None:
        self.http = TestClient(app, follow_redirects=False, base_url=base_url)  # type: ignore[arg-type]
        self.csrf = ""

    def get(self, url: str, **kw: object):
        r = self.http.get(url, **kw)
        found = CSRF.search(r.text)
        if found:
            self.csrf = found.group(1)
        return r

    def post(self, url: str, data: dict | None = None, *, csrf: bool = True, **kw: object):
        data = dict(data or {})
        if csrf:
            if not self.csrf:
                self.get("/login")
            data.setdefault("csrf", self.csrf)
        return self.http.post(url, data=data, **kw)

    def sign_in(self, username: str, password: str = PASSWORD) -> None:
        self.get("/login")
        r = self.post("/login", {"username": username, "password": password})
        assert r.status_code == 303, r.text
        self.get("/ui")


@pytest.fixture
def web_app(api_vault: Vault, clock: Clock) -> Iterator[object]:
    app = create_app(vault=api_vault, clock=clock)
    with TestClient(app):  # runs the lifespan once
        yield app


@pytest.fixture
def browser(web_app: object) -> Callable[[str | None], Browser]:
    """A new browser, signed in as the given user (None: not signed in)."""

    def _open(username: str | None = None) -> Browser:
        b = Browser(web_app)
        if username:
            b.sign_in(username)
        return b

    return _open
