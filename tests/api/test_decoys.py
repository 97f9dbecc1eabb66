"""Decoy archives over HTTP (issue 13): any read, search hit or export raises a case at once.

The case is committed before any notice is written; notices are one per decoy per
hour (the rest recorded on the case); ordinary users cannot tell a decoy from
any other archive; only the information supervisor marks or lists decoys.
"""

from __future__ import annotations

import threading

from sqlmodel import Session, select

from policies.leak_models import LeakCase
from tests.api.test_workflow import _approve, _file, _new

HANDLERS = ("zhao.lei", "sun.li")


def _mark(client, login, no: str, who: str = "zhao.lei"):
    return client.post("/detection/decoys", json={"archive_no": no}, headers=login(who))


def _decoy(client, login, **over) -> str:
    no = _new(client, login("zhang.wei"), **over)
    r = _mark(client, login, no)
    assert r.status_code == 201, r.text
    return no


def _cases(client, login) -> list[dict]:
    listed = client.get("/leaks", headers=login("zhao.lei")).json()["items"]
    return [
        client.get(f"/leaks/{c['uid']}", headers=login("zhao.lei")).json()
        for c in listed
        if c["source"] == "detection"
    ]


def _told(client, login, who: str, uid: str) -> int:
    items = client.get("/notifications?limit=200", headers=login(who)).json()["items"]
    return sum(uid in n["message"] for n in items)


def test_a_decoy_read_raises_a_case_saved_before_any_notice(client, login, api_vault) -> None:
    no = _decoy(client, login)
    services = client.app.state.services
    seen: list[str] = []
    tell = services.decoys.alerts.tell

    def checked_tell(session, case_uid, now):
        # Another connection sees the case: it committed before the notice is written.
        with Session(api_vault.engine) as other:
            row = other.exec(select(LeakCase).where(LeakCase.uid == case_uid)).first()
        assert row is not None and row.rule == "decoy"
        seen.append(case_uid)
        return tell(session, case_uid, now)

    services.decoys.alerts.tell = checked_tell
    r = client.get(f"/customers/{no}?groups=contact", headers=login("zhang.wei"))
    assert r.status_code == 200, r.text
    (case,) = _cases(client, login)  # exists when the answer has arrived
    assert seen == [case["uid"]]
    assert case["rule"] == "decoy" and case["account"] == "zhang.wei"
    assert case["archives"] == [no] and case["state"] == "reported"
    assert case["facts"]["how"] == "read" and case["facts"]["outcome"] == "allowed"
    assert set(case["facts"]["window"]) == {"from", "to"}
    for handler in HANDLERS:
        assert _told(client, login, handler, case["uid"]) == 1


def test_a_refused_read_of_a_decoy_raises_one_too(client, login) -> None:
    no = _decoy(client, login)
    r = client.get(f"/customers/{no}", headers=login("wang.fang"))
    assert r.status_code == 403
    (case,) = _cases(client, login)
    assert case["account"] == "wang.fang" and case["facts"]["outcome"] == "denied"


def test_a_decoy_search_hit_raises_a_case(client, login) -> None:
    no = _decoy(client, login)
    r = client.get(
        "/customers/search", params={"mobile": "13800138000"}, headers=login("zhang.wei")
    )
    assert r.status_code == 200 and [a["archive_no"] for a in r.json()["items"]] == [no]
    (case,) = _cases(client, login)
    assert case["facts"]["how"] == "search" and case["archives"] == [no]


def test_a_decoy_export_raises_a_case(client, login) -> None:
    zhang = login("zhang.wei")
    no = _decoy(client, login)
    req = _file(
        client,
        zhang,
        kind="copy",
        archives=[no],
        groups=["identity"],
        purpose="contract_follow_up",
        reason="合同附件",
    )
    _approve(client, login("zhao.lei"), req["id"])
    r = client.post("/exports", json={"request": req["id"]}, headers=zhang)
    assert r.status_code == 200, r.text
    (case,) = _cases(client, login)
    assert case["facts"]["how"] == "export" and case["account"] == "zhang.wei"


def test_notices_are_rate_limited_and_the_rest_recorded(client, login, clock) -> None:
    no = _decoy(client, login)
    zhang = login("zhang.wei")
    for _ in range(5):
        assert client.get(f"/customers/{no}", headers=zhang).status_code == 200
    (case,) = _cases(client, login)  # one case for the account's hour, not five
    hits = [e for e in case["events"] if e["kind"] == "detection" and "hit" in e["detail"]]
    withheld = [e for e in case["events"] if e["detail"].get("notice") == "withheld"]
    assert len(hits) == 4 and len(withheld) == 4
    for handler in HANDLERS:
        assert _told(client, login, handler, case["uid"]) == 1
    # Another account within the hour: its own case, the notice withheld.
    assert client.get(f"/customers/{no}", headers=login("li.na")).status_code == 403
    other = next(c for c in _cases(client, login) if c["account"] == "li.na")
    assert _told(client, login, "zhao.lei", other["uid"]) == 0
    assert any(e["detail"].get("notice") == "withheld" for e in other["events"])
    # An hour on, the next touch tells the handlers again.
    clock.advance(minutes=61)
    assert client.get(f"/customers/{no}", headers=login("zhang.wei")).status_code == 200
    newest = [c for c in _cases(client, login) if c["account"] == "zhang.wei"]
    assert len(newest) == 2
    assert sum(_told(client, login, "zhao.lei", c["uid"]) for c in newest) == 2


def test_concurrent_touches_make_one_case_and_one_notice(client, login) -> None:
    no = _decoy(client, login)
    decoys = client.app.state.services.decoys
    errors: list[BaseException] = []

    def touch() -> None:
        try:
            decoys.touched("zhang.wei", [no], how="read", outcome="allowed")
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=touch) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    (case,) = _cases(client, login)
    assert _told(client, login, "zhao.lei", case["uid"]) == 1
    assert _told(client, login, "sun.li", case["uid"]) == 1


