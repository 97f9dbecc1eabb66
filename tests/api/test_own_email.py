"""PUT /me/email as an insider would try it: the route names no one, so a colleague's
address (where their notices, loan notices among them, are mailed) cannot be set
through it; bad addresses are a 422 that changes nothing."""

from __future__ import annotations

from sqlmodel import Session, select

from audit.events import AuditAction
from tests.auditlog import entries
from vault.models import User


def _emails(api_vault) -> dict[str, str | None]:
    with Session(api_vault.engine) as s:
        return {u.username: u.email for u in s.exec(select(User)).all()}


def _email_changes(client) -> list[tuple[str, dict]]:
    return [
        (e.actor, e.detail)
        for e in entries(client.app.state.services.audit)
        if e.action == AuditAction.USER_CHANGE and e.detail.get("op") == "set_email"
    ]


def test_nobody_sets_a_colleagues_address_through_me(client, login, api_vault) -> None:
    zhang, li = login("zhang.wei"), login("li.na")
    mine = "zhang.wei@corp.example.com"
    assert client.put("/me/email", json={"email": "li.na@corp.example.com"}, headers=li).is_success
    before = _emails(api_vault)
    # the body names no one: a username in it is refused as an unknown field
    r = client.put("/me/email", json={"email": mine, "username": "li.na"}, headers=zhang)
    assert r.status_code == 422 and "username" in r.text, r.text
    # nor does the path or the query
    assert client.put("/me/li.na/email", json={"email": mine}, headers=zhang).status_code in (
        404,
        405,
    )
    assert _emails(api_vault) == before
    r = client.put("/me/email", params={"username": "li.na"}, json={"email": mine}, headers=zhang)
    assert r.status_code == 200 and r.json() == {"username": "zhang.wei", "email": mine}
    after = _emails(api_vault)
    assert after["li.na"] == "li.na@corp.example.com" and after["zhang.wei"] == mine
    assert {k: v for k, v in after.items() if k != "zhang.wei"} == {
        k: v for k, v in before.items() if k != "zhang.wei"
    }
    # an administrator, too, sets only his own
    r = client.put("/me/email", json={"email": "it.admin@corp.example.com"}, headers=login("admin"))
    assert r.json()["username"] == "admin" and _emails(api_vault)["li.na"] == (
        "li.na@corp.example.com"
    )
    # nobody was told of their own change; every change is audited by its holder
    notes = client.get("/notifications", headers=li).json()["items"]
    assert not [n for n in notes if n["event"] == "email_changed"]
    assert [(a, d["user"], d["by_holder"]) for a, d in _email_changes(client)] == [
        ("li.na", "li.na", True),
        ("zhang.wei", "zhang.wei", True),
        ("admin", "admin", True),
    ]
    assert client.put("/me/email", json={"email": mine}).status_code == 401


def test_bad_addresses_are_refused_and_change_nothing(client, login, api_vault) -> None:
    zhang = login("zhang.wei")
    assert client.put("/me/email", json={"email": "z@corp.example.com"}, headers=zhang).is_success
    before, audited = _emails(api_vault), len(_email_changes(client))
    for body in (
        {"email": "not-an-address"},
        {"email": "x@y"},
        {"email": "a@b.example.com\r\nBcc: c@d.example.com"},
        {"email": ""},
        {"email": 7},
        {"email": ["z@corp.example.com"]},
        {},
    ):
        r = client.put("/me/email", json=body, headers=zhang)
        assert r.status_code == 422 and "email" in r.text, (body, r.text)
    assert client.put("/me/email", content=b"not json", headers=zhang).status_code == 422
    assert _emails(api_vault) == before
    assert len(_email_changes(client)) == audited
    # null clears one's own address
    r = client.put("/me/email", json={"email": None}, headers=zhang)
    assert r.status_code == 200 and r.json()["email"] is None
    assert _emails(api_vault)["zhang.wei"] is None
