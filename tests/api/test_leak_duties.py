"""Notification duties of leak cases over HTTP (PIPL Art 57): clocks, notices, the list."""

from __future__ import annotations

from sqlmodel import Session, select

from policies.leak_duty_models import LeakDuty
from tests.factories import archive

CANARY = "CANARY-9f3c 金丝雀"


def _new(client, headers, **over) -> str:
    body = archive(**over)
    body.pop("owner", None)
    r = client.post("/customers", json=body, headers=headers)
    assert r.status_code == 201, r.text
    return r.json()["archive"]["archive_no"]


def _case(client, login, what: str = "a client list in a chat group") -> str:
    r = client.post("/leaks", json={"what_seen": what}, headers=login("zhang.wei"))
    assert r.status_code == 201, r.text
    return r.json()["uid"]


def _duties(client, login, uid: str, who: str = "zhao.lei", **body) -> dict:
    body = {
        "pi_affected": True,
        "customers": 2,
        "groups": ["contact", "identity"],
        "cause": "insider_disclosure",
    } | body
    r = client.post(f"/leaks/{uid}/duties", json=body, headers=login(who))
    assert r.status_code == 200, r.text
    return r.json()


def test_a_case_past_its_regulator_deadline_is_listed_first_and_overdue(
    client, login, clock
) -> None:
    late = _case(client, login)
    clock.advance(minutes=1)
    quiet = _case(client, login)  # newer, no personal information found (yet)
    duty = _duties(client, login, late)
    assert duty["regulator"]["overdue"] is False and duty["overdue"] is False
    aware = duty["aware_at"]
    clock.advance(hours=3, minutes=59)
    listed = client.get("/leaks", headers=login("qian.audit")).json()["items"]
    assert [c["uid"] for c in listed] == [late, quiet]  # a deadline running comes first
    assert listed[0]["overdue"] is False
    clock.advance(minutes=2)  # past 4 h without a notice to the regulator
    for who in ("qian.audit", "sun.li"):
        listed = client.get("/leaks", headers=login(who)).json()["items"]
        assert listed[0]["uid"] == late and listed[0]["overdue"] is True
        assert listed[0]["duties"]["regulator"]["overdue"] is True
        assert listed[0]["duties"]["individuals"]["overdue"] is False
        assert listed[1]["overdue"] is False
    only = client.get("/leaks?overdue=true", headers=login("zhao.lei")).json()
    assert [c["uid"] for c in only["items"]] == [late] and only["total"] == 1
    # Recording the duties again restarts no clock.
    again = _duties(client, login, late, customers=3)
    assert again["aware_at"] == aware and again["regulator"]["overdue"] is True
    # The regulator is told: that clock stops, late.
    r = client.post(
        f"/leaks/{late}/notified",
        json={"whom": "regulator", "reference": "CAC-2026/0042"},
        headers=login("sun.li"),
    )
    assert r.status_code == 201, r.text
    assert r.json()["regulator"]["late"] is True and r.json()["overdue"] is False
    assert client.get("/leaks?overdue=true", headers=login("zhao.lei")).json()["total"] == 0
    clock.advance(hours=69)  # 72 h since awareness: the individuals are owed a notice
    listed = client.get("/leaks", headers=login("qian.audit")).json()["items"]
    assert listed[0]["uid"] == late and listed[0]["duties"]["individuals"]["overdue"] is True
    # A recorded action stamps the same clock.
    r = client.post(
        f"/leaks/{late}/actions", json={"action": "customers_told"}, headers=login("zhao.lei")
    )
    assert r.status_code == 201
    duty = client.get(f"/leaks/{late}/duties", headers=login("qian.audit")).json()
    assert duty["overdue"] is False and duty["individuals"]["notified_at"]
    case = client.get(f"/leaks/{late}", headers=login("qian.audit")).json()
    told = [e["detail"]["action"] for e in case["events"] if e["kind"] == "action"]
    assert told == ["regulator_told", "customers_told"]


def test_the_clock_counts_from_awareness_never_later(client, login, clock) -> None:
    uid = _case(client, login)
    earlier = (clock.now.replace(microsecond=0)).isoformat()
    clock.advance(hours=2)
    duty = _duties(client, login, uid, aware_at=earlier)
    assert duty["aware_at"].startswith(earlier[:19])
    clock.advance(hours=2, minutes=1)
    assert client.get(f"/leaks/{uid}/duties", headers=login("sun.li")).json()["overdue"] is True
    # "Not affected", then "affected" again: still the first awareness, still overdue.
    _duties(client, login, uid, pi_affected=False, customers=0, groups=[])
    assert client.get("/leaks?overdue=true", headers=login("sun.li")).json()["total"] == 0
    duty = _duties(client, login, uid)
    assert duty["aware_at"].startswith(earlier[:19]) and duty["overdue"] is True


