"""Loans (Art 19-20), grant expiry at the instant, cross-process sync, handover,
directory — on SQLite and PostgreSQL. Time is injected; nothing sleeps."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlmodel import Session, select

from audit.events import AuditAction
from foundation.db import transaction
from policies import visibility
from policies.directory import add_user, disable_user, load_principal, set_roles
from policies.engine import PolicyEngine
from policies.errors import InvalidInput, Refused, UserDisabled
from policies.loading import load_archive_meta
from policies.models import AccessGrant, LoanEntry
from policies.roles import Action
from tests.auditlog import entries
from tests.policies.conftest import T0
from vault.models import Archive, ArchiveContact

M = timedelta(minutes=1)
H = timedelta(hours=1)


def _approved(db, wf, who, kind, requester, archive, signers, *, confirm=True, **kw):
    with transaction(db) as s:
        req = wf.filing.file(
            s,
            who(requester),
            kind=kind,
            archives=[archive],
            purpose="contract_follow_up",
            reason="renewal",
            now=T0,
            **kw,
        )
    for i, signer in enumerate(signers):
        with transaction(db) as s:
            req = wf.signing.approve(s, req.uid, who(signer), now=T0 + (i + 1) * H)
    if kind == "loan" and confirm:  # the borrower confirms the register line (Art 19.5)
        with transaction(db) as s:
            loan = s.exec(select(LoanEntry).where(LoanEntry.request_id == req.id)).one()
            wf.loans.confirm(s, loan.uid, who(requester), now=T0 + len(signers) * H)
    return req


def _decide(db, pe, principal, action, meta, *, now):
    """Decide as a unit of work does: catch up with committed grants, then ask."""
    with Session(db) as s:
        pe.sync(s)
    return pe.decide(principal, action, meta, now=now)


def _meta(db, no):
    with Session(db) as s:
        return load_archive_meta(s, no)


def _loan(db):
    with Session(db) as s:
        return s.exec(select(LoanEntry)).one()


def test_loan_clock_starts_at_final_approval_and_register(db, wf, pe, who, sink):
    req = _approved(
        db,
        wf,
        who,
        "loan",
        "carol",
        "A-INT",
        ["dh_east", "io"],
        hours=24,
        material="contract copy",
        copies=2,
        confirm=False,
    )
    loan = _loan(db)
    final = T0 + 2 * H
    assert loan.start_at == final and loan.due_at == final + 24 * H  # not T0 + 24h
    assert (loan.material, loan.copies, loan.reason, loan.borrower) == (
        "contract copy",
        2,
        "renewal",
        "carol",
    )
    assert loan.borrower_confirmed_at is None
    with pytest.raises(Refused), transaction(db) as s:
        wf.loans.confirm(s, loan.uid, who("dan"), now=final + M)
    with transaction(db) as s:
        wf.loans.confirm(s, loan.uid, who("carol"), now=final + M)
    assert _loan(db).borrower_confirmed_at == final + M
    meta = _meta(db, "A-INT")
    assert _decide(db, pe, who("carol"), Action.LOAN, meta, now=final + 23 * H).allowed
    assert _decide(db, pe, who("carol"), Action.READ, meta, now=final + 23 * H).allowed
    loan_events = [e for e in entries(sink) if e.action == AuditAction.LOAN]
    assert loan_events[0].grant_id == req.grant_uid and loan_events[0].purpose == req.purpose


def test_return_revokes_at_once_and_for_good(db, wf, pe, who, sink):
    _approved(
        db,
        wf,
        who,
        "loan",
        "carol",
        "A-INT",
        ["dh_east", "io"],
        hours=48,
        material="folder",
        copies=1,
    )
    loan = _loan(db)
    meta = _meta(db, "A-INT")
    at = loan.start_at + H
    assert _decide(db, pe, who("carol"), Action.READ, meta, now=at).allowed
    with pytest.raises(Refused), transaction(db) as s:  # not anyone
        wf.loans.close(s, loan.uid, who("dan"), now=at)
    with transaction(db) as s:
        wf.loans.close(s, loan.uid, who("io"), now=at)
    d = _decide(db, pe, who("carol"), Action.READ, meta, now=at)
    assert not d.allowed, d.why
    with pytest.raises(Refused), transaction(db) as s:
        wf.loans.close(s, loan.uid, who("carol"), now=at + M)
    with Session(db) as s:
        fresh = PolicyEngine.from_db(s)
        grant = s.exec(select(AccessGrant)).one()
    assert grant.state == "returned" and grant.ended_at == at
    assert not fresh.decide(who("carol"), Action.READ, meta, now=at + M).allowed
    assert _loan(db).state == "returned"
    assert AuditAction.LOAN_RETURN in [e.action for e in entries(sink)]


def test_overdue_loan_stops_at_due_time_and_shows_overdue(db, wf, pe, who):
    _approved(
        db,
        wf,
        who,
        "loan",
        "carol",
        "A-INT",
        ["dh_east", "io"],
        hours=3,
        material="folder",
        copies=1,
    )
    loan = _loan(db)
    meta = _meta(db, "A-INT")
    tick = timedelta(microseconds=1)
    assert _decide(db, pe, who("carol"), Action.LOAN, meta, now=loan.due_at - tick).allowed
    assert not _decide(db, pe, who("carol"), Action.LOAN, meta, now=loan.due_at).allowed
    with Session(db) as s:
        before = wf.loans.register(s, now=loan.due_at - tick)
        after = wf.loans.register(s, now=loan.due_at)
    assert before[0].status == "out" and after[0].status == "overdue"
    with transaction(db) as s:
        out = wf.sweeper.sweep(s, now=loan.due_at + M)
    assert out.overdue_loans == [loan.uid] and out.expired_grants
    with transaction(db) as s:  # idempotent
        again = wf.sweeper.sweep(s, now=loan.due_at + 2 * M)
    assert not again.overdue_loans and not again.expired_grants
    with transaction(db) as s:  # a late return is still registered
        wf.loans.close(s, loan.uid, who("io"), now=loan.due_at + H)
    with Session(db) as s:
        assert wf.loans.register(s, now=loan.due_at + 2 * H)[0].status == "returned"
        notes = [n.event for n in visibility.notifications_for(s, "carol")]
    assert "overdue" in notes and "grant_expired" in notes and notes[-1] == "returned"


def test_grant_expiring_mid_session_stops_at_once(db, wf, pe, who):
    req = _approved(db, wf, who, "view", "carol", "A-INT", ["dh_east", "io"], hours=1)
    meta = _meta(db, "A-INT")
    with Session(db) as s:
        grant = s.exec(select(AccessGrant)).one()
    session_clock = [grant.not_before + k * 10 * M for k in range(6)]  # 5 reads, 50 minutes
    assert all(_decide(db, pe, who("carol"), "read", meta, now=t).allowed for t in session_clock)
    d = _decide(db, pe, who("carol"), "read", meta, now=grant.not_after)
    assert not d.allowed and grant.uid in d.why and "ended" in d.why
    assert d.next_step.startswith("file a view request")
    assert len(pe.links) == 1  # not yet swept: the window alone decided
    with transaction(db) as s:
        wf.sweeper.sweep(s, now=grant.not_after)
    assert len(pe.links) == 0
    assert req.state == "approved"


def test_other_process_catches_up_with_sync(db, wf, pe, who):
    _approved(
        db,
        wf,
        who,
        "loan",
        "carol",
        "A-INT",
        ["dh_east", "io"],
        hours=48,
        material="folder",
        copies=1,
    )
    with Session(db) as s:
        other = PolicyEngine.from_db(s)  # another API worker
    loan = _loan(db)
    meta = _meta(db, "A-INT")
    at = loan.start_at + H
    assert other.decide(who("carol"), "read", meta, now=at).allowed
    with transaction(db) as s:
        wf.loans.close(s, loan.uid, who("carol"), now=at)
    with Session(db) as s:
        assert other.sync(s) == 1
        assert other.sync(s) == 0
    assert not other.decide(who("carol"), "read", meta, now=at).allowed


def test_handover_moves_archives_revokes_the_leavers_loans_and_disables(db, wf, pe, who, sink):
    _approved(
        db,
        wf,
        who,
        "loan",
        "bob",
        "A-SEC",
        ["dh_sales", "io", "csm"],
        hours=24,
        material="folder",
        copies=1,
    )
    view = _approved(db, wf, who, "view", "bob", "A-TOP", ["dh_sales", "io", "csm", "keeper"])
    with transaction(db) as s:
        pending = wf.filing.file(
            s, who("bob"), kind="copy", archives=["A-INT"], purpose="revisit", reason="r", now=T0
        )
    # alice leaves. A department head of another department cannot start it, an
    # information officer only signs, and the successor is a salesperson.
    with pytest.raises(Refused), transaction(db) as s:
        wf.staff.file(s, from_user="alice", to_user="bob", actor=who("dh_east"), now=T0 + 5 * H)
    with pytest.raises(Refused), transaction(db) as s:
        wf.staff.file(s, from_user="alice", to_user="dan", actor=who("io"), now=T0 + 5 * H)
    with pytest.raises(InvalidInput), transaction(db) as s:
        wf.staff.file(
            s, from_user="alice", to_user="dh_sales", actor=who("dh_sales"), now=T0 + 5 * H
        )
    with transaction(db) as s:
        req = wf.staff.file(
            s, from_user="alice", to_user="dan", actor=who("dh_sales"), now=T0 + 5 * H
        )
    assert req.kind == "handover" and req.state == "pending"
    # alice owns a top-secret archive: the chain a reassignment of it needs, the
    # general manager standing in for the filing department head
    assert [s["name"] for s in req.stages] == [
        "department_head",
        "information_officer",
        "cs_manager",
        "custodian",
    ]
    assert req.stages[0]["roles"] == ["general_manager"]
    assert (req.classification, req.custodian) == ("top_secret", "keeper")
    with Session(db) as s:  # nothing moved yet
        assert {a.owner for a in s.exec(select(Archive))} == {"alice"}
    with pytest.raises(Refused, match="own request"), transaction(db) as s:
        wf.signing.approve(s, req.uid, who("dh_sales"), now=T0 + 5 * H)
    for signer in ("gm", "io", "csm"):
        with transaction(db) as s:
            assert wf.signing.approve(s, req.uid, who(signer), now=T0 + 5 * H).state == "pending"
    with Session(db) as s:  # still nothing moved before the custodian signs
        assert {a.owner for a in s.exec(select(Archive))} == {"alice"}
    with transaction(db) as s:
        done = wf.signing.approve(s, req.uid, who("keeper"), now=T0 + 5 * H)
    result = done.change["applied"]
    assert sorted(result["archives"]) == ["A-INT", "A-OLD", "A-SEC", "A-TOP"]
    with Session(db) as s:
        assert {a.owner for a in s.exec(select(Archive))} == {"dan"}
        with pytest.raises(UserDisabled):
            load_principal(s, "alice")
    assert _decide(db, pe, who("dan"), "read", _meta(db, "A-INT"), now=T0 + 5 * H).allowed
    # bob leaves: never to another department's salesperson; his contact listing goes
    # to dan, but his loan and view grants are revoked (approved for bob, not for dan)
    with pytest.raises(Refused, match="department"), transaction(db) as s:
        wf.staff.file(s, from_user="bob", to_user="carol", actor=who("adm"), now=T0 + 6 * H)
    with transaction(db) as s:
        req = wf.staff.file(s, from_user="bob", to_user="dan", actor=who("adm"), now=T0 + 6 * H)
    assert req.change["listed_on"] == ["A-INT"] and req.change["archives"] == []
    with transaction(db) as s:
        wf.signing.approve(s, req.uid, who("dh_sales"), now=T0 + 6 * H)
    with transaction(db) as s:
        result = wf.signing.approve(s, req.uid, who("io"), now=T0 + 6 * H).change["applied"]
    loan = _loan(db)
    assert result["loans_to_return"] == [loan.uid]
    with Session(db) as s:
        loan_grant = s.exec(select(AccessGrant).where(AccessGrant.id == loan.grant_id)).one()
        assert "bob" not in s.exec(select(ArchiveContact.username)).all()
        assert "dan" not in s.exec(select(ArchiveContact.username)).all()  # dan owns A-INT
    assert sorted(result["revoked_grants"]) == sorted([view.grant_uid, loan_grant.uid])
    assert (loan_grant.subject, loan_grant.state) == ("bob", "revoked")
    assert result["withdrawn_requests"] == [pending.uid]
    assert (loan.borrower, loan.state) == ("bob", "out")  # still to be returned by bob
    assert not _decide(db, pe, who("dan"), Action.LOAN, _meta(db, "A-SEC"), now=T0 + 6 * H).allowed
    with Session(db) as s:
        line = wf.loans.register(s, now=loan.due_at + M, open_only=True)
        assert [(v.entry.uid, v.status) for v in line] == [(loan.uid, "overdue")]
        notes = [n.message for n in visibility.notifications_for(s, "dan")]
        told = [n.message for n in visibility.notifications_for(s, "adm")]
    assert any(loan.uid in m and "returned" in m for m in notes)
    assert any(loan.uid in m and "returned" in m for m in told)
    with transaction(db) as s:  # the register keeper records the return
        wf.loans.close(s, loan.uid, who("io2"), now=loan.due_at + H)
    reassign = [e for e in entries(sink) if e.action == AuditAction.REASSIGN]
    assert len(reassign) == 2
    assert reassign[-1].detail["loans_to_return"] == [loan.uid]
    assert sum(1 for e in entries(sink) if e.action == AuditAction.USER_CHANGE) >= 2


def test_directory(db, sink):
    with transaction(db) as s:
        with pytest.raises(InvalidInput):
            add_user(s, username="v2", roles=["external"], external=True)  # no credential
        with pytest.raises(InvalidInput):
            add_user(s, username="x", roles=["wizard"])
        with pytest.raises(InvalidInput):
            add_user(s, username="carol", roles=["salesperson"])
        with pytest.raises(InvalidInput):
            add_user(
                s,
                username="v3",
                roles=["external", "salesperson"],
                external=True,
                credential_ref="ID-1",
            )
        add_user(s, username="eve", roles=["salesperson"], department="east", audit=sink)
        assert load_principal(s, "eve").roles == {"salesperson"}
        set_roles(s, "eve", ["salesperson", "department_head"], audit=sink)
        assert load_principal(s, "eve").roles == {"salesperson", "department_head"}
        disable_user(s, "eve", audit=sink)
        with pytest.raises(UserDisabled):
            load_principal(s, "eve")
    assert [e.detail["op"] for e in entries(sink)] == ["add", "set_roles", "disable"]
