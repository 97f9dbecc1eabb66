"""Leak reports over HTTP (Art 27): filed by anyone, handled by two, read by compliance."""

from __future__ import annotations

from sqlmodel import Session, select

from policies.leak_models import LeakCase


def _file(client, login, who="zhang.wei", **extra) -> dict:
    body = {"what_seen": "a client list photographed on a screen", "channel": "messaging"} | extra
    r = client.post("/leaks", json=body, headers=login(who))
    assert r.status_code == 201, r.text
    return r.json()


def test_anyone_files_and_both_handlers_are_told_at_once(client, login) -> None:
    case = _file(client, login, archives=["KH-2026-000001"])
    assert case["state"] == "reported" and "what_seen" not in case
    for handler in ("zhao.lei", "sun.li"):
        notes = client.get("/notifications", headers=login(handler)).json()["items"]
        assert any(case["uid"] in n["message"] for n in notes)
    # Nobody else is told.
    notes = client.get("/notifications", headers=login("chen.jing")).json()["items"]
    assert not any(case["uid"] in n["message"] for n in notes)


def test_the_reporter_sees_only_the_state_others_nothing(client, login) -> None:
    case = _file(client, login)
    own = client.get(f"/leaks/{case['uid']}", headers=login("zhang.wei")).json()
    assert own["state"] == "reported" and "what_seen" not in own and "events" not in own
    for stranger in ("li.na", "head.one", "chen.jing", "admin", "zhou.gm"):
        r = client.get(f"/leaks/{case['uid']}", headers=login(stranger))
        assert r.status_code == 404, stranger
    full = client.get(f"/leaks/{case['uid']}", headers=login("qian.audit")).json()
    assert full["what_seen"] == "a client list photographed on a screen"
    listed = client.get("/leaks", headers=login("li.na")).json()
    assert listed["total"] == 0


def test_the_text_is_sealed_at_rest(client, login, api_vault) -> None:
    case = _file(client, login, what_seen="客户王小明的手机号 13800138000 被发到群里")
    with Session(api_vault.engine) as session:
        row = session.exec(select(LeakCase).where(LeakCase.uid == case["uid"])).one()
    assert b"13800138000" not in bytes(row.what_seen)


def test_a_case_moves_on_with_reasons_and_only_by_the_handlers(client, login) -> None:
    uid = _file(client, login)["uid"]
    move = {"state": "investigating", "reason": "checking the audit trail"}
    for who in ("qian.audit", "zhang.wei", "admin", "chen.jing"):
        r = client.post(f"/leaks/{uid}/state", json=move, headers=login(who))
        assert r.status_code in (403, 404), who
    r = client.post(f"/leaks/{uid}/state", json=move, headers=login("zhao.lei"))
    assert r.status_code == 200, r.text
    r = client.post(
        f"/leaks/{uid}/state", json={"state": "reported", "reason": "x"}, headers=login("sun.li")
    )
    assert r.status_code == 422
    r = client.post(
        f"/leaks/{uid}/actions",
        json={"action": "customers_told", "reason": "phoned"},
        headers=login("sun.li"),
    )
    assert r.status_code == 201, r.text
    r = client.post(
        f"/leaks/{uid}/state",
        json={"state": "closed", "reason": "confirmed leak"},
        headers=login("sun.li"),
    )
    assert r.status_code == 422  # closing names its outcome
    r = client.post(
        f"/leaks/{uid}/state",
        json={"state": "closed", "reason": "confirmed leak", "outcome": "confirmed"},
        headers=login("sun.li"),
    )
    assert r.status_code == 200, r.text
    full = client.get(f"/leaks/{uid}", headers=login("qian.audit")).json()
    assert [e["to_state"] for e in full["events"] if e["kind"] == "state"] == [
        "reported",
        "investigating",
        "closed",
    ]
    assert full["events"][-1]["reason"] == "confirmed leak"
    audit = client.get("/audit", params={"action": "leak:change"}, headers=login("qian.audit"))
    assert audit.status_code == 200 and audit.json()["items"]


def test_bad_reports_are_refused_clearly(client, login) -> None:
    h = login("zhang.wei")
    assert client.post("/leaks", json={"what_seen": ""}, headers=h).status_code == 422
    assert (
        client.post("/leaks", json={"what_seen": "x", "channel": "pigeon"}, headers=h).status_code
        == 422
    )
    r = client.post("/leaks", json={"what_seen": "x", "archives": ["nope"]}, headers=h)
    assert r.status_code == 422 and "archive number" in r.json()["detail"]
    assert client.get("/leaks/LK-NOTACASE00", headers=h).status_code == 422
