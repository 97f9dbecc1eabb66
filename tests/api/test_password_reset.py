"""Administrators never set a password: a one-time reset needs two people's codes.

The administrator who issues a reset gets one code, the user's department head
(or the information supervisor) the other; neither can complete it alone, and
the administrator never learns a usable password.
"""

from __future__ import annotations

import pytest
from sqlmodel import select

from foundation.db import transaction
from policies import password_reset
from tests.api.conftest import PASSWORD
from vault.models import User

NEW = "a fresh password of my own"


def _issue(client, login, username: str) -> dict:
    r = client.post(f"/users/{username}/password-reset", headers=login("admin"))
    assert r.status_code == 201, r.text
    return r.json()


def _held(client, login, holder: str) -> dict[str, str]:
    r = client.get("/me/password-reset-codes", headers=login(holder))
    assert r.status_code == 200, r.text
    return {item["user"]: item["code"] for item in r.json()["items"]}


def _complete(client, username: str, admin_code: str, holder_code: str, new: str = NEW):
    return client.post(
        "/auth/password-reset",
        json={
            "username": username,
            "admin_code": admin_code,
            "holder_code": holder_code,
            "new_password": new,
        },
    )


def _can_log_in(client, username: str, password: str) -> bool:
    r = client.post("/auth/token", data={"username": username, "password": password})
    return r.status_code == 200


def test_an_administrator_cannot_set_another_users_password(client, login) -> None:
    for body in ({"password": "the admin knows this one"}, {"password": "x" * 12, "roles": []}):
        r = client.patch("/users/wang.fang", json=body, headers=login("admin"))
        assert r.status_code == 403, r.text
        assert "POST /users/wang.fang/password-reset" in r.json()["detail"]
    assert not _can_log_in(client, "wang.fang", "the admin knows this one")
    assert _can_log_in(client, "wang.fang", PASSWORD)  # nothing changed, roles neither
    me = client.get("/me", headers=login("wang.fang")).json()
    assert me["roles"] == ["salesperson"]
    audit = client.get("/audit?action=user:change", headers=login("qian.audit")).json()["items"]
    assert any(e["detail"].get("op") == "set_password" and e["outcome"] == "denied" for e in audit)


def test_the_full_reset_needs_both_codes_and_revokes_tokens(client, login) -> None:
    old_token = login("wang.fang")
    assert client.get("/me", headers=old_token).status_code == 200
    issued = _issue(client, login, "wang.fang")
    assert issued["holder"] == "head.two"  # wang.fang's department head (销售二部)
    admin_code = issued["code"]
    # at once: the tokens are revoked and the old password no longer works
    assert client.get("/me", headers=old_token).status_code == 401
    assert not _can_log_in(client, "wang.fang", PASSWORD)
    # the administrator cannot fetch the second code, and cannot finish alone
    assert _held(client, login, "admin") == {}
    alone = _complete(client, "wang.fang", admin_code, admin_code)
    assert alone.status_code == 403
    assert _complete(client, "wang.fang", admin_code, "0000-0000-0000-0000").json() == alone.json()
    # the holder was told, and fetches the code once
    notes = client.get("/requests?role=mine", headers=login("head.two")).json()["notifications"]
    assert any(n["event"] == "password_reset" and issued["reset"] in n["message"] for n in notes)
    assert admin_code not in str(notes)
    holder_code = _held(client, login, "head.two")["wang.fang"]
    assert _held(client, login, "head.two") == {}
    # the department head cannot finish alone either; the answer does not say which was wrong
    head_alone = _complete(client, "wang.fang", holder_code, holder_code)
    assert head_alone.status_code == 403 and head_alone.json() == alone.json()
    # the user, with both codes (typed loosely), sets a password only they know
    done = _complete(client, "wang.fang", admin_code.lower().replace("-", " "), holder_code)
    assert done.status_code == 200, done.text
    assert _can_log_in(client, "wang.fang", NEW) and not _can_log_in(client, "wang.fang", PASSWORD)
    # used once
    again = _complete(client, "wang.fang", admin_code, holder_code, "yet another password")
    assert again.status_code == 403 and again.json() == alone.json()
    assert _can_log_in(client, "wang.fang", NEW)
    # every step is audited; no code ever reaches the log
    log = client.get("/audit?action=user:change&limit=100", headers=login("qian.audit")).json()
    ops = [(e["detail"].get("op"), e["outcome"]) for e in log["items"]]
    for step in (
        ("password_reset_issue", "allowed"),
        ("password_reset_code_fetched", "allowed"),
        ("password_reset_complete", "denied"),
        ("password_reset_complete", "allowed"),
    ):
        assert step in ops
    assert admin_code not in str(log) and holder_code not in str(log)


def test_an_unknown_user_gets_the_same_answer(client) -> None:
    wrong = _complete(client, "wang.fang", "AAAA", "BBBB")
    nobody = _complete(client, "no.such.user", "AAAA", "BBBB")
    assert wrong.status_code == nobody.status_code == 403 and wrong.json() == nobody.json()