def test_the_notice_and_the_affected_list_hold_no_content(client, login, api_vault) -> None:
    no = _new(
        client,
        login("zhang.wei"),
        profile={"name": "王小明", "mobile_phone": "13800138000", "notes": CANARY},
    )
    uid = _case(client, login, what=f"{CANARY} 13800138000 was posted")
    _duties(
        client,
        login,
        uid,
        customers=1,
        archives=[no],
        groups=["contact", "credentials", "notes"],
        reason=CANARY,
    )
    client.post(
        f"/leaks/{uid}/contain",
        json={"account": "li.na", "reason": CANARY},
        headers=login("zhao.lei"),
    )
    for who in ("zhao.lei", "qian.audit"):
        r = client.get(f"/leaks/{uid}/notice", headers=login(who))
        assert r.status_code == 200, r.text
        body = r.text
        assert "CANARY" not in body and "金丝雀" not in body
        assert "13800138000" not in body and "王小明" not in body
        text = r.json()["text"]
        assert "联系方式" in text["zh"] and "证件" in text["zh"] and uid in text["zh"]
        assert "Identity documents" in text["en"] and "Contact" in text["en"]
        assert "revoked the access tokens" in text["en"]  # the measures taken
        r = client.get(f"/leaks/{uid}/affected", headers=login(who))
        assert r.status_code == 200
        assert r.json()["archives"] == [no] and "audited" in r.json()["contact_details"]
        assert "CANARY" not in r.text and "13800138000" not in r.text
    # At rest, the duties hold numbers and names only.
    with Session(api_vault.engine) as s:
        duty = s.exec(select(LeakDuty)).one()
        assert CANARY not in repr(duty.model_dump())
    log = client.get("/audit?action=leak:change", headers=login("qian.audit")).text
    assert "CANARY" not in log


def test_only_handlers_record_duties_and_only_they_and_compliance_read_them(client, login) -> None:
    uid = _case(client, login)
    body = {"pi_affected": True, "customers": 1, "groups": ["contact"]}
    notice = {"whom": "regulator"}
    for who in ("zhang.wei", "qian.audit"):  # see the case, may not act: 403
        assert client.post(f"/leaks/{uid}/duties", json=body, headers=login(who)).status_code == 403
        assert (
            client.post(f"/leaks/{uid}/notified", json=notice, headers=login(who)).status_code
            == 403
        )
    for who in ("li.na", "admin", "chen.jing", "zhou.gm"):  # no such case
        assert client.post(f"/leaks/{uid}/duties", json=body, headers=login(who)).status_code == 404
        for path in ("duties", "notice", "affected"):
            assert client.get(f"/leaks/{uid}/{path}", headers=login(who)).status_code == 404
    # The reporter sees the state of their report, not its duties or notice.
    for path in ("duties", "notice", "affected"):
        assert client.get(f"/leaks/{uid}/{path}", headers=login("zhang.wei")).status_code == 404
    duty = client.get(f"/leaks/{uid}/duties", headers=login("qian.audit")).json()
    assert duty["recorded"] is False and duty["pi_affected"] is False
    denied = client.get(
        "/audit?action=leak:change&outcome=denied", headers=login("qian.audit")
    ).json()["items"]
    assert {e["actor"] for e in denied} >= {"zhang.wei", "qian.audit"}
    own = client.get("/leaks", headers=login("zhang.wei")).json()["items"]
    assert "duties" not in own[0] and "overdue" not in own[0]


def test_bad_duties_and_notices_are_422_and_change_nothing(client, login, clock) -> None:
    uid = _case(client, login)
    h = login("zhao.lei")
    future = (clock.now.replace(year=clock.now.year + 1)).isoformat()
    for bad in (
        {"pi_affected": True, "customers": 0, "groups": ["contact"]},
        {"pi_affected": True, "customers": 2, "groups": []},
        {"pi_affected": True, "customers": 2, "groups": ["gossip"]},
        {"pi_affected": True, "customers": 1, "groups": ["contact"], "archives": ["nope"]},
        {
            "pi_affected": True,
            "customers": 1,
            "groups": ["contact"],
            "archives": ["KH-2026-000001", "KH-2026-000002"],
        },
        {"pi_affected": True, "customers": 1, "groups": ["contact"], "cause": "gremlins"},
        {"pi_affected": True, "customers": 1, "groups": ["contact"], "aware_at": future},
        {"pi_affected": True, "customers": 1, "groups": ["contact"], "aware_at": "2026-01-01"},
        # Valid ISO, but before year 1 once taken to UTC: a 422, not an OverflowError.
        {
            "pi_affected": True,
            "customers": 1,
            "groups": ["contact"],
            "aware_at": "0001-01-01T00:00:00+12:00",
        },
        {"pi_affected": False, "customers": 3},
        {"pi_affected": True, "customers": -1, "groups": ["contact"]},
        {"customers": 1},
        {"pi_affected": True, "customers": 1, "groups": ["contact"], "extra": True},
    ):
        r = client.post(f"/leaks/{uid}/duties", json=bad, headers=h)
        assert r.status_code == 422, (bad, r.text)
    # No duties recorded: a notice cannot be recorded against them.
    r = client.post(f"/leaks/{uid}/notified", json={"whom": "regulator"}, headers=h)
    assert r.status_code == 422 and "affected" in r.json()["detail"]
    assert client.get(f"/leaks/{uid}/duties", headers=h).json()["recorded"] is False
    _duties(client, login, uid)
    for bad in (
        {"whom": "press"},
        {"whom": "regulator", "at": future},
        {"whom": "regulator", "at": "0001-01-01T00:00:00+12:00"},  # no UTC form
        {"whom": "regulator", "reference": "<script>"},
        {"whom": "regulator", "customers": 1},
        {"whom": "individuals", "customers": 99},
    ):
        r = client.post(f"/leaks/{uid}/notified", json=bad, headers=h)
        assert r.status_code == 422, (bad, r.text)
    duty = client.get(f"/leaks/{uid}/duties", headers=h).json()
    assert duty["regulator"]["notified_at"] is None and duty["individuals"]["notified_at"] is None
