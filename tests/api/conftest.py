"""An app over a fresh vault (SQLite and PostgreSQL) with one demo user per role."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.security import _hasher
from foundation.db import transaction
from policies.directory import add_user
from vault.vault import Vault

PASSWORD = "correct horse battery staple"
_HASH = _hasher.hash(PASSWORD)  # hashed once: Argon2id is slow on purpose
USERS = {
    # username: (roles, department, clearance, external, credential)
    "zhang.wei": (["salesperson"], "销售一部", "internal", False, None),
    "li.na": (["salesperson"], "销售一部", "internal", False, None),
    "wang.fang": (["salesperson"], "销售二部", "internal", False, None),
    "head.one": (["department_head"], "销售一部", "secret", False, None),
    "head.two": (["department_head"], "销售二部", "secret", False, None),
    "chen.jing": (["information_officer"], "客户服务部", "top_secret", False, None),
    "zhao.lei": (["info_supervisor"], "客户服务部", "top_secret", False, None),
    "sun.li": (["cs_manager"], "客户服务部", "top_secret", False, None),
    "zhou.gm": (["general_manager"], "总经理办公室", "top_secret", False, None),
    "qian.audit": (["compliance"], "合规部", "internal", False, None),
    "admin": (["admin"], "信息技术部", "internal", False, None),
}


class Clock:
    """A settable clock: expiry is tested by moving time, never by sleeping."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kw: float) -> None:
        self.now += timedelta(**kw)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def api_vault(vault: Vault) -> Vault:
    vault.settings.login_delay_seconds = 0
    with transaction(vault.engine) as session:
        for name, (roles, dept, clearance, external, cred) in USERS.items():
            user = add_user(
                session,
                username=name,
                roles=roles,
                department=dept,
                clearance=clearance,
                external=external,
                credential_ref=cred,
            )
            user.password_hash = _HASH
            session.add(user)
    return vault


@pytest.fixture
def client(api_vault: Vault, clock: Clock) -> Iterator[TestClient]:
    app = create_app(vault=api_vault, clock=clock)
    with TestClient(app, raise_server_exceptions=__import__("os").environ.get("RAISE") == "1") as c:
        yield c


@pytest.fixture
def login(client: TestClient, clock: Clock) -> Callable[[str], dict[str, str]]:
    cache: dict[str, tuple[datetime, dict[str, str]]] = {}

    def _login(username: str) -> dict[str, str]:
        issued, headers = cache.get(username, (None, None))
        if headers is None or clock.now - issued > timedelta(minutes=10):
            r = client.post("/auth/token", data={"username": username, "password": PASSWORD})
            assert r.status_code == 200, r.text
            headers = {"Authorization": f"Bearer {r.json()['access_token']}"}
            cache[username] = (clock.now, headers)
        return headers

    return _login


@pytest.fixture
def activate(client: TestClient, login: Callable[[str], dict[str, str]]) -> Callable[..., dict]:
    """Finish a new account's one-time activation as its user would: the administrator's
    code from the answer, the holder's code fetched once by the holder; returns headers."""

    def _activate(created: dict, password: str = "long enough password") -> dict[str, str]:
        act = created["activation"]
        held = client.get("/me/password-reset-codes", headers=login(act["holder"])).json()
        code = next(i["code"] for i in held["items"] if i["user"] == act["user"])
        r = client.post(
            "/auth/password-reset",
            json={
                "username": act["user"],
                "admin_code": act["code"],
                "holder_code": code,
                "new_password": password,
            },
        )
        assert r.status_code == 200, r.text
        r = client.post("/auth/token", data={"username": act["user"], "password": password})
        assert r.status_code == 200, r.text
        return {"Authorization": f"Bearer {r.json()['access_token']}"}

    return _activate
