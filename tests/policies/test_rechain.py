"""A request's chain follows its archives' current state, at every signature and at
every read under its grant; a loan's grant waits for the borrower's confirmation.
On SQLite and PostgreSQL; time is injected."""

from __future__ import annotations

import tomllib
from datetime import timedelta

import pytest
import sqlalchemy as sa
from sqlmodel import Session, select

from audit.events import AuditAction
from foundation.db import transaction
from policies.chains import CHAINS_FILE, parse_chains
from policies.engine import PolicyEngine
from policies.errors import Refused
from policies.loading import load_archive_meta
from policies.models import AccessGrant, AccessRequest, LoanEntry, Notification
from policies.roles import Action
from policies.workflow import Workflow
from tests.auditlog import entries
from tests.policies.conftest import T0
from vault.models import Archive

M = timedelta(minutes=1)
H = timedelta(hours=1)


def _file(db, wf, who, requester, archive, kind="view", **kw):
    with transaction(db) as s:
        return wf.filing.file(
            s,
            who(requester),
            kind=kind,
            archives=[archive],
            purpose="customer_service",
            reason="the customer called back",
            now=T0,
            **kw,
        )


def _sign(db, wf, who, uid, signer, at):
    with transaction(db) as s:
        return wf.signing.approve(s, uid, who(signer), now=at)


def _refused(db, wf, who, uid, signer, at) -> Refused:
    with pytest.raises(Refused) as exc, transaction(db) as s:
        wf.signing.approve(s, uid, who(signer), now=at)
    return exc.value


def _set(db, archive, **values):
    """Change an archive's metadata as a reclassification would (content is not involved)."""
    with transaction(db) as s:
        s.exec(sa.update(Archive).where(Archive.archive_no == archive).values(**values))


def _read(db, pe, who, user, archive, at):
    with Session(db) as s:
        pe.sync(s)
        meta = load_archive_meta(s, archive)
    return pe.decide(who(user), Action.READ, meta, now=at)


def _request(db, uid) -> AccessRequest:
    with Session(db) as s:
        return s.exec(select(AccessRequest).where(AccessRequest.uid == uid)).one()


def test_raised_after_the_first_signature_needs_the_secret_chain(db, wf, pe, who, sink):
    req = _file(db, wf, who, "carol", "A-INT")
    assert [s["name"] for s in req.stages] == ["department_head", "information_officer"]
    _sign(db, wf, who, req.uid, "dh_east", T0 + M)
    _set(db, "A-INT", classification="secret")
    # The second signature no longer approves: the secret chain's extra stage is required.
    after = _sign(db, wf, who, req.uid, "io", T0 + 2 * M)
    assert after.state == "pending" and after.grant_uid is None
    assert [s["name"] for s in after.stages] == [
        "department_head",
        "information_officer",
        "cs_manager",
    ]
    assert after.classification == "secret"
    assert after.stages[after.next_stage]["name"] == "cs_manager"
    assert not _read(db, pe, who, "carol", "A-INT", T0 + 3 * M).allowed
    change = after.chain_changes[-1]
    assert change["classification"] == {"from": "internal", "to": "secret"}
    assert change["added"] == ["cs_manager"]
    rechain = [e for e in entries(sink) if e.action == AuditAction.REQUEST_RECHAIN]
    assert len(rechain) == 1 and rechain[0].detail["request"] == req.uid
    with Session(db) as s:
        told = s.exec(
            select(Notification).where(
                Notification.recipient == "carol", Notification.event == "rechained"
            )
        ).all()
    assert len(told) == 1 and "customer-service manager" in told[0].message
    # The chain is unchanged from now on: no second re-derivation.
    done = _sign(db, wf, who, req.uid, "csm", T0 + 3 * M)
    assert done.state == "approved" and len(done.chain_changes) == 1
    with Session(db) as s:
        grant = s.exec(select(AccessGrant).where(AccessGrant.uid == done.grant_uid)).one()
    assert grant.approved_classification == "secret"
    d = _read(db, pe, who, "carol", "A-INT", T0 + 4 * M)
    assert d.allowed and d.basis == "grant", d.why


