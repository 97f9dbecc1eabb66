"""A statistical report counts the requesting department unless the general manager
approves all departments (DOMAIN.md), and only the items it names (Art 10-11)."""

from __future__ import annotations

import pytest

from tests.factories import archive


@pytest.fixture
def two_departments(client, login) -> None:
    """Two archives in 销售一部 (one grade A), one in 销售二部."""
    for grade, contacts in (("B", []), ("A", ["li.na"])):
        body = archive(grade=grade, contacts=contacts)
        body.pop("owner")
        assert client.post("/customers", json=body, headers=login("zhang.wei")).status_code == 201
    body = archive(grade="C")
    body.pop("owner")
    body.pop("department")
    assert client.post("/customers", json=body, headers=login("wang.fang")).status_code == 201


def _report(client, headers, expect=201, **body) -> dict:
    body.setdefault("reason", "季度客户统计")
    r = client.post("/reports", json=body, headers=headers)
    assert r.status_code == expect, r.text
    return r.json()


def _sign(client, headers, uid, expect=200) -> None:
    r = client.post(f"/requests/{uid}/approve", json={}, headers=headers)
    # A refused signer gets 403, or 404 when the request is not theirs to see at all.
    assert r.status_code in ((403, 404) if expect == 403 else (expect,)), r.text


def _approved(client, login, headers, **body) -> dict:
    req = _report(client, headers, **body)
    _sign(client, login("sun.li"), req["id"])
    _sign(client, login("zhou.gm"), req["id"])
    return req


def _summary(client, headers, expect=200, **query) -> dict:
    r = client.get("/reports/summary", params=query, headers=headers)
    assert r.status_code == expect, r.text
    return r.json()


def test_a_department_report_counts_only_that_department(client, login, two_departments) -> None:
    head = login("head.two")
    req = _approved(client, login, head)
    assert req["report"] == {"scope": "department", "departments": ["销售二部"], "items": [
        "total", "status", "category", "grade", "classification", "department",
        "new_per_month", "past_retention",
    ]}  # fmt: skip
    out = _summary(client, head)
    assert out["total"] == 1 and out["department"] == {"销售二部": 1}
    assert out["grade"] == {"C": 1}
    assert out["covers"]["departments"] == ["销售二部"] and out["covers"]["scope"] == "department"
    one = login("head.one")
    _approved(client, login, one)
    out = _summary(client, one)
    assert out["total"] == 2 and out["grade"] == {"A": 1, "B": 1}
    assert sum(out["new_per_month"].values()) == 2 and out["past_retention"] == 0


def test_all_departments_need_the_general_manager(client, login, two_departments) -> None:
    head = login("head.one")
    req = _report(client, head, scope="all")
    assert req["report"]["departments"] == "all"
    assert [s["name"] for s in req["stages"]][-1] == "general_manager"
    _sign(client, login("sun.li"), req["id"])
    _summary(client, head, expect=403)  # the customer-service manager alone is not enough
    _sign(client, login("zhou.gm"), req["id"])
    out = _summary(client, head)
    assert out["total"] == 3 and out["covers"]["departments"] == "all"
    assert out["department"] == {"销售一部": 2, "销售二部": 1}


def test_a_salesperson_cannot_widen_a_report_to_all_departments_alone(
    client, login, two_departments
) -> None:
    """The insider: a salesperson files a report of every department and tries to finish
    it, or to read another department's counts through his own department's grant."""
    li = login("li.na")
    req = _report(client, li, scope="all")
    for stage_signer in ("li.na", "zhang.wei", "head.one", "chen.jing"):
        _sign(client, login(stage_signer), req["id"], expect=403)
    _summary(client, li, expect=403)
    own = _approved(client, login, li)
    out = _summary(client, li)
    assert out["total"] == 2 and set(out["department"]) == {"销售一部"}
    # Asking under the pending all-departments request, or someone else's grant, fails.
    r = client.get("/reports/summary", params={"grant": req["id"]}, headers=li)
    assert r.status_code == 404, r.text
    other = _approved(client, login, login("head.two"))
    r = client.get("/reports/summary", params={"grant": other["id"]}, headers=li)
    assert r.status_code == 404, r.text
    assert _summary(client, li, grant=own["id"])["total"] == 2


def test_a_report_returns_only_its_items(client, login, two_departments) -> None:
    head = login("head.one")
    req = _approved(client, login, head, items=["grade", "total"])
    assert req["report"]["items"] == ["total", "grade"]
    out = _summary(client, head)
    assert set(out) == {"total", "grade", "covers"}
    assert out["covers"]["items"] == ["total", "grade"]


