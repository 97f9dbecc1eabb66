"""Attacks on the custodian rules (Art 22): one person names themselves keeper, an
administrator alone strips a keeper's role, a keeper who no longer qualifies (or was
replaced) still decides top-secret access. Each test fails while the hole is open."""

from __future__ import annotations

import pytest

from foundation.db import transaction
from policies.directory import add_user, set_roles
from tests.api.conftest import _HASH
from tests.api.test_workflow import _approve, _file, _new


@pytest.fixture
def more(api_vault):
    """Two more information officers, so top-secret chains have signers besides the keeper."""
    with transaction(api_vault.engine) as session:
        for name in ("xu.ming", "he.io"):
            user = add_user(
                session,
                username=name,
                roles=["information_officer"],
                department="客户服务部",
                clearance="top_secret",
            )
            user.password_hash = _HASH
            session.add(user)


def _keeper(client, login, no) -> str | None:
    r = client.get("/customers", params={"owner": "zhang.wei"}, headers=login("sun.li"))
    assert r.status_code == 200, r.text
    return next(i["custodian"] for i in r.json()["items"] if i["archive_no"] == no)


def _roles(client, login, username) -> list[str]:
    r = client.get("/users", params={"limit": 200}, headers=login("admin"))
    assert r.status_code == 200, r.text
    return next(u["roles"] for u in r.json()["items"] if u["username"] == username)


def _view_to_custodian_stage(client, login, no) -> dict:
    """li.na's view of a top-secret archive, signed up to the custodian's stage."""
    req = _file(
        client,
        login("li.na"),
        kind="view",
        archives=[no],
        groups=["identity"],
        purpose="customer_service",
        reason="客户回访",
    )
    assert [s["name"] for s in req["stages"]][-1] == "custodian"
    _approve(client, login("head.one"), req["id"])
    _approve(client, login("xu.ming"), req["id"])
    _approve(client, login("sun.li"), req["id"])
    return req


def test_an_officer_cannot_name_herself_custodian_by_raising_an_archive(
    client, login, more
) -> None:
    """POST /customers/{no}/custodian refuses ``self-appointment``; raising an internal
    archive to secret with ``custodian`` = the caller applies at once (200) and makes
    her the keeper, with nobody else's signature."""
    no = _new(client, login("zhang.wei"))
    r = client.post(
        f"/customers/{no}/classification",
        json={"classification": "secret", "custodian": "chen.jing", "reason": "重要客户"},
        headers=login("chen.jing"),
    )
    assert r.status_code == 403, r.text
    assert r.json()["rule"] == "self-appointment"
    assert _keeper(client, login, no) is None


def test_an_administrator_alone_cannot_strip_a_custodians_role(client, login, more) -> None:
    """keeper_check runs only when the new role list names no custodian role; naming a
    different one (info_supervisor, which is only filed as a request) removes
    information_officer at once and leaves the top-secret archive kept by an account
    that holds no role at all (Art 22)."""
    no = _new(client, login("zhang.wei"), classification="top_secret", custodian="chen.jing")
    r = client.patch(
        "/users/chen.jing",
        json={"roles": ["info_supervisor"], "reason": "升职"},
        headers=login("admin"),
    )
    assert _keeper(client, login, no) == "chen.jing"
    assert r.status_code == 409 or "information_officer" in _roles(client, login, "chen.jing"), (
        r.status_code,
        _roles(client, login, "chen.jing"),
    )


def test_a_custodian_who_no_longer_qualifies_does_not_sign_top_secret_access(
    client, login, more, api_vault
) -> None:
    """The custodian's stage once checked only ``signer.username == req.custodian``: a
    keeper left without a keeper's role (the API now refuses to strip it, so this is a
    vault from before that rule, set up through the library) still signed the last
    stage of a top-secret view and a grant was issued."""
    no = _new(client, login("zhang.wei"), classification="top_secret", custodian="chen.jing")
    with transaction(api_vault.engine) as session:
        set_roles(session, "chen.jing", ["compliance"])
    assert "information_officer" not in _roles(client, login, "chen.jing")
    req = _view_to_custodian_stage(client, login, no)
    r = client.post(f"/requests/{req['id']}/approve", json={}, headers=login("chen.jing"))
    assert r.status_code in (403, 404), r.text
    state = client.get(f"/requests/{req['id']}", headers=login("li.na")).json()["state"]
    assert state == "pending"


def test_a_replaced_custodian_neither_sees_nor_decides_a_pending_request(
    client, login, more
) -> None:
    """The custodian is replaced (signed by her and the manager's alternate) while a view
    waits at the custodian's stage. ``approve`` re-derives the chain first; visibility
    (the queue) and ``deny`` use the stale ``req.custodian``: the former keeper still
    reads the request's facts and can deny it."""
    no = _new(client, login("zhang.wei"), classification="top_secret", custodian="chen.jing")
    req = _view_to_custodian_stage(client, login, no)
    r = client.post(
        f"/customers/{no}/custodian",
        json={"custodian": "he.io", "reason": "换人"},
        headers=login("xu.ming"),
    )
    assert r.status_code == 202, r.text
    change = r.json()["id"]
    _approve(client, login("chen.jing"), change)
    _approve(client, login("sun.li"), change)
    assert _keeper(client, login, no) == "he.io"
    former = login("chen.jing")
    seen = client.get(f"/requests/{req['id']}", headers=former)
    denied = client.post(f"/requests/{req['id']}/deny", json={"reason": "不同意"}, headers=former)
    assert seen.status_code == 404, seen.text
    assert denied.status_code in (403, 404), denied.text
    assert client.get(f"/requests/{req['id']}", headers=login("li.na")).json()["state"] == "pending"
