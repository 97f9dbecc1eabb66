"""Containment from a leak case over HTTP: one step cuts an account off, at once."""

from __future__ import annotations

import hashlib

from sqlmodel import Session, select

from foundation.db import transaction
from policies.models import AccessGrant
from tests.api.conftest import PASSWORD
from tests.factories import archive
from vault.auth_models import WebSession
from vault.models import User


def _new(client, headers) -> str:
    body = archive()
    body.pop("owner", None)
    r = client.post("/customers", json=body, headers=headers)
    assert r.status_code == 201, r.text
    return r.json()["archive"]["archive_no"]


def _approved(client, login, **body) -> dict:
    r = client.post("/requests", json=body, headers=login("li.na"))
    assert r.status_code == 201, r.text
    req = r.json()
    for signer in ("head.one", "chen.jing"):
        r = client.post(f"/requests/{req['id']}/approve", json={}, headers=login(signer))
        assert r.status_code == 200, r.text
    return r.json()


def _case(client, login) -> str:
    r = client.post(
        "/leaks",
        json={"what_seen": "a client list in a chat group", "channel": "messaging"},
        headers=login("zhang.wei"),
    )
    assert r.status_code == 201, r.text
    return r.json()["uid"]


def _token(client, username: str) -> dict[str, str]:
    r = client.post("/auth/token", data={"username": username, "password": PASSWORD})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


def _web_session(api_vault, username: str, clock) -> str:
    key = hashlib.sha256(f"cookie-of-{username}".encode()).hexdigest()
    with transaction(api_vault.engine) as s:
        s.add(WebSession(key=key, username=username, created_at=clock.now, last_seen_at=clock.now))
    return key


def _setup(client, login, api_vault, clock) -> tuple[str, str, dict[str, str]]:
    """li.na reads an archive under a grant, has a loan out and a request pending."""
    no = _new(client, login("zhang.wei"))
    common = {"archives": [no], "groups": ["contact"], "purpose": "customer_service"}
    _approved(client, login, kind="view", reason="回电", **common)
    _approved(
        client, login, kind="loan", reason="签约", hours=24, material="复印件", copies=1, **common
    )
    li = _token(client, "li.na")
    loan = client.get("/loans", headers=login("chen.jing")).json()["items"][0]["id"]
    assert client.post(f"/loans/{loan}/confirm", headers=li).status_code == 200
    r = client.post(
        "/requests", json={"kind": "view", "reason": "再看", **common}, headers=login("li.na")
    )
    assert r.status_code == 201
    assert client.get(f"/customers/{no}?groups=contact", headers=li).status_code == 200
    _web_session(api_vault, "li.na", clock)
    return _case(client, login), no, li


def _active_grants(api_vault, username: str) -> int:
    with Session(api_vault.engine) as s:
        rows = s.exec(
            select(AccessGrant).where(
                AccessGrant.subject == username, AccessGrant.state == "active"
            )
        ).all()
    return len(rows)


def test_containment_cuts_a_live_token_grants_loans_and_sessions_at_once(
    client, login, api_vault, clock
) -> None:
    uid, no, li = _setup(client, login, api_vault, clock)
    assert _active_grants(api_vault, "li.na") == 2
    r = client.post(
        f"/leaks/{uid}/contain",
        json={"account": "li.na", "reason": "her account read the list"},
        headers=login("zhao.lei"),
    )
    assert r.status_code == 200, r.text
    done = r.json()
    assert done["sessions_ended"] == 1 and len(done["grants_ended"]) == 2
    assert len(done["loans_recalled"]) == 1 and len(done["requests_withdrawn"]) == 1
    assert done["user_disabled"] is False
    # The live token stops at once: the very next request is a 401.
    assert client.get("/me", headers=li).status_code == 401
    assert client.get(f"/customers/{no}?groups=contact", headers=li).status_code == 401
    # Not disabled: she signs in again, but the read that worked is now refused.
    again = _token(client, "li.na")
    assert client.get(f"/customers/{no}?groups=contact", headers=again).status_code == 403
    assert _active_grants(api_vault, "li.na") == 0
    with Session(api_vault.engine) as s:
        assert all(w.ended_at is not None for w in s.exec(select(WebSession)).all())
    # The loan stays on the register, recalled: due now, so overdue.
    loans = client.get("/loans?overdue=true", headers=login("chen.jing")).json()["items"]
    assert [e["id"] for e in loans] == done["loans_recalled"]
    # Every action is on the case and in the audit log, with counts, no text.
    case = client.get(f"/leaks/{uid}", headers=login("qian.audit")).json()
    acts = {
        e["detail"]["action"]: e["detail"] for e in case["events"] if e["kind"] == "containment"
    }
    assert set(acts) == {"sessions_ended", "tokens_revoked", "grants_ended", "loans_recalled"}
    assert acts["grants_ended"]["count"] == 2 and acts["sessions_ended"]["count"] == 1
    log = client.get("/audit?action=leak:change", headers=login("qian.audit")).json()["items"]
    assert sum(1 for e in log if e["detail"].get("kind") == "containment") == 4
    assert all("her account" not in str(e) for e in log)


