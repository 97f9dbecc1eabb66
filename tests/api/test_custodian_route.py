"""POST /customers/{no}/custodian, a leaving custodian's handover and the disabling of a
custodian, over HTTP: nobody alone names a custodian; a secret archive is never left
without one (Art 22)."""

from __future__ import annotations

import pytest

from foundation.db import transaction
from policies.directory import add_user
from tests.api.conftest import _HASH
from tests.factories import archive


@pytest.fixture
def more(api_vault):
    """Three more information officers and a head of the customer-service department."""
    with transaction(api_vault.engine) as session:
        for name, roles in (
            ("xu.ming", ["information_officer"]),
            ("he.io", ["information_officer"]),
            ("qin.io", ["information_officer"]),
            ("head.cs", ["department_head"]),
        ):
            user = add_user(
                session, username=name, roles=roles, department="客户服务部", clearance="top_secret"
            )
            user.password_hash = _HASH
            session.add(user)


def _new(client, login, **over) -> str:
    body = archive(**over)
    body.pop("owner", None)
    r = client.post("/customers", json=body, headers=login("zhang.wei"))
    assert r.status_code == 201, r.text
    return r.json()["archive"]["archive_no"]


def _keeper(client, login, no) -> str | None:
    r = client.get("/customers", params={"owner": "zhang.wei"}, headers=login("xu.ming"))
    return next(i["custodian"] for i in r.json()["items"] if i["archive_no"] == no)


def _sign(client, headers, uid, expect=200) -> dict:
    r = client.post(f"/requests/{uid}/approve", json={}, headers=headers)
    assert r.status_code == expect, r.text
    return r.json()


def _denied(client, login, no) -> int:
    r = client.get(
        "/audit", params={"archive": no, "outcome": "denied"}, headers=login("qian.audit")
    )
    assert r.status_code == 200, r.text
    return len(r.json()["items"])


def _custodian(client, headers, no, who, reason="换人"):
    return client.post(
        f"/customers/{no}/custodian", json={"custodian": who, "reason": reason}, headers=headers
    )


def test_a_new_custodian_is_a_request_the_current_one_signs(client, login, more) -> None:
    no = _new(client, login, classification="secret", custodian="chen.jing")
    r = _custodian(client, login("sun.li"), no, "xu.ming")
    assert r.status_code == 202, r.text
    req = r.json()
    assert req["kind"] == "reclassify" and req["state"] == "pending"
    assert req["change"]["custodian"] == {"from": "chen.jing", "to": "xu.ming"}
    assert req["change"]["classification"] == {"from": "secret", "to": "secret"}
    assert [s["name"] for s in req["stages"]] == ["custodian"]
    assert _keeper(client, login, no) == "chen.jing"
    _sign(client, login("xu.ming"), req["id"], 404)  # the beneficiary never signs
    _sign(client, login("sun.li"), req["id"], 403)  # nor the filer
    done = _sign(client, login("chen.jing"), req["id"])
    assert done["state"] == "approved" and done["change"]["applied"]["custodian"] == "xu.ming"
    assert _keeper(client, login, no) == "xu.ming"


def test_a_custodian_handing_on_a_top_secret_archive_signs_nothing(client, login, more) -> None:
    no = _new(client, login, classification="top_secret", custodian="chen.jing")
    r = _custodian(client, login("chen.jing"), no, "xu.ming")
    assert r.status_code == 202, r.text
    req = r.json()
    # the custodian filed it: the supervisor signs in their place; top-secret: the manager too
    assert [s["name"] for s in req["stages"]] == ["custodian", "cs_manager"]
    _sign(client, login("chen.jing"), req["id"], 403)
    _sign(client, login("zhao.lei"), req["id"])
    assert _keeper(client, login, no) == "chen.jing"
    _sign(client, login("sun.li"), req["id"])
    assert _keeper(client, login, no) == "xu.ming"


@pytest.mark.parametrize(
    ("filer", "candidate", "status"),
    [
        ("sun.li", "zhang.wei", 422),  # the salesperson who owns it
        ("sun.li", "head.one", 422),  # not an information officer or the supervisor
        ("sun.li", "admin", 403),  # administrators never keep archives
        ("sun.li", "nobody.here", 422),
        ("sun.li", "chen.jing", 422),  # already its custodian
        ("xu.ming", "xu.ming", 403),  # nobody names themselves
        ("zhang.wei", "xu.ming", 403),  # the owner cannot choose their keeper
        ("head.one", "xu.ming", 403),
        ("admin", "xu.ming", 403),
    ],
)
def test_a_refused_custodian_changes_nothing_and_is_audited(
    client, login, more, filer, candidate, status
) -> None:
    no = _new(client, login, classification="secret", custodian="chen.jing")
    before = _denied(client, login, no)
    r = _custodian(client, login(filer), no, candidate)
    assert r.status_code == status, r.text
    assert _keeper(client, login, no) == "chen.jing"
    assert _denied(client, login, no) == before + 1
    pending = client.get("/requests", params={"role": "to_approve"}, headers=login("chen.jing"))
    assert pending.json()["items"] == []


