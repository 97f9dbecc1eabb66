"""Attacks on leak cases by the account a case is about. A handler (here the
customer-service manager) who touches a decoy is the account of the case it raises;
as a handler they were told of it, saw which archive was the decoy, could cut the
other handler off from their own case and close it as dismissed: one person clearing
themselves. Each test fails while the hole is open."""

from __future__ import annotations

from tests.api.test_decoys import _decoy


def _case_about(client, login, who: str) -> str:
    """The decoy case raised against ``who``, as the other handler lists it."""
    r = client.get("/leaks", headers=login("zhao.lei"))
    assert r.status_code == 200, r.text
    (uid,) = [c["uid"] for c in r.json()["items"] if c["rule"] == "decoy"]
    r = client.get(f"/leaks/{uid}", headers=login("zhao.lei"))
    assert r.status_code == 200 and r.json()["account"] == who, r.text
    return uid


def test_a_handler_neither_sees_nor_closes_a_case_about_themselves(client, login) -> None:
    """``POST /leaks/{uid}/state`` by the suspect handler closed it (200, dismissed), and
    ``…/contain`` let them end the other handler's sessions; they were told of it and
    read its facts (the decoy's number). Now the case is unknown to them (404), as to
    anyone else, while the other handler and compliance see it whole."""
    no = _decoy(client, login)
    manager = login("sun.li")
    assert client.get(f"/customers/{no}", headers=manager).status_code == 403
    uid = _case_about(client, login, "sun.li")

    listed = client.get("/leaks", headers=manager).json()
    assert [c["uid"] for c in listed["items"]] == [] and listed["total"] == 0
    notes = client.get("/notifications", headers=manager).json()["items"]
    assert not [n for n in notes if n["event"].startswith("leak")], notes
    assert client.get(f"/leaks/{uid}", headers=manager).status_code == 404
    assert client.get(f"/leaks/{uid}/evidence", headers=manager).status_code == 404
    r = client.post(
        f"/leaks/{uid}/contain",
        json={"account": "zhao.lei", "reason": "干扰调查"},
        headers=manager,
    )
    assert r.status_code == 404, r.text
    r = client.post(
        f"/leaks/{uid}/state",
        json={"state": "closed", "outcome": "dismissed", "reason": "误报"},
        headers=manager,
    )
    assert r.status_code == 404, r.text

    for who in ("zhao.lei", "qian.audit"):
        case = client.get(f"/leaks/{uid}", headers=login(who)).json()
        assert case["state"] == "reported" and case["account"] == "sun.li"
    r = client.post(
        f"/leaks/{uid}/state",
        json={"state": "investigating", "reason": "核查"},
        headers=login("zhao.lei"),
    )
    assert r.status_code == 200, r.text
