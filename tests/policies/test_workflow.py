"""Every chain walked to approval and to denial, and every refusal, on SQLite and
PostgreSQL (the ``engine`` fixture runs each test on both)."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlmodel import Session, select

from audit.events import AuditAction, Outcome
from foundation.db import transaction
from policies import visibility
from policies.engine import PolicyEngine
from policies.errors import Conflict, InvalidInput, PolicyError, Refused
from policies.loading import load_archive_meta
from policies.models import AccessGrant, AccessRequest, Notification, RequestSignature
from policies.roles import Action
from policies.workflow import Workflow
from tests.auditlog import entries
from tests.policies.conftest import T0

H = timedelta(hours=1)
M = timedelta(minutes=1)

# kind, requester, archive, [signers in order], action the grant allows, extra filing args
CHAINS = [
    ("view", "carol", "A-INT", ["dh_east", "io"], Action.READ, {}),
    ("view", "carol", "A-SEC", ["dh_east", "io", "csm"], Action.READ, {}),
    ("view", "carol", "A-TOP", ["dh_east", "io", "csm", "keeper"], Action.READ, {}),
    ("view", "ext", "A-SEC", ["io", "csm"], Action.READ, {}),
    (
        "loan",
        "carol",
        "A-INT",
        ["dh_east", "io"],
        Action.LOAN,
        {"hours": 48, "material": "profile folder", "copies": 1},
    ),
    ("copy", "carol", "A-INT", ["gm"], Action.EXPORT, {}),
    ("copy", "carol", "A-INT", ["sup"], Action.EXPORT, {}),
    ("external", "carol", "A-INT", ["sup", "csm"], Action.PROVIDE, {"recipient": "Bank X"}),
    ("report", "dh_east", None, ["csm", "gm"], Action.REPORT, {}),
    ("destroy", "io", "A-OLD", ["csm"], Action.DESTROY, {}),
]

# The chain each filing must be given, as chains.toml spells it out for that kind,
# marking and requester (written out here, not derived, so a change to either shows).
EXPECTED_STAGES = {
    ("view", "carol", "A-INT"): ["department_head", "information_officer"],
    ("view", "carol", "A-SEC"): ["department_head", "information_officer", "cs_manager"],
    ("view", "carol", "A-TOP"): [
        "department_head",
        "information_officer",
        "cs_manager",
        "custodian",
    ],
    ("view", "ext", "A-SEC"): ["information_officer", "cs_manager"],
    ("loan", "carol", "A-INT"): ["department_head", "information_officer"],
    ("copy", "carol", "A-INT"): ["copy_approver"],
    ("external", "carol", "A-INT"): ["info_supervisor", "cs_manager"],
    ("report", "dh_east", None): ["cs_manager", "general_manager"],
    ("destroy", "io", "A-OLD"): ["cs_manager"],
}


def _file(wf, who, requester, kind, archive, **kw):
    purpose = {"report": "statistics", "destroy": "retention_expired"}.get(kind, "revisit")
    with transaction(wf_db(wf)) as s:
        return wf.filing.file(
            s,
            who(requester),
            kind=kind,
            archives=[archive] if archive else [],
            purpose=purpose,
            reason="needed for the customer's complaint",
            now=T0,
            **kw,
        )


def wf_db(wf):
    return wf._db  # set by the fixture below


@pytest.fixture
def flow(db, wf):
    wf._db = db
    return wf


def _decide(db, pe, who, user, action, archive, at):
    """Decide as a unit of work does: catch up with committed grants, then ask."""
    with Session(db) as s:
        pe.sync(s)
        meta = load_archive_meta(s, archive) if archive else None
    return pe.decide(who(user), action, meta, now=at)


@pytest.mark.parametrize(
    ("kind", "requester", "archive", "signers", "action", "extra"),
    CHAINS,
    ids=[f"{c[0]}-{c[1]}-{c[2]}-{'+'.join(c[3])}" for c in CHAINS],
)
def test_chain_to_approval(
    db, flow, pe, who, sink, kind, requester, archive, signers, action, extra
):
    req = _file(flow, who, requester, kind, archive, **extra)
    assert [s["name"] for s in req.stages] == EXPECTED_STAGES[(kind, requester, archive)]
    assert len(req.stages) == len(signers)
    assert not _decide(db, pe, who, requester, action, archive, T0 + M).allowed
    for i, signer in enumerate(signers):
        with transaction(db) as s:
            req = flow.signing.approve(s, req.uid, who(signer), now=T0 + (i + 1) * M)
    assert req.state == "approved"
    approved_at = T0 + len(signers) * M
    if kind == "loan":  # the borrower confirms the register line first (Art 19.5)
        with transaction(db) as s:
            loan = flow.loans.register(s, now=approved_at)[0].entry
            flow.loans.confirm(s, loan.uid, who(requester), now=approved_at)
    d = _decide(db, pe, who, requester, action, archive, approved_at)
    assert d.allowed, d.why
    assert d.grant_id == req.grant_uid and d.purpose == req.purpose and d.reason == req.reason
    events = [e.action for e in entries(sink)]
    assert events.count(AuditAction.REQUEST_APPROVE) == len(signers)
    assert events[0] == AuditAction.REQUEST_FILE
    assert all(
        e.purpose == req.purpose
        for e in entries(sink)
        if e.action in (AuditAction.REQUEST_FILE, AuditAction.REQUEST_APPROVE)
    )
    with Session(db) as s:
        notes = [
            n.event for n in s.exec(select(Notification).where(Notification.recipient == requester))
        ]
    assert notes[0] == "filed" and "approved" in notes
    assert notes[-1] == ("loan_confirmed" if kind == "loan" else "approved")
    # A fresh engine built from the database agrees (links come from the DB).

    with Session(db) as s:
        fresh = PolicyEngine.from_db(s)
        meta = load_archive_meta(s, archive) if archive else None
    assert fresh.decide(who(requester), action, meta, now=approved_at).allowed


@pytest.mark.parametrize(
    ("kind", "requester", "archive", "signers", "action", "extra"),
    CHAINS,
    ids=[f"{c[0]}-{c[1]}-{c[2]}-{'+'.join(c[3])}" for c in CHAINS],
)
def test_chain_to_denial(db, flow, pe, who, sink, kind, requester, archive, signers, action, extra):
    req = _file(flow, who, requester, kind, archive, **extra)
    for i, signer in enumerate(signers[:-1]):
        with transaction(db) as s:
            flow.signing.approve(s, req.uid, who(signer), now=T0 + (i + 1) * M)
    with pytest.raises(InvalidInput), transaction(db) as s:
        flow.signing.deny(s, req.uid, who(signers[-1]), reason="  ", now=T0 + H)
    with transaction(db) as s:
        req = flow.signing.deny(
            s, req.uid, who(signers[-1]), reason="purpose not shown", now=T0 + H
        )
    assert req.state == "denied" and req.denial_reason == "purpose not shown"
    assert not _decide(db, pe, who, requester, action, archive, T0 + 2 * H).allowed
    deny = [e for e in entries(sink) if e.action == AuditAction.REQUEST_DENY]
    assert len(deny) == 1 and deny[0].reason == "purpose not shown"
    assert deny[0].outcome == Outcome.DENIED
    with transaction(db) as s, pytest.raises(Refused) as exc:
        flow.signing.approve(s, req.uid, who(signers[-1]), now=T0 + 2 * H)
    assert exc.value.rule in ("not-pending", "double-signing")
    with Session(db) as s:  # kept for good
        row = s.exec(select(AccessRequest).where(AccessRequest.uid == req.uid)).one()
        assert row.denial_reason == "purpose not shown"
        assert (
            s.exec(select(RequestSignature).where(RequestSignature.request_id == row.id))
            .all()[-1]
            .decision
            == "deny"
        )


def _refusal(db, flow, uid, signer, now, rule, who):
    with pytest.raises(Refused) as exc, transaction(db) as s:
        flow.signing.approve(s, uid, who(signer), now=now)
    assert exc.value.rule == rule, exc.value
    assert exc.value.event is not None and exc.value.event.outcome == Outcome.DENIED
    return exc.value


def test_self_approval_refused(db, flow, who):
    req = _file(flow, who, "dh_sales", "view", "A-INT")
    _refusal(db, flow, req.uid, "dh_sales", T0 + M, "self-approval", who)


def test_custodian_filing_for_own_top_secret_leaves_their_stage_to_the_alternate(db, flow, who):
    req = _file(flow, who, "keeper", "view", "A-TOP")
    # cs has no department head: the customer-service manager signs instead, the
    # general manager takes the manager's stage, the supervisor the custodian's.
    for i, signer in enumerate(["csm", "io", "gm", "sup"]):
        with transaction(db) as s:
            done = flow.signing.approve(s, req.uid, who(signer), now=T0 + (i + 1) * M)
    assert done.state == "approved"
    with Session(db) as s:
        roles = s.exec(
            select(RequestSignature.signer_role)
            .where(RequestSignature.request_id == done.id)
            .order_by(RequestSignature.stage_index)
        ).all()
    assert roles == [
        "cs_manager (alternate)",
        "information_officer",
        "general_manager (alternate)",
        "info_supervisor (alternate)",
    ]


def test_double_signing_refused_even_holding_both_roles(db, flow, who):
    req = _file(flow, who, "bob", "view", "A-SEC")
    with transaction(db) as s:
        flow.signing.approve(s, req.uid, who("both"), now=T0 + M)
    _refusal(db, flow, req.uid, "both", T0 + 2 * M, "double-signing", who)
    with transaction(db) as s:  # someone else can
        flow.signing.approve(s, req.uid, who("io"), now=T0 + 3 * M)


def test_custodian_who_signed_another_stage_cannot_sign_again(db, flow, who):
    req = _file(flow, who, "carol", "view", "A-TOP")
    for i, signer in enumerate(["dh_east", "keeper", "csm"]):
        with transaction(db) as s:
            flow.signing.approve(s, req.uid, who(signer), now=T0 + (i + 1) * M)
    _refusal(db, flow, req.uid, "keeper", T0 + H, "double-signing", who)


def test_wrong_department_refused(db, flow, who):
    req = _file(flow, who, "carol", "view", "A-INT")  # carol is in east
    _refusal(db, flow, req.uid, "dh_sales", T0 + M, "wrong-department", who)


def test_stages_in_order_and_all_required(db, flow, who):
    req = _file(flow, who, "carol", "view", "A-SEC")
    _refusal(db, flow, req.uid, "io", T0 + M, "wrong-role", who)  # dept head first
    _refusal(db, flow, req.uid, "csm", T0 + M, "wrong-role", who)
    _refusal(db, flow, req.uid, "gm", T0 + M, "wrong-role", who)


def test_wrong_custodian_refused(db, flow, who):
    req = _file(flow, who, "carol", "view", "A-TOP")
    for i, signer in enumerate(["dh_east", "io", "csm"]):
        with transaction(db) as s:
            flow.signing.approve(s, req.uid, who(signer), now=T0 + (i + 1) * M)
    _refusal(db, flow, req.uid, "io2", T0 + H, "wrong-custodian", who)


def test_73_hour_loan_refused_at_filing(db, flow, who):
    with pytest.raises(Refused) as exc:
        _file(flow, who, "carol", "loan", "A-INT", hours=73, material="folder", copies=1)
    assert exc.value.rule == "loan-limit" and "72 hours" in str(exc.value)
    req = _file(flow, who, "carol", "loan", "A-INT", hours=72, material="folder", copies=1)
    assert req.hours == 72


def test_approval_after_withdrawal_refused(db, flow, who, sink):
    req = _file(flow, who, "carol", "view", "A-INT")
    with pytest.raises(Refused), transaction(db) as s:
        flow.signing.withdraw(s, req.uid, who("dan"), now=T0 + M)  # only the requester
    with transaction(db) as s:
        flow.signing.withdraw(s, req.uid, who("carol"), now=T0 + M)
    _refusal(db, flow, req.uid, "dh_east", T0 + 2 * M, "not-pending", who)
    with pytest.raises(Refused), transaction(db) as s:
        flow.signing.withdraw(s, req.uid, who("carol"), now=T0 + 3 * M)  # no reuse either
    assert AuditAction.REQUEST_WITHDRAW in [e.action for e in entries(sink)]


def test_narrow_but_never_widen(db, flow, pe, who):
    req = _file(flow, who, "carol", "view", "A-INT", groups=["identity", "contact"], hours=12)
    with pytest.raises(Refused) as exc, transaction(db) as s:
        flow.signing.approve(s, req.uid, who("dh_east"), now=T0 + M, groups=["contact", "health"])
    assert exc.value.rule == "widen"
    with pytest.raises(Refused), transaction(db) as s:
        flow.signing.approve(s, req.uid, who("dh_east"), now=T0 + M, hours=13)
    with transaction(db) as s:
        flow.signing.approve(s, req.uid, who("dh_east"), now=T0 + M, groups=["contact"], hours=2)
    with pytest.raises(Refused), transaction(db) as s:  # not back up either
        flow.signing.approve(s, req.uid, who("io"), now=T0 + 2 * M, groups=["identity", "contact"])
    with transaction(db) as s:
        req = flow.signing.approve(s, req.uid, who("io"), now=T0 + 2 * M)
    assert req.groups == ["contact"] and req.hours == 2
    with Session(db) as s:
        pe.sync(s)
        meta = load_archive_meta(s, "A-INT")
    assert pe.decide(who("carol"), "read", meta, ["contact"], now=T0 + H).allowed
    assert not pe.decide(who("carol"), "read", meta, ["identity"], now=T0 + H).allowed
    assert not pe.decide(who("carol"), "read", meta, ["contact"], now=T0 + 2 * M + 2 * H).allowed


def test_expected_version_detects_a_stale_view(db, flow, who):
    req = _file(flow, who, "carol", "copy", "A-INT")
    with transaction(db) as s:
        flow.signing.approve(s, req.uid, who("gm"), now=T0 + M, expected_version=req.version)
    with pytest.raises(Conflict), transaction(db) as s:
        flow.signing.approve(s, req.uid, who("sup"), now=T0 + M, expected_version=req.version)


def test_concurrent_approvals_only_one_moves_the_stage(db, sink, pe, who):
    """Two approvers eligible for the same single stage press approve at once."""
    flow = Workflow(audit=sink, engine=pe)
    flow._db = db
    req = _file(flow, who, "carol", "copy", "A-INT")
    gm, sup = who("gm"), who("sup")
    barrier = threading.Barrier(2)
    outcomes: list[object] = []

    def act(p):
        try:
            barrier.wait()
            with transaction(db) as s:
                flow.signing.approve(s, req.uid, p, now=T0 + M)
            outcomes.append("ok")
        except PolicyError as exc:
            outcomes.append(exc)

    threads = [threading.Thread(target=act, args=(p,)) for p in (gm, sup)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert outcomes.count("ok") == 1, outcomes
    loser = next(o for o in outcomes if o != "ok")
    assert isinstance(loser, Conflict | Refused)
    with Session(db) as s:
        row = s.exec(select(AccessRequest).where(AccessRequest.uid == req.uid)).one()
        assert (
            len(s.exec(select(RequestSignature).where(RequestSignature.request_id == row.id)).all())
            == 1
        )
        assert len(s.exec(select(AccessGrant).where(AccessGrant.request_id == row.id)).all()) == 1


def test_concurrent_approvals_same_stage_of_a_chain(db, sink, pe, who):
    """Two information officers race for the second stage: exactly one signs it."""
    flow = Workflow(audit=sink, engine=pe)
    flow._db = db
    req = _file(flow, who, "carol", "view", "A-SEC")
    with transaction(db) as s:
        flow.signing.approve(s, req.uid, who("dh_east"), now=T0 + M)
    barrier = threading.Barrier(2)
    outcomes: list[object] = []

    def act(name):
        p = who(name)
        try:
            barrier.wait()
            with transaction(db) as s:
                flow.signing.approve(s, req.uid, p, now=T0 + 2 * M, expected_version=2)
            outcomes.append("ok")
        except PolicyError as exc:
            outcomes.append(exc)

    threads = [threading.Thread(target=act, args=(n,)) for n in ("io", "io2")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert outcomes.count("ok") == 1, outcomes
    with Session(db) as s:
        row = s.exec(select(AccessRequest).where(AccessRequest.uid == req.uid)).one()
        assert row.next_stage == 2 and row.version == 3


def test_pending_request_expires(db, flow, who, sink):
    req = _file(flow, who, "carol", "view", "A-INT")
    assert req.expires_at == T0 + timedelta(days=7)
    _refusal(db, flow, req.uid, "dh_east", T0 + timedelta(days=7), "not-pending", who)
    with transaction(db) as s:
        out = flow.sweeper.sweep(s, now=T0 + timedelta(days=7, seconds=1))
    assert out.expired_requests == [req.uid]
    with Session(db) as s:
        row = s.exec(select(AccessRequest).where(AccessRequest.uid == req.uid)).one()
        assert row.state == "expired"
        notes = [
            n.event
            for n in s.exec(select(Notification).where(Notification.request_uid == req.uid))
            if n.recipient == "carol"  # the signers were told it waits for them
        ]
    assert notes == ["filed", "expired"]
    assert AuditAction.REQUEST_EXPIRE in [e.action for e in entries(sink)]


def test_rolled_back_approval_grants_nothing(db, flow, pe, who):
    req = _file(flow, who, "carol", "copy", "A-INT")
    with pytest.raises(RuntimeError), transaction(db) as s:
        flow.signing.approve(s, req.uid, who("gm"), now=T0 + M)
        raise RuntimeError("the audit append failed")
    assert len(pe.links) == 0
    with Session(db) as s:
        meta = load_archive_meta(s, "A-INT")
    assert not pe.decide(who("carol"), "export", meta, now=T0 + 2 * M).allowed


def test_filing_input_is_checked(db, flow, who):
    bad = [
        {"kind": "peek"},
        {"purpose": "curiosity"},
        {"reason": " "},
        {"archives": []},
        {"archives": ["NOPE"]},
        {"groups": ["nope"]},
    ]
    for change in bad:
        args = {"kind": "view", "archives": ["A-INT"], "purpose": "revisit", "reason": "r"}
        args.update(change)
        with pytest.raises(PolicyError), transaction(db) as s:
            flow.filing.file(s, who("carol"), now=T0, **args)
    with pytest.raises(InvalidInput), transaction(db) as s:  # still in retention
        flow.filing.file(
            s,
            who("io"),
            kind="destroy",
            archives=["A-INT"],
            purpose="retention_expired",
            reason="r",
            now=T0,
        )
    with pytest.raises(Refused), transaction(db) as s:  # only an officer proposes
        flow.filing.file(
            s,
            who("carol"),
            kind="destroy",
            archives=["A-OLD"],
            purpose="retention_expired",
            reason="r",
            now=T0,
        )
    with pytest.raises(Refused), transaction(db) as s:  # visitors do not borrow
        flow.filing.file(
            s,
            who("ext"),
            kind="loan",
            archives=["A-INT"],
            purpose="revisit",
            reason="r",
            hours=2,
            material="m",
            copies=1,
            now=T0,
        )


def test_external_requester_credential_recorded(db, flow, who, sink):
    req = _file(flow, who, "ext", "view", "A-INT")
    assert req.credential_ref == "LETTER-2025-001"
    assert [s["name"] for s in req.stages] == ["information_officer"]
    assert entries(sink)[0].detail["credential_ref"] == "LETTER-2025-001"


def test_queue_and_request_list(db, flow, who):
    req = _file(flow, who, "carol", "view", "A-SEC")
    with Session(db) as s:
        assert [r.uid for r in flow.signing.queue_for(s, who("dh_east"), now=T0 + M)] == [req.uid]
        assert flow.signing.queue_for(s, who("dh_sales"), now=T0 + M) == []  # other department
        assert flow.signing.queue_for(s, who("io"), now=T0 + M) == []  # not its turn yet
    with transaction(db) as s:
        flow.signing.approve(s, req.uid, who("dh_east"), now=T0 + M)
    with Session(db) as s:
        assert [r.uid for r in flow.signing.queue_for(s, who("io"), now=T0 + 2 * M)] == [req.uid]
        assert flow.signing.queue_for(s, who("io"), now=T0 + timedelta(days=8)) == []  # expired
        mine = visibility.requests_for(s, "carol")
        assert [r.uid for r in mine] == [req.uid] and mine[0].next_stage == 1
        assert [x.signer for x in visibility.signatures(s, req.uid)] == ["dh_east"]