def test_changing_items_needs_the_general_manager_and_tells_customer_service(
    client, login, two_departments
) -> None:
    head = login("head.one")
    req = _approved(client, login, head, items=["total"])
    r = client.post(
        f"/reports/{req['id']}/items",
        json={"items": ["total", "classification"], "reason": "增加密级统计"},
        headers=head,
    )
    assert r.status_code == 202, r.text
    change = r.json()
    assert change["kind"] == "report_items" and change["next_signer"] == "the general manager"
    for other in ("head.one", "sun.li", "zhao.lei", "chen.jing"):
        _sign(client, login(other), change["id"], expect=403)
    assert set(_summary(client, head)) == {"total", "covers"}
    notes = client.get("/requests", headers=login("sun.li")).json()["notifications"]
    assert any(n["request"] == change["id"] for n in notes)
    _sign(client, login("zhou.gm"), change["id"])
    assert set(_summary(client, head)) == {"total", "classification", "covers"}


@pytest.mark.parametrize(
    "body",
    [
        {"scope": "everything"},
        {"items": ["names"]},
        {"items": []},
        {"items": "total"},
        {"reason": ""},
        {"purpose": "gossip"},
        {"departments": ["销售二部"]},
        {"hours": 0},
    ],
)
def test_bad_report_requests_are_refused_and_nothing_is_filed(client, login, body) -> None:
    head = login("head.one")
    _report(client, head, expect=422, **body)
    assert client.get("/requests", headers=head).json()["items"] == []


def test_bad_item_changes_are_refused_and_nothing_changes(client, login, two_departments) -> None:
    head = login("head.one")
    req = _approved(client, login, head, items=["total"])
    for uid, body, status in (
        (req["id"], {"items": ["phones"], "reason": "x"}, 422),
        (req["id"], {"items": [], "reason": "x"}, 422),
        (req["id"], {"items": ["grade"]}, 422),
        (req["id"], {"items": ["grade"], "reason": "x", "scope": "all"}, 422),
        (req["id"], {"items": ["total"], "reason": "x"}, 422),
        ("R-NOSUCH01", {"items": ["grade"], "reason": "x"}, 404),
        ("../etc", {"items": ["grade"], "reason": "x"}, 404),
    ):
        r = client.post(f"/reports/{uid}/items", json=body, headers=head)
        assert r.status_code == status, (uid, body, r.text)
    r = client.post(
        f"/reports/{req['id']}/items",
        json={"items": ["grade"], "reason": "x"},
        headers=login("li.na"),
    )
    assert r.status_code == 404, r.text  # another's grant reads as unknown
    kinds = [i["kind"] for i in client.get("/requests", headers=head).json()["items"]]
    assert "report_items" not in kinds
    assert set(_summary(client, head)) == {"total", "covers"}


def test_the_request_route_files_a_report_with_its_scope_and_items_for_the_signers(
    client, login, two_departments
) -> None:
    """``POST /requests`` states a report's scope and items as ``POST /reports`` does, and
    the signers read them in the request's facts."""
    head = login("head.one")
    body = {
        "kind": "report",
        "purpose": "statistics",
        "reason": "季度客户统计",
        "scope": "all",
        "items": ["total", "grade"],
    }
    r = client.post("/requests", json=body, headers=head)
    assert r.status_code == 201, r.text
    uid = r.json()["id"]
    shown = client.get(f"/requests/{uid}", headers=login("sun.li")).json()
    assert shown["facts"]["report"] == {
        "scope": "all",
        "departments": "all",
        "items": ["total", "grade"],
    }
    _sign(client, login("sun.li"), uid)
    _sign(client, login("zhou.gm"), uid)
    out = _summary(client, head)
    assert out["covers"]["items"] == ["total", "grade"] and out["total"] == 3
    assert "category" not in out


@pytest.mark.parametrize(
    "extra",
    [{"scope": "everyone"}, {"items": ["names"]}, {"items": []}],
)
def test_the_request_route_refuses_bad_report_terms(client, login, extra) -> None:
    head = login("head.one")
    before = client.get("/requests", headers=head).json()["items"]
    body = {"kind": "report", "purpose": "statistics", "reason": "统计"} | extra
    r = client.post("/requests", json=body, headers=head)
    assert r.status_code == 422, r.text
    assert client.get("/requests", headers=head).json()["items"] == before


def test_only_a_report_states_a_scope(client, login, two_departments) -> None:
    listed = client.get("/customers", headers=login("zhang.wei")).json()["items"]
    body = {
        "kind": "view",
        "purpose": "customer_service",
        "reason": "回访",
        "archives": [listed[0]["archive_no"]],
        "scope": "all",
    }
    r = client.post("/requests", json=body, headers=login("wang.fang"))
    assert r.status_code == 422 and "scope" in r.json()["detail"]