def test_containment_can_disable_and_both_handlers_are_told(client, login, api_vault) -> None:
    uid = _case(client, login)
    li = _token(client, "li.na")
    r = client.post(
        f"/leaks/{uid}/contain",
        json={"account": "li.na", "disable": True, "reason": "suspected"},
        headers=login("sun.li"),
    )
    assert r.status_code == 200 and r.json()["user_disabled"] is True
    assert client.get("/me", headers=li).status_code == 401
    r = client.post("/auth/token", data={"username": "li.na", "password": PASSWORD})
    assert r.status_code in (401, 403)
    for handler in ("zhao.lei", "sun.li"):
        notes = client.get("/notifications", headers=login(handler)).json()["items"]
        assert any(uid in n["message"] and "now" in n["message"] for n in notes)


def test_an_administrator_can_be_contained(client, login, api_vault) -> None:
    uid = _case(client, login)
    admin = _token(client, "admin")
    r = client.post(
        f"/leaks/{uid}/contain",
        json={"account": "admin", "reason": "accounts created at night"},
        headers=login("zhao.lei"),
    )
    assert r.status_code == 200, r.text
    assert client.get("/me", headers=admin).status_code == 401


def test_only_handlers_contain_and_nothing_changes_otherwise(
    client, login, api_vault, clock
) -> None:
    uid, no, li = _setup(client, login, api_vault, clock)
    body = {"account": "li.na", "disable": True, "reason": "x"}
    # The reporter and compliance see the case but may not act: 403, audited.
    for who in ("zhang.wei", "qian.audit"):
        r = client.post(f"/leaks/{uid}/contain", json=body, headers=login(who))
        assert r.status_code == 403, who
    # Everyone else: no such case.
    for who in ("admin", "chen.jing", "head.one", "zhou.gm", "wang.fang"):
        r = client.post(f"/leaks/{uid}/contain", json=body, headers=login(who))
        assert r.status_code == 404, who
    assert client.get(f"/customers/{no}?groups=contact", headers=li).status_code == 200
    assert _active_grants(api_vault, "li.na") == 2
    with Session(api_vault.engine) as s:
        user = s.exec(select(User).where(User.username == "li.na")).one()
        assert not user.disabled
        assert all(w.ended_at is None for w in s.exec(select(WebSession)).all())
    denied = client.get(
        "/audit?action=leak:change&outcome=denied", headers=login("qian.audit")
    ).json()["items"]
    assert {e["actor"] for e in denied} >= {"zhang.wei", "qian.audit"}
    case = client.get(f"/leaks/{uid}", headers=login("qian.audit")).json()
    assert not [e for e in case["events"] if e["kind"] == "containment"]


def test_containment_refuses_self_unknown_accounts_closed_cases_and_bad_input(
    client, login
) -> None:
    uid = _case(client, login)
    h = login("zhao.lei")
    r = client.post(f"/leaks/{uid}/contain", json={"account": "zhao.lei", "reason": "x"}, headers=h)
    assert r.status_code == 403 and r.json()["rule"] == "contain-self"
    assert client.get("/me", headers=h).status_code == 200
    r = client.post(f"/leaks/{uid}/contain", json={"account": "nobody", "reason": "x"}, headers=h)
    assert r.status_code == 404
    for bad in (
        {"account": "li.na"},
        {"account": "li.na", "reason": ""},
        {"account": "li na;drop", "reason": "x"},
        {"account": "li.na", "reason": "x", "disable": "maybe"},
        {"account": "li.na", "reason": "x", "extra": 1},
    ):
        assert client.post(f"/leaks/{uid}/contain", json=bad, headers=h).status_code == 422, bad
    assert client.post("/leaks/LK-nope/contain", json={}, headers=h).status_code == 422
    client.post(
        f"/leaks/{uid}/state",
        json={"state": "closed", "reason": "nothing", "outcome": "unfounded"},
        headers=h,
    )
    r = client.post(f"/leaks/{uid}/contain", json={"account": "li.na", "reason": "x"}, headers=h)
    assert r.status_code == 422 and "closed" in r.json()["detail"]
    assert client.get("/me", headers=login("li.na")).status_code == 200