def test_raised_after_approval_the_old_grant_no_longer_reads(db, wf, pe, who):
    req = _file(db, wf, who, "carol", "A-INT")
    _sign(db, wf, who, req.uid, "dh_east", T0 + M)
    _sign(db, wf, who, req.uid, "io", T0 + 2 * M)
    assert _read(db, pe, who, "carol", "A-INT", T0 + 3 * M).allowed
    _set(db, "A-INT", classification="secret")
    d = _read(db, pe, who, "carol", "A-INT", T0 + 4 * M)
    assert not d.allowed
    assert "approved for an internal archive" in d.why and "now secret" in d.why
    assert d.next_step and "customer-service manager" in d.next_step  # what to file
    # A fresh engine (another worker) decides the same from the database.
    with Session(db) as s:
        fresh = PolicyEngine.from_db(s)
        meta = load_archive_meta(s, "A-INT")
    assert not fresh.decide(who("carol"), Action.READ, meta, now=T0 + 4 * M).allowed
    _set(db, "A-INT", classification="internal")  # back at the approved marking
    assert _read(db, pe, who, "carol", "A-INT", T0 + 5 * M).allowed


def test_a_new_custodian_must_sign_and_a_grant_follows_the_custodian(db, wf, pe, who):
    req = _file(db, wf, who, "carol", "A-TOP")
    for i, signer in enumerate(["dh_east", "io", "csm"]):
        _sign(db, wf, who, req.uid, signer, T0 + (i + 1) * M)
    _set(db, "A-TOP", custodian="sup")
    refused = _refused(db, wf, who, req.uid, "keeper", T0 + 5 * M)
    assert refused.rule == "wrong-custodian" and "(sup)" in str(refused)
    done = _sign(db, wf, who, req.uid, "sup", T0 + 6 * M)
    assert done.state == "approved" and done.custodian == "sup"
    assert _read(db, pe, who, "carol", "A-TOP", T0 + 7 * M).allowed
    _set(db, "A-TOP", custodian="keeper")  # after approval: the grant's custodian is gone
    d = _read(db, pe, who, "carol", "A-TOP", T0 + 8 * M)
    assert not d.allowed and "custodian sup" in d.why and "now keeper" in d.why


def _custodian_first_chains():
    """The view chain with the custodian's stage moved ahead of the officer's."""
    data = tomllib.loads(CHAINS_FILE.read_text(encoding="utf-8"))
    stages = {s["name"]: s for s in data["kinds"]["view"]["stages"]}
    data["kinds"]["view"]["stages"] = [
        stages[n] for n in ("department_head", "custodian", "information_officer", "cs_manager")
    ]
    return parse_chains(data, source="test")


def test_a_stage_added_before_the_position_sends_the_request_back(db, sink, pe, who):
    wf = Workflow(audit=sink, engine=pe, chains=_custodian_first_chains())
    req = _file(db, wf, who, "carol", "A-INT")
    _sign(db, wf, who, req.uid, "dh_east", T0 + M)
    _set(db, "A-INT", classification="top_secret", custodian="keeper")
    # The officer was next; now the custodian's new stage comes first.
    refused = _refused(db, wf, who, req.uid, "io", T0 + 2 * M)
    assert refused.rule == "wrong-custodian"
    back = _sign(db, wf, who, req.uid, "keeper", T0 + 3 * M)
    assert [s["name"] for s in back.stages] == [
        "department_head",
        "custodian",
        "information_officer",
        "cs_manager",
    ]
    change = back.chain_changes[-1]
    assert change["next"] == {"from": "information_officer", "to": "custodian"}
    assert change["added"] == ["custodian", "cs_manager"]
    _sign(db, wf, who, req.uid, "io", T0 + 4 * M)
    done = _sign(db, wf, who, req.uid, "csm", T0 + 5 * M)
    assert done.state == "approved"
    assert _read(db, pe, who, "carol", "A-INT", T0 + 6 * M).allowed