def _shape(value):
    if isinstance(value, dict):
        return {k: _shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_shape(v) for v in value[:1]]
    return type(value).__name__


def test_ordinary_users_cannot_tell_a_decoy(client, login) -> None:
    zhang = login("zhang.wei")
    plain = _new(client, zhang)
    decoy = _decoy(client, login)
    listed = client.get("/customers", headers=zhang).json()["items"]
    by_no = {i["archive_no"]: i for i in listed}
    assert _shape(by_no[plain]) == _shape(by_no[decoy])
    assert {k: v for k, v in by_no[plain].items() if not k.endswith(("_at", "archive_no"))} == {
        k: v for k, v in by_no[decoy].items() if not k.endswith(("_at", "archive_no"))
    }
    reads = [client.get(f"/customers/{n}", headers=zhang) for n in (plain, decoy)]
    assert [r.status_code for r in reads] == [200, 200]
    assert _shape(reads[0].json()) == _shape(reads[1].json())
    decisions = [r.json()["decision"] for r in reads]
    assert decisions[0]["why"].replace(plain, decoy) == decisions[1]["why"]
    assert decisions[0]["basis"] == decisions[1]["basis"] == "owner"
    found = client.get("/customers/search", params={"mobile": "13800138000"}, headers=zhang)
    assert {i["archive_no"] for i in found.json()["items"]} == {plain, decoy}
    assert _shape(found.json()["items"][0]) == _shape(found.json()["items"][1])
    for r in (*reads, found):
        assert "decoy" not in r.text.lower()
    # The read's audit entry is that of any read.
    entries = client.get(
        "/audit?action=archive:read&actor=zhang.wei", headers=login("qian.audit")
    ).json()["items"]
    by_archive = {e["archives"][0]: e for e in entries}
    strip = ("seq", "time", "archives", "entry_hash", "prev_hash", "mac")
    assert {k: v for k, v in by_archive[plain].items() if k not in strip} == {
        k: v for k, v in by_archive[decoy].items() if k not in strip
    }


def test_only_the_supervisor_marks_and_lists_decoys(client, login) -> None:
    no = _new(client, login("zhang.wei"))
    for who in ("zhang.wei", "head.one", "chen.jing", "sun.li", "zhou.gm", "qian.audit", "admin"):
        r = _mark(client, login, no, who)
        assert r.status_code == 403, (who, r.text)
        assert client.get("/detection/decoys", headers=login(who)).status_code == 403
    denied = client.get(
        "/audit?action=detection:decoy-mark&outcome=denied", headers=login("qian.audit")
    ).json()["items"]
    assert len(denied) == 7 and {e["actor"] for e in denied} >= {"admin", "qian.audit"}
    listing = client.get(
        "/audit?action=detection:decoy-list&outcome=denied", headers=login("qian.audit")
    ).json()["items"]
    assert len(listing) == 7
    assert client.get("/detection/decoys", headers=login("zhao.lei")).json()["items"] == []
    # Nothing changed: reading it raises no case.
    assert client.get(f"/customers/{no}", headers=login("zhang.wei")).status_code == 200
    assert _cases(client, login) == []
    assert client.get("/detection/decoys").status_code == 401


def test_marking_checks_its_input(client, login) -> None:
    no = _decoy(client, login)
    assert _mark(client, login, no).status_code == 422  # a decoy already
    assert _mark(client, login, "KH-2026-999999").status_code == 404
    assert _mark(client, login, "KH-26-1").status_code == 422
    listed = client.get("/detection/decoys", headers=login("zhao.lei")).json()["items"]
    assert [d["archive_no"] for d in listed] == [no] and listed[0]["marked_by"] == "zhao.lei"


def test_a_dismissed_alert_stays_listed_as_dismissed(client, login) -> None:
    no = _decoy(client, login)
    client.get(f"/customers/{no}", headers=login("zhang.wei"))
    (case,) = _cases(client, login)
    r = client.post(
        f"/leaks/{case['uid']}/state",
        json={"state": "closed", "outcome": "dismissed", "reason": "a test read by IT"},
        headers=login("zhao.lei"),
    )
    assert r.status_code == 200, r.text
    closed = client.get("/leaks?state=closed", headers=login("qian.audit")).json()["items"]
    assert [(c["uid"], c["outcome"]) for c in closed] == [(case["uid"], "dismissed")]
    again = client.get(f"/leaks/{case['uid']}", headers=login("sun.li")).json()
    assert again["state"] == "closed" and again["outcome"] == "dismissed"


def test_the_sweep_raises_a_lost_decoy_case_and_never_a_second(client, login) -> None:
    lost, kept = _decoy(client, login), _decoy(client, login)
    services = client.app.state.services
    assert client.get(f"/customers/{kept}", headers=login("zhang.wei")).status_code == 200
    inline = services.decoys.touched
    services.decoys.touched = lambda *a, **kw: []  # as if the process died after the read
    try:
        assert client.get(f"/customers/{lost}", headers=login("zhang.wei")).status_code == 200
    finally:
        services.decoys.touched = inline
    assert [c["archives"] for c in _cases(client, login)] == [[kept]]
    swept = services.detect()
    assert len(swept.cases) == 0  # decoy cases are told through the decoy's rate limit
    cases = {c["archives"][0]: c for c in _cases(client, login)}
    assert set(cases) == {lost, kept} and cases[lost]["facts"]["swept"] is True
    assert services.detect().entries == 0
    assert len(_cases(client, login)) == 2
