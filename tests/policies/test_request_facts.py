"""Facts for signers, counted copies and the register search, at the policies level,
on SQLite and PostgreSQL (the ``engine`` fixture runs each test on both)."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
import sqlalchemy as sa
from sqlmodel import Session, select

from foundation.db import transaction
from policies import copies, roster
from policies.errors import InvalidInput, NotFound, Refused
from policies.models import AccessGrant
from policies.request_facts import facts_for
from policies.visibility import RequestQuery, search_requests, visible_request
from tests.policies.conftest import T0

H = timedelta(hours=1)


@pytest.fixture
def flow(db, wf):
    return wf


def _file(db, wf, who, requester, kind, archives, at=T0, **kw):
    purpose = {"report": "statistics"}.get(kind, "revisit")
    with transaction(db) as s:
        return wf.filing.file(
            s,
            who(requester),
            kind=kind,
            archives=archives,
            purpose=purpose,
            reason="the customer asked for it",
            now=at,
            **kw,
        )


def _approve(db, wf, who, uid, *signers, **kw):
    req = None
    for signer in signers:
        with transaction(db) as s:
            req = wf.signing.approve(s, uid, who(signer), now=T0 + H, **kw)
    return req


# -- what a request records ------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "fmt", "n", "expected"),
    [
        ("copy", None, 0, ("json", 1)),
        ("copy", "csv", 3, ("csv", 3)),
        ("external", "json", 100, ("json", 100)),
        ("view", None, 0, ("", 0)),
        ("loan", None, 2, ("", 2)),
    ],
)
def test_export_terms(kind, fmt, n, expected) -> None:
    assert copies.export_terms(kind, fmt, n) == expected


@pytest.mark.parametrize(
    ("kind", "fmt", "n", "names"),
    [
        ("copy", "xml", 1, "format"),
        ("copy", "csv", 101, "copies"),
        ("external", "csv", -1, "copies"),
        ("view", "csv", 0, "format"),
    ],
)
def test_export_terms_refused(kind, fmt, n, names) -> None:
    with pytest.raises(InvalidInput, match=names):
        copies.export_terms(kind, fmt, n)


def test_an_approver_narrows_copies_and_the_grant_carries_them(db, wf, who) -> None:
    req = _file(db, wf, who, "carol", "copy", ["A-INT"], export_format="csv", copies=5)
    assert (req.export_format, req.copies) == ("csv", 5)
    with pytest.raises(Refused) as widen, transaction(db) as s:
        wf.signing.approve(s, req.uid, who("sup"), now=T0 + H, copies=6)
    assert widen.value.rule == "widen"
    with pytest.raises(InvalidInput), transaction(db) as s:
        wf.signing.approve(s, req.uid, who("sup"), now=T0 + H, copies=0)
    done = _approve(db, wf, who, req.uid, "sup", copies=2)
    assert done.state == "approved" and done.copies == 2
    with Session(db) as s:
        grant = s.exec(select(AccessGrant).where(AccessGrant.request_uid == req.uid)).one()
    assert (grant.copies, grant.copies_used) == (2, 0)


def test_a_view_request_has_no_copies_to_narrow(db, wf, who) -> None:
    req = _file(db, wf, who, "carol", "view", ["A-INT"])
    with pytest.raises(InvalidInput, match="copies"), transaction(db) as s:
        wf.signing.approve(s, req.uid, who("dh_east"), now=T0 + H, copies=1)


def _grant(db, wf, who, n):
    req = _file(db, wf, who, "carol", "copy", ["A-INT"], copies=n)
    _approve(db, wf, who, req.uid, "gm")
    with Session(db) as s:
        return s.exec(select(AccessGrant).where(AccessGrant.request_uid == req.uid)).one()


def test_copies_are_taken_one_by_one_and_never_past_n(db, wf, who) -> None:
    grant = _grant(db, wf, who, 2)
    taken = []
    for _ in range(3):
        with transaction(db) as s:
            taken.append(copies.take_copy(s, grant))
    assert taken == [1, 2, None]
    # a rolled-back export gives its copy back
    grant = _grant(db, wf, who, 1)
    with pytest.raises(RuntimeError), transaction(db) as s:
        assert copies.take_copy(s, grant) == 1
        raise RuntimeError("the export failed after taking its copy")
    with transaction(db) as s:
        assert copies.take_copy(s, grant) == 1


def test_two_exports_race_for_the_last_copy_and_one_wins(db, wf, who) -> None:
    grant = _grant(db, wf, who, 2)
    with transaction(db) as s:
        assert copies.take_copy(s, grant) == 1
    barrier = threading.Barrier(2)
    got: list[int | None] = []

    def export() -> None:
        barrier.wait()
        with transaction(db) as s:  # each thread its own session and transaction
            got.append(copies.take_copy(s, grant))

    threads = [threading.Thread(target=export) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(got, key=str) == [2, None]
    with Session(db) as s:
        used = s.exec(select(AccessGrant.copies_used).where(AccessGrant.id == grant.id)).one()
    assert used == 2


# -- facts ---------------------------------------------------------------------------------


def test_facts_of_each_kind(db, wf, who) -> None:
    view = _file(db, wf, who, "carol", "view", ["A-INT", "A-TOP"])
    loan = _file(db, wf, who, "carol", "loan", ["A-INT"], hours=24, material="folder", copies=2)
    copy = _file(db, wf, who, "carol", "copy", ["A-SEC"], export_format="csv", copies=3)
    ext = _file(db, wf, who, "carol", "external", ["A-INT"], recipient="Bank X")
    visit = _file(db, wf, who, "ext", "view", ["A-INT"])
    view = _approve(db, wf, who, view.uid, "dh_east")
    with Session(db) as s:
        facts = facts_for(s, [view, loan, copy, ext, visit], wf.chains.purposes)
    v = facts[view.uid]
    assert v["requester"] == {
        "username": "carol",
        "display_name": "",
        "department": "east",
        "roles": ["salesperson"],
        "external": False,
    }
    assert v["purpose"] == {"code": "revisit", "label": wf.chains.purposes["revisit"]}
    assert v["reason"] == "the customer asked for it"
    top = v["archives"][1]
    assert top["archive_no"] == "A-TOP"
    assert top["classification"] == {"code": "top_secret", "marking": "绝密"}
    assert top["owner"]["username"] == "alice" and top["custodian"]["username"] == "keeper"
    assert v["archives"][0]["classification"]["marking"] == "内部"
    assert [c["signer"] for c in v["chain"]] == ["dh_east"]
    assert v["chain"][0]["role"] == "department_head" and v["chain"][0]["at"]
    assert v["next"]["stage"] == "information_officer"
    assert "loan" not in v and "export" not in v
    assert facts[loan.uid]["loan"] == {"material": "folder", "copies": 2}
    assert facts[copy.uid]["export"] == {"format": "csv", "copies": 3}
    assert facts[copy.uid]["archives"][0]["classification"]["marking"] == "机密"
    assert facts[ext.uid]["export"] == {"format": "json", "copies": 1, "recipient": "Bank X"}
    assert facts[visit.uid]["requester"]["credential_ref"] == "LETTER-2025-001"
    assert facts[visit.uid]["requester"]["external"] is True


def test_facts_of_a_page_take_a_fixed_number_of_queries(db, wf, who) -> None:
    """No query per request or per archive: a page of 2 and a page of 8 cost the same."""
    reqs = [_file(db, wf, who, "carol", "view", ["A-INT", "A-SEC"]) for _ in range(8)]
    counted: list[str] = []

    def count(*_args) -> None:
        counted.append("q")

    sa.event.listen(db, "before_cursor_execute", count)
    try:
        with Session(db) as s:
            facts_for(s, reqs[:2], wf.chains.purposes)
        small = len(counted)
        counted.clear()
        with Session(db) as s:
            facts_for(s, reqs, wf.chains.purposes)
        assert len(counted) == small
    finally:
        sa.event.remove(db, "before_cursor_execute", count)


# -- who sees, and the register search ---------------------------------------------------------


def test_the_information_supervisor_and_compliance_see_every_request(db, wf, who) -> None:
    req = _file(db, wf, who, "carol", "view", ["A-INT"])
    with Session(db) as s:
        for reader in ("sup", "comp", "carol", "dh_east"):
            assert visible_request(s, wf.signing, who(reader), req.uid, now=T0).uid == req.uid
        for outsider in ("bob", "dh_sales", "csm"):
            with pytest.raises(NotFound):
                visible_request(s, wf.signing, who(outsider), req.uid, now=T0)


def test_search_filters_and_pages(db, wf, who) -> None:
    a = _file(db, wf, who, "carol", "view", ["A-INT"], at=T0)
    b = _file(db, wf, who, "bob", "copy", ["A-SEC", "A-INT"], at=T0 + H)
    c = _file(db, wf, who, "carol", "view", ["A-SEC"], at=T0 + 2 * H)
    with transaction(db) as s:
        wf.signing.withdraw(s, c.uid, who("carol"), now=T0 + 3 * H)

    def uids(**kw) -> tuple[list[str], int]:
        with Session(db) as s:
            items, total = search_requests(s, RequestQuery(**kw))
        return [r.uid for r in items], total

    assert uids() == ([c.uid, b.uid, a.uid], 3)
    assert uids(requester="carol") == ([c.uid, a.uid], 2)
    assert uids(kind="copy") == ([b.uid], 1)
    assert uids(state="withdrawn") == ([c.uid], 1)
    assert uids(archive="A-INT") == ([b.uid, a.uid], 2)
    assert uids(archive="A-IN") == ([], 0)  # the whole number, never a part of it
    assert uids(archive="A-%") == ([], 0)  # LIKE wildcards are literal
    assert uids(since=T0 + H) == ([c.uid, b.uid], 2)
    assert uids(until=T0 + H) == ([a.uid], 1)
    assert uids(limit=1, offset=1) == ([b.uid], 3)


def test_roster_lookup_and_list(db) -> None:
    with Session(db) as s:
        found = roster.lookup(s, "io")
        assert [p["username"] for p in found] == ["io", "io2"]
        assert set(found[0]) == {"username", "display_name", "department", "roles"}
        assert roster.lookup(s, "%") == []  # a wildcard is a literal character
        page, total = roster.list_users(s, roster.UserQuery(role="information_officer"))
        assert total == 4 and [u["username"] for u in page] == ["both", "io", "io2", "keeper"]
        page, total = roster.list_users(s, roster.UserQuery(department="cs", limit=2))
        assert total == 5 and len(page) == 2
        assert all("password_hash" not in u for u in page)