def test_a_superseded_custodian_signature_is_signed_again(db, sink, pe, who):
    wf = Workflow(audit=sink, engine=pe, chains=_custodian_first_chains())
    req = _file(db, wf, who, "carol", "A-TOP")
    _sign(db, wf, who, req.uid, "dh_east", T0 + M)
    _sign(db, wf, who, req.uid, "keeper", T0 + 2 * M)
    _set(db, "A-TOP", custodian="sup")
    assert _refused(db, wf, who, req.uid, "io", T0 + 3 * M).rule == "wrong-custodian"
    again = _sign(db, wf, who, req.uid, "sup", T0 + 4 * M)
    names = [(s["name"], bool(s.get("superseded"))) for s in again.stages]
    assert names == [
        ("department_head", False),
        ("custodian", True),
        ("custodian", False),
        ("information_officer", False),
        ("cs_manager", False),
    ]
    _sign(db, wf, who, req.uid, "io", T0 + 5 * M)
    done = _sign(db, wf, who, req.uid, "csm", T0 + 6 * M)
    assert done.state == "approved"
    with Session(db) as s:
        grant = s.exec(select(AccessGrant).where(AccessGrant.uid == done.grant_uid)).one()
    assert grant.approved_custodian == "sup" and grant.custodian_signed
    assert _read(db, pe, who, "carol", "A-TOP", T0 + 7 * M).allowed


def test_a_request_that_can_no_longer_be_finished_is_refused_with_why(db, wf, who, sink):
    req = _file(db, wf, who, "carol", "A-INT")
    _sign(db, wf, who, req.uid, "dh_east", T0 + M)
    _set(db, "A-INT", classification="top_secret", custodian=None)
    refused = _refused(db, wf, who, req.uid, "io", T0 + 2 * M)
    assert refused.rule == "unfinishable" and "without a custodian" in str(refused)
    assert refused.event is not None and refused.event.action == AuditAction.REQUEST_RECHAIN
    with transaction(db) as s:  # still deniable: a denial never widens access
        denied = wf.signing.deny(
            s, req.uid, who("io"), reason="archive needs a custodian", now=T0 + H
        )
    assert denied.state == "denied"


def test_a_lowered_marking_keeps_the_chain_as_filed(db, wf, who):
    req = _file(db, wf, who, "carol", "A-SEC")
    _sign(db, wf, who, req.uid, "dh_east", T0 + M)
    _set(db, "A-SEC", classification="internal")
    after = _sign(db, wf, who, req.uid, "io", T0 + 2 * M)
    assert after.state == "pending" and after.stages[after.next_stage]["name"] == "cs_manager"
    assert after.chain_changes == []


def test_a_loan_is_read_only_after_the_borrower_confirms_it(db, wf, pe, who):
    req = _file(db, wf, who, "carol", "A-INT", kind="loan", hours=24, material="file", copies=1)
    _sign(db, wf, who, req.uid, "dh_east", T0 + M)
    done = _sign(db, wf, who, req.uid, "io", T0 + 2 * M)
    assert done.state == "approved"
    d = _read(db, pe, who, "carol", "A-INT", T0 + 3 * M)
    assert not d.allowed and "not confirmed" in d.why
    assert d.next_step and "/confirm" in d.next_step
    with Session(db) as s:
        meta = load_archive_meta(s, "A-INT")
        loan = s.exec(select(LoanEntry)).one()
    assert not pe.decide(who("carol"), Action.LOAN, meta, now=T0 + 3 * M).allowed
    with transaction(db) as s:
        wf.loans.confirm(s, loan.uid, who("carol"), now=T0 + 4 * M)
    assert _read(db, pe, who, "carol", "A-INT", T0 + 5 * M).allowed
    with Session(db) as s:  # another worker catches up through the grant revision
        fresh = PolicyEngine.from_db(s)
    assert fresh.decide(who("carol"), Action.READ, meta, now=T0 + 5 * M).allowed


def test_a_returned_unconfirmed_loan_never_starts_counting(db, wf, pe, who):
    req = _file(db, wf, who, "carol", "A-INT", kind="loan", hours=24, material="file", copies=1)
    _sign(db, wf, who, req.uid, "dh_east", T0 + M)
    _sign(db, wf, who, req.uid, "io", T0 + 2 * M)
    with Session(db) as s:
        loan = s.exec(select(LoanEntry)).one()
    with transaction(db) as s:
        wf.loans.close(s, loan.uid, who("io"), now=T0 + 3 * M)
    with transaction(db) as s:
        wf.loans.confirm(s, loan.uid, who("carol"), now=T0 + 4 * M)
    assert not _read(db, pe, who, "carol", "A-INT", T0 + 5 * M).allowed