def test_a_disabled_officer_is_not_named(client, login, more) -> None:
    no = _new(client, login, classification="secret", custodian="chen.jing")
    r = client.patch("/users/he.io", json={"disabled": True}, headers=login("admin"))
    assert r.status_code == 200, r.text
    r = _custodian(client, login("sun.li"), no, "he.io")
    assert r.status_code == 422 and "disabled" in r.json()["detail"]


def test_an_internal_archive_has_no_custodian(client, login, more) -> None:
    no = _new(client, login)
    r = _custodian(client, login("sun.li"), no, "xu.ming")
    assert r.status_code == 422 and "internal" in r.json()["detail"]


def test_bad_input_is_a_clear_4xx(client, login, more) -> None:
    no = _new(client, login, classification="secret", custodian="chen.jing")
    officer = login("sun.li")
    for body in ({"custodian": "xu.ming"}, {"custodian": "xu.ming", "reason": ""}, {"x": 1}):
        r = client.post(f"/customers/{no}/custodian", json=body, headers=officer)
        assert r.status_code == 422, r.text
    assert _custodian(client, officer, "KH-2026-999999", "xu.ming").status_code == 404


def test_raising_names_a_valid_custodian(client, login, more) -> None:
    no = _new(client, login)
    officer = login("chen.jing")
    for custodian, words in ((None, "custodian"), ("zhang.wei", "Art 22")):
        body = {"classification": "top_secret", "reason": "重要客户"}
        if custodian:
            body["custodian"] = custodian
        r = client.post(f"/customers/{no}/classification", json=body, headers=officer)
        assert r.status_code == 422 and words in r.json()["detail"], r.text
    r = client.post(
        f"/customers/{no}/classification",
        json={"classification": "secret", "custodian": "xu.ming", "reason": "重要客户"},
        headers=officer,
    )
    assert r.status_code == 200 and r.json()["custodian"] == "xu.ming"
    # lowering it again clears the custodian once signed
    r = client.post(
        f"/customers/{no}/classification",
        json={"classification": "internal", "reason": "降密"},
        headers=officer,
    )
    assert r.status_code == 202, r.text
    assert r.json()["change"]["custodian"] == {"from": "xu.ming", "to": None}
    _sign(client, login("xu.ming"), r.json()["id"])
    assert _keeper(client, login, no) is None


# -- a custodian who leaves ------------------------------------------------------------------


def test_a_custodian_is_not_disabled_while_keeping_archives(client, login, more) -> None:
    _new(client, login, classification="secret", custodian="chen.jing")
    _new(client, login, classification="top_secret", custodian="chen.jing")
    admin = login("admin")
    r = client.patch("/users/chen.jing", json={"disabled": True}, headers=admin)
    assert r.status_code == 409, r.text
    assert "2 active archive" in r.json()["detail"] and "handover" in r.json()["detail"]
    assert client.get("/me", headers=login("chen.jing")).status_code == 200
    # nor do they lose the role that lets them keep archives
    r = client.patch("/users/chen.jing", json={"roles": ["compliance"]}, headers=admin)
    assert r.status_code == 409, r.text
    assert client.get("/me", headers=login("chen.jing")).json()["roles"] == ["information_officer"]
    denied = client.get(
        "/audit",
        params={"action": "user:change", "outcome": "denied"},
        headers=login("qian.audit"),
    ).json()["items"]
    assert any(e["detail"].get("user") == "chen.jing" for e in denied)


def test_a_leaving_custodian_hands_each_archive_to_a_successor(client, login, more) -> None:
    one = _new(client, login, classification="secret", custodian="chen.jing")
    two = _new(client, login, classification="top_secret", custodian="chen.jing")
    admin = login("admin")
    r = client.post("/users/chen.jing/handover", json={}, headers=admin)
    assert r.status_code == 422 and one in r.json()["detail"] and two in r.json()["detail"]
    r = client.post(
        "/users/chen.jing/handover", json={"custodians": {one: "zhang.wei"}}, headers=admin
    )
    assert r.status_code == 422, r.text
    r = client.post(
        "/users/chen.jing/handover",
        json={"custodians": {one: "xu.ming"}, "custodian_to": "he.io"},
        headers=admin,
    )
    assert r.status_code == 202, r.text
    req = r.json()
    assert req["change"]["custodians"] == {one: "xu.ming", two: "he.io"}
    assert [s["name"] for s in req["stages"]] == [
        "department_head",
        "information_officer",
        "cs_manager",
        "custodian",
    ]
    _sign(client, admin, req["id"], 403)  # the administrator starts it, never finishes it
    _sign(client, login("head.cs"), req["id"])
    _sign(client, login("xu.ming"), req["id"], 404)  # a successor never signs
    _sign(client, login("he.io"), req["id"], 404)
    _sign(client, login("zhao.lei"), req["id"], 403)  # sees every request; signs in order
    assert _keeper(client, login, one) == "chen.jing"
    _sign(client, login("chen.jing"), req["id"], 404)  # the leaver signs nothing of it
    _sign(client, login("qin.io"), req["id"])
    _sign(client, login("sun.li"), req["id"])
    done = _sign(client, login("zhao.lei"), req["id"])  # for the custodian, who leaves
    assert done["state"] == "approved"
    assert _keeper(client, login, one) == "xu.ming" and _keeper(client, login, two) == "he.io"
    assert client.get("/me", headers=login("chen.jing")).status_code == 401