def test_expired_exhausted_and_replaced_resets_are_refused(client, login, clock) -> None:
    first = _issue(client, login, "li.na")
    assert first["holder"] == "head.one"
    code = _held(client, login, "head.one")["li.na"]
    clock.advance(hours=25)
    assert _complete(client, "li.na", first["code"], code).status_code == 403
    # a new reset replaces a pending one: the older codes stop working
    second = _issue(client, login, "li.na")
    third = _issue(client, login, "li.na")
    codes = _held(client, login, "head.one")
    assert list(codes) == ["li.na"]
    assert _complete(client, "li.na", second["code"], codes["li.na"]).status_code == 403
    # too many wrong attempts end a reset, even for the right codes afterwards
    for _ in range(password_reset.MAX_ATTEMPTS):
        assert _complete(client, "li.na", third["code"], "WRONG-CODE").status_code == 403
    assert _complete(client, "li.na", third["code"], codes["li.na"]).status_code == 403
    assert not _can_log_in(client, "li.na", NEW)


def test_the_holder_is_the_head_or_the_information_supervisor_never_the_issuer(
    client, login
) -> None:
    assert _issue(client, login, "head.one")["holder"] == "zhao.lei"  # a head's own reset
    assert _issue(client, login, "chen.jing")["holder"] == "zhao.lei"  # no head in 客户服务部
    engine = client.app.state.services.engine
    with transaction(engine) as session:
        head = session.exec(select(User).where(User.username == "head.one")).one()
        assert password_reset.choose_holder(session, head, "zhao.lei") is None
        sales = session.exec(select(User).where(User.username == "zhang.wei")).one()
        assert password_reset.choose_holder(session, sales, "head.one") == "zhao.lei"
    # the information supervisor's own reset: nobody else can hand it over here
    r = client.post("/users/zhao.lei/password-reset", headers=login("admin"))
    assert r.status_code == 403 and "second code" in r.json()["detail"]


def test_only_administrators_issue_resets(client, login) -> None:
    r = client.post("/users/wang.fang/password-reset", headers=login("head.two"))
    assert r.status_code == 403
    assert _can_log_in(client, "wang.fang", PASSWORD)


@pytest.mark.parametrize("bad", ["", "x" * 65])
def test_malformed_completions_are_clear_422s(client, bad) -> None:
    r = _complete(client, "wang.fang", bad, "AAAA")
    assert r.status_code == 422 and r.headers["content-type"].startswith("application/problem")


def test_concurrent_wrong_codes_are_counted_one_by_one(client, login) -> None:
    """Parallel guesses at a reset: exactly MAX_ATTEMPTS are compared, then it is over."""
    import threading

    from audit.events import Actor
    from vault.auth_models import PasswordReset

    issued = _issue(client, login, "wang.fang")
    services = client.app.state.services
    keys = password_reset.ResetKeys(services.vault.keys)
    n = 12
    barrier = threading.Barrier(n)
    results: list[bool] = []
    errors: list[BaseException] = []

    def guess(i: int) -> None:
        try:
            barrier.wait()
            with transaction(services.engine) as session:
                results.append(
                    password_reset.complete(
                        session,
                        username="wang.fang",
                        admin_code=issued["code"],
                        holder_code=f"WRONG-{i}",
                        new_password_hash="x",
                        keys=keys,
                        audit=services.audit,
                        actor=Actor("wang.fang", "password-reset"),
                        now=services.clock(),
                    )
                )
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=guess, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and results == [False] * n
    with transaction(services.engine) as session:
        reset = session.exec(
            select(PasswordReset).where(PasswordReset.uid == issued["reset"])
        ).one()
        assert (reset.attempts, reset.state) == (password_reset.MAX_ATTEMPTS, "exhausted")
        assert reset.holder_code_sealed is None


def test_an_administrator_never_knows_a_new_accounts_password(client, login, activate) -> None:
    """A new account starts with no password and a one-time reset: the administrator's
    code alone does not open it, and a password given by the administrator is refused."""
    admin = login("admin")
    body = {"username": "new.hire", "roles": ["compliance"], "department": "销售一部"}
    r = client.post("/users", json={**body, "password": "chosen by the admin"}, headers=admin)
    assert r.status_code == 422 and "password" in r.json()["detail"]
    r = client.post("/users", json=body, headers=admin)
    # compliance is a role request the information supervisor signs
    assert r.status_code == 202 and r.json()["pending_roles"] == ["compliance"], r.text
    act = r.json()["activation"]
    assert act["user"] == "new.hire" and act["holder"] not in ("admin", "new.hire")
    alone = client.post(
        "/auth/password-reset",
        json={
            "username": "new.hire",
            "admin_code": act["code"],
            "holder_code": act["code"],
            "new_password": "the admin's own choice",
        },
    )
    assert alone.status_code == 403
    for guess in ("chosen by the admin", PASSWORD):
        r = client.post("/auth/token", data={"username": "new.hire", "password": guess})
        assert r.status_code == 401
    me = activate({"activation": act}, password="only the user knows this")
    assert client.get("/me", headers=me).json()["roles"] == []
