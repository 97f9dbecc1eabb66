"""Report scope (DOMAIN.md: a report grant covers the requesting department's
statistics unless the general manager approves all departments). The chain's
general-manager stage has the information supervisor as its alternate, and
``reports.terms`` checks only that the configured chain has a general-manager stage,
not that the general manager signs it. Fails while the hole is open."""

from __future__ import annotations

from tests.api.test_workflow import _approve, _new


def test_all_departments_are_never_approved_without_the_general_manager(client, login) -> None:
    """An administrator disables the general manager (done at once, by one person); an
    all-departments report is then approved by the customer-service manager and the
    information supervisor standing in for the general manager."""
    _new(client, login("zhang.wei"))  # 销售一部: not the requester's department
    r = client.patch("/users/zhou.gm", json={"disabled": True}, headers=login("admin"))
    assert r.status_code == 200, r.text
    wang = login("wang.fang")  # 销售二部
    filed = client.post("/reports", json={"reason": "季度统计", "scope": "all"}, headers=wang)
    if filed.status_code == 201:
        uid = filed.json()["id"]
        _approve(client, login("sun.li"), uid)
        second = client.post(f"/requests/{uid}/approve", json={}, headers=login("zhao.lei"))
        summary = client.get("/reports/summary", params={"grant": uid}, headers=wang)
        assert second.status_code != 200 and summary.status_code != 200, summary.text
    else:
        assert filed.status_code in (403, 409, 422), filed.text
