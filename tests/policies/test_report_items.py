"""Report grants cover their departments and items (Art 10); the items change only
with the general manager's signature, recorded with customer service (Art 11)."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest
from sqlmodel import Session, select

from foundation.db import transaction
from policies import report_items, reports
from policies.directory import add_user
from policies.errors import InvalidInput, NotFound, Refused
from policies.models import AccessGrant, AccessRequest, Notification
from policies.visibility import visible_request
from tests.auditlog import entries
from tests.policies.conftest import T0
from vault.archives import REPORT_ITEMS


def _report(wf, db, principal, **kw) -> AccessRequest:
    with transaction(db) as s:
        return wf.filing.file(
            s, principal, kind="report", purpose="statistics", reason="季度统计", now=T0, **kw
        )


def _sign(wf, db, uid, principal, at=T0) -> AccessRequest:
    with transaction(db) as s:
        return wf.signing.approve(s, uid, principal, now=at)


def _granted(wf, db, who, requester="dh_sales", **kw) -> AccessGrant:
    req = _report(wf, db, who(requester), **kw)
    _sign(wf, db, req.uid, who("csm"))
    _sign(wf, db, req.uid, who("gm"))
    with Session(db) as s:
        return s.exec(select(AccessGrant).where(AccessGrant.request_uid == req.uid)).one()


def _change(wf, db, principal, target, items, reason="增加按月新增") -> AccessRequest:
    with transaction(db) as s:
        return report_items.file_items_change(
            wf, s, principal, target=target, items=items, reason=reason, now=T0
        )


def test_a_report_grant_records_its_department_and_items(wf, db, who) -> None:
    grant = _granted(wf, db, who, items=["grade", "total"])
    assert grant.report_scope == "department"
    assert grant.report_departments == ["sales"]
    assert grant.report_items == ["total", "grade"]  # the report's own order
    everything = _granted(wf, db, who, requester="dh_east", scope="all")
    assert everything.report_scope == "all" and everything.report_departments is None
    assert everything.report_items == list(REPORT_ITEMS)


@pytest.mark.parametrize(
    ("over", "words"),
    [
        ({"scope": "everything"}, "scope must be one of"),
        ({"items": ["names"]}, "unknown report item names"),
        ({"items": []}, "at least one item"),
        ({"items": "total"}, "must be a list"),
    ],
)
def test_bad_report_terms_are_refused_and_nothing_is_filed(wf, db, who, over, words) -> None:
    with pytest.raises(InvalidInput, match=words):
        _report(wf, db, who("dh_sales"), **over)
    with Session(db) as s:
        assert s.exec(select(AccessRequest)).all() == []


def test_only_a_report_states_a_scope_or_items(wf, db, who) -> None:
    with pytest.raises(InvalidInput, match="only a report request"), transaction(db) as s:
        wf.filing.file(
            s,
            who("bob"),
            kind="view",
            purpose="customer_service",
            reason="回访",
            now=T0,
            archives=["A-INT"],
            scope="all",
        )


def test_all_departments_are_refused_by_a_chain_without_the_general_manager(wf, who) -> None:
    """A reconfigured report chain that drops the general manager cannot carry a report
    of every department: DOMAIN.md gives that to the general manager alone."""
    stages = wf.chains.kind("report").stages
    without = tuple(s for s in stages if "general_manager" not in s.roles)
    with pytest.raises(InvalidInput, match="general manager"):
        reports.terms("report", who("dh_sales"), scope="all", items=None, stages=without)
    assert reports.terms("report", who("dh_sales"), scope=None, items=None, stages=without)[
        "report_departments"
    ] == ["sales"]
    lonely = replace(who("dh_sales"), department="")
    with pytest.raises(InvalidInput, match="no department"):
        reports.terms("report", lonely, scope=None, items=None, stages=stages)


def test_changing_items_is_signed_by_the_general_manager_alone(wf, db, who, sink) -> None:
    grant = _granted(wf, db, who, items=["total"])
    req = _change(wf, db, who("dh_sales"), grant.request_uid, ["total", "new_per_month"])
    assert req.kind == "report_items" and req.state == "pending"
    assert [s["name"] for s in req.stages] == ["general_manager"]
    # Art 11: recorded with the customer-service department.
    with Session(db) as s:
        told = s.exec(select(Notification).where(Notification.request_uid == req.uid)).all()
    assert {n.recipient for n in told} >= {"csm", "dh_sales"}
    for other in ("csm", "sup", "io", "dh_sales"):
        with pytest.raises(Refused), transaction(db) as s:
            wf.signing.approve(s, req.uid, who(other), now=T0)
    with Session(db) as s:
        assert s.get(AccessGrant, grant.id).report_items == ["total"]  # nothing yet
    done = _sign(wf, db, req.uid, who("gm"))
    assert done.state == "approved"
    with Session(db) as s:
        assert s.get(AccessGrant, grant.id).report_items == ["total", "new_per_month"]
    changed = [e for e in entries(sink) if e.detail.get("op") == "report-items"]
    assert changed and changed[-1].actor == "gm" and changed[-1].grant_id == grant.uid


def test_the_general_managers_own_change_goes_to_the_supervisor(wf, db, who) -> None:
    """Nobody signs their own request: the general manager's change of the items of
    his own report is signed by the customer-information supervisor."""
    with transaction(db) as s:
        add_user(s, username="gm2", roles=["general_manager"], department="board")
    req = _report(wf, db, who("gm"), scope="all")
    _sign(wf, db, req.uid, who("csm"))
    _sign(wf, db, req.uid, who("gm2"))
    change = _change(wf, db, who("gm"), req.uid, ["total"])
    assert change.stages[0]["roles"] == ["info_supervisor"]
    with pytest.raises(Refused):
        _sign(wf, db, change.uid, who("gm"))
    assert _sign(wf, db, change.uid, who("sup")).state == "approved"


def test_bad_item_changes_are_refused_and_nothing_changes(wf, db, who) -> None:
    grant = _granted(wf, db, who, items=["total"])
    with pytest.raises(NotFound):  # someone else's grant reads as unknown
        _change(wf, db, who("dh_east"), grant.uid, ["grade"])
    with pytest.raises(NotFound):
        _change(wf, db, who("dh_sales"), "G-NOSUCH", ["grade"])
    with pytest.raises(InvalidInput, match="unknown report item"):
        _change(wf, db, who("dh_sales"), grant.uid, ["phone"])
    with pytest.raises(InvalidInput, match="already covers"):
        _change(wf, db, who("dh_sales"), grant.uid, ["total"])
    with pytest.raises(InvalidInput, match="reason"):
        _change(wf, db, who("dh_sales"), grant.uid, ["grade"], reason=" ")
    with Session(db) as s:
        assert not s.exec(select(AccessRequest).where(AccessRequest.kind == "report_items")).all()


def test_a_change_to_an_ended_grant_is_refused_at_signature(wf, db, who) -> None:
    grant = _granted(wf, db, who, items=["total"])
    req = _change(wf, db, who("dh_sales"), grant.uid, ["grade"])
    with pytest.raises(Refused, match="report grant"):
        _sign(wf, db, req.uid, who("gm"), at=grant.not_after + timedelta(hours=1))
    with Session(db) as s:
        assert s.get(AccessGrant, grant.id).report_items == ["total"]


def test_the_customer_service_manager_sees_the_change_told_to_them(wf, db, who) -> None:
    """Art 11 records a change of items with the customer-service department: the
    manager told of it can open it, yet signs nothing, and nobody else gains sight."""
    grant = _granted(wf, db, who, items=["total"])
    req = _change(wf, db, who("dh_sales"), grant.request_uid, ["total", "new_per_month"])
    with Session(db) as s:
        told = s.exec(select(Notification).where(Notification.request_uid == req.uid)).all()
        assert "csm" in {n.recipient for n in told}
        assert visible_request(s, wf.signing, who("csm"), req.uid, now=T0).uid == req.uid
        for other in ("io", "bob", "dh_east", "adm"):
            with pytest.raises(NotFound):
                visible_request(s, wf.signing, who(other), req.uid, now=T0)
    with pytest.raises(Refused), transaction(db) as s:
        wf.signing.approve(s, req.uid, who("csm"), now=T0)
