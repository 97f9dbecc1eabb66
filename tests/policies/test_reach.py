"""Every chain is finishable: alternates sign when no usual signer is left, and a
request nobody could finish is refused when filed (409) naming the stage and the fix.

The cast (``tests.policies.conftest``): carol is in east (head dh_east); io, io2,
keeper and both are information officers (both also heads sales, with dh_sales);
sup, csm and gm hold the other offices alone; keeper keeps A-TOP. Configurations
are made by disabling accounts; "bare" chains are the shipped ones without
alternates, the configuration that dead-ended before alternates existed.
"""

from __future__ import annotations

import tomllib
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlmodel import Session, select

from audit.events import AuditAction, Outcome
from foundation.db import transaction
from policies import archive_changes, reach
from policies.chains import CHAINS_FILE, parse_chains
from policies.directory import add_user, disable_user
from policies.errors import ConfigError, Refused, Unfinishable
from policies.models import AccessRequest, Notification, RequestSignature
from policies.workflow import Workflow
from tests.auditlog import entries
from tests.policies.conftest import T0
from vault.models import Archive

M = timedelta(minutes=1)
IOS = ["both", "io", "io2", "keeper"]
LOAN = {"hours": 24, "material": "profile folder", "copies": 1}


def _file(db, wf, who, requester, kind, archive, **kw) -> AccessRequest:
    purpose = {"report": "statistics", "destroy": "retention_expired"}.get(kind, "revisit")
    with transaction(db) as s:
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


def _refused_at_filing(db, wf, who, requester, kind, archive, **kw) -> Unfinishable:
    with pytest.raises(Unfinishable) as caught:
        _file(db, wf, who, requester, kind, archive, **kw)
    return caught.value


def _disable(db, *names: str) -> None:
    with transaction(db) as s:
        for name in names:
            disable_user(s, name)


def _load(db, uid) -> AccessRequest:
    with Session(db) as s:
        return s.exec(select(AccessRequest).where(AccessRequest.uid == uid)).one()


def _now_signers(db, uid) -> list[str]:
    with Session(db) as s:
        return reach.signers_now(s, _load(db, uid))


def _sign(db, wf, who, uid, signer, i=1) -> AccessRequest:
    with transaction(db) as s:
        return wf.signing.approve(s, uid, who(signer), now=T0 + i * M)


def _roles(db, uid) -> list[tuple[str, str]]:
    with Session(db) as s:
        req = s.exec(select(AccessRequest).where(AccessRequest.uid == uid)).one()
        return [
            (sig.signer, sig.signer_role)
            for sig in s.exec(
                select(RequestSignature)
                .where(RequestSignature.request_id == req.id)
                .order_by(RequestSignature.stage_index)
            )
        ]


def _bare_chains():
    """The shipped chains with every access kind's alternates taken out."""
    data = tomllib.loads(CHAINS_FILE.read_text(encoding="utf-8"))
    for kind in ("view", "loan", "copy", "external", "report", "destroy"):
        for stage in data["kinds"][kind]["stages"]:
            stage.pop("alternate_roles", None)
            stage.pop("alternate_label", None)
    return parse_chains(data, source="bare")


# -- the loader --------------------------------------------------------------------------


def _with_stage(**stage: Any) -> dict[str, Any]:
    data = tomllib.loads(CHAINS_FILE.read_text(encoding="utf-8"))
    data["kinds"]["report"]["stages"][0].update(stage)
    return data


@pytest.mark.parametrize(
    ("alternates", "error"),
    [
        (["cs_manager"], "sign the stage already"),
        (["info_supervisor", "info_supervisor"], "twice"),
        (["admin"], "never sign"),
        (["compliance"], "never sign"),
        (["external"], "never sign"),
        (["nobody"], "unknown role"),
    ],
)
def test_the_loader_refuses_alternates_that_would_change_nothing_or_break_separation(
    alternates, error
) -> None:
    with pytest.raises(ConfigError, match=error):
        parse_chains(_with_stage(alternate_roles=alternates, alternate_label="x"))
    with pytest.raises(ConfigError, match="alternate_label"):
        parse_chains(_with_stage(alternate_roles=["info_supervisor"], alternate_label=""))


def test_a_stage_snapshot_carries_its_alternates(wf) -> None:
    head = wf.chains.kind("view").stages[0].as_dict()
    assert head["alternate_roles"] == ["cs_manager", "general_manager"]
    assert "no other head" in head["alternate_label"]
    custodian = wf.chains.kind("loan").stages_for(classification="top_secret", external=False)[-1]
    assert custodian.as_dict()["alternate_roles"] == ["info_supervisor"]


# -- the matrix: each kind x (usual signer present / only an alternate / nobody) -----------

# kind, requester, archive, stage, usual signers, alternates, filing arguments
MATRIX = [
    ("view", "carol", "A-INT", "department_head", ["dh_east"], ["csm", "gm"], {}),
    ("view", "carol", "A-INT", "information_officer", IOS, ["sup"], {}),
    ("view", "carol", "A-SEC", "cs_manager", ["csm"], ["gm"], {}),
    ("view", "carol", "A-TOP", "custodian", ["keeper"], ["sup"], {}),
    ("loan", "carol", "A-INT", "department_head", ["dh_east"], ["csm", "gm"], LOAN),
    ("loan", "carol", "A-INT", "information_officer", IOS, ["sup"], LOAN),
    ("loan", "carol", "A-SEC", "cs_manager", ["csm"], ["gm"], LOAN),
    ("loan", "carol", "A-TOP", "custodian", ["keeper"], ["sup"], LOAN),
    ("copy", "carol", "A-INT", "copy_approver", ["gm", "sup"], [], {}),
    ("copy", "carol", "A-TOP", "custodian", ["keeper"], ["sup"], {}),
    ("external", "carol", "A-INT", "info_supervisor", ["sup"], ["gm"], {"recipient": "Bank"}),
    ("external", "carol", "A-INT", "cs_manager", ["csm"], ["gm"], {"recipient": "Bank"}),
    ("report", "dh_east", None, "cs_manager", ["csm"], ["sup"], {}),
    # Art 10 names the general manager: alternates sign only the general manager's own.
    ("report", "dh_east", None, "general_manager", ["gm"], [], {}),
    ("destroy", "io", "A-OLD", "cs_manager", ["csm"], ["gm"], {}),
]
CASES = [
    pytest.param(*row, case, id=f"{row[0]}-{row[2]}-{row[3]}-{case}")
    for row in MATRIX
    for case in ("usual", "alternate", "nobody")
    if row[5] or case != "alternate"
]


@pytest.mark.parametrize(
    ("kind", "requester", "archive", "stage", "usual", "alternates", "kw", "case"), CASES
)
def test_matrix(db, wf, who, kind, requester, archive, stage, usual, alternates, kw, case):
    if case in ("alternate", "nobody"):
        _disable(db, *usual)
    if case == "nobody":
        _disable(db, *alternates)
        refused = _refused_at_filing(db, wf, who, requester, kind, archive, **kw)
        assert refused.stage == stage, refused.message
        assert f"no one could sign stage {stage} (" in refused.message
        assert "; fix: " in refused.message
        return
    req = _file(db, wf, who, requester, kind, archive, **kw)
    names = [s["name"] for s in req.stages]
    target = names.index(stage)
    # Walk the stages before it, keeping clear of the people it needs.
    for i in range(target):
        now = _now_signers(db, req.uid)
        signer = next((p for p in now if p not in usual + alternates), now[0])
        _sign(db, wf, who, req.uid, signer, i + 1)
    expected = usual if case == "usual" else alternates
    assert _now_signers(db, req.uid) == sorted(expected)
    after = _sign(db, wf, who, req.uid, expected[0], target + 1)
    assert after.next_stage == target + 1
    role = dict(_roles(db, req.uid))[expected[0]]
    assert role.endswith(" (alternate)") == (case == "alternate")


def test_an_alternate_needed_for_an_earlier_stage_cannot_also_sign_a_later_one(db, wf, who):
    """The supervisor must sign the supervisor's stage of an external provision, so with
    the custodian disabled nobody is left for the custodian's stage, although the
    supervisor holds its alternate role: a per-stage count would accept this."""
    _disable(db, "keeper")
    refused = _refused_at_filing(db, wf, who, "carol", "external", "A-TOP", recipient="Bank")
    assert refused.stage == "custodian"
    assert "the custodian keeper has no enabled account" in refused.message
    assert "sup is the only one who can sign stage info_supervisor" in refused.message


def test_the_search_picks_the_signer_that_leaves_the_later_stage_signable(db, wf, who):
    """A top-secret copy with its custodian disabled: the general manager approves the
    copy, so the supervisor is left for the custodian's stage."""
    _disable(db, "keeper")
    req = _file(db, wf, who, "carol", "copy", "A-TOP")
    assert _now_signers(db, req.uid) == ["gm", "sup"]
    _sign(db, wf, who, req.uid, "gm")
    assert _now_signers(db, req.uid) == ["sup"]
    assert _sign(db, wf, who, req.uid, "sup", 2).state == "approved"


# -- the signer rules of alternates -------------------------------------------------------


def test_alternates_never_sign_while_a_usual_signer_is_left(db, wf, who):
    req = _file(db, wf, who, "carol", "view", "A-INT")
    for alternate in ("csm", "gm"):
        with pytest.raises(Refused) as caught, transaction(db) as s:
            wf.signing.approve(s, req.uid, who(alternate), now=T0 + M)
        assert caught.value.rule == "wrong-role"
        assert "only when no usual signer is left, and 1 is" in caught.value.message
        with Session(db) as s:
            assert wf.signing.queue_for(s, who(alternate), now=T0 + M) == []
    with Session(db) as s:
        assert [r.uid for r in wf.signing.queue_for(s, who("dh_east"), now=T0 + M)] == [req.uid]
    _sign(db, wf, who, req.uid, "dh_east")
    with pytest.raises(Refused) as caught, transaction(db) as s:
        wf.signing.approve(s, req.uid, who("sup"), now=T0 + 2 * M)
    assert caught.value.rule == "wrong-role" and "and 4 are" in caught.value.message


def test_a_usual_signer_who_signed_an_earlier_stage_makes_the_alternate_eligible(db, wf, who, sink):
    _disable(db, "io", "io2", "both")  # keeper is the only officer and the custodian
    req = _file(db, wf, who, "carol", "view", "A-TOP")
    for i, signer in enumerate(["dh_east", "keeper", "csm"]):
        _sign(db, wf, who, req.uid, signer, i + 1)
    assert _now_signers(db, req.uid) == ["sup"]
    with pytest.raises(Refused) as caught, transaction(db) as s:
        wf.signing.approve(s, req.uid, who("keeper"), now=T0 + 5 * M)
    assert caught.value.rule == "double-signing"
    done = _sign(db, wf, who, req.uid, "sup", 6)
    assert done.state == "approved" and done.grant_uid
    assert _roles(db, req.uid)[-1] == ("sup", "info_supervisor (alternate)")
    approval = [e for e in entries(sink) if e.action == AuditAction.REQUEST_APPROVE][-1]
    assert approval.actor_role == "info_supervisor (alternate)"
    assert approval.detail["alternate_for"] == "custodian"


def test_the_requester_never_signs_even_holding_the_alternate_role(db, wf, who):
    # gm's department (board) has no head: the alternates sign, gm being one of them
    req = _file(db, wf, who, "gm", "view", "A-INT")
    assert _now_signers(db, req.uid) == ["csm"]
    with pytest.raises(Refused) as caught, transaction(db) as s:
        wf.signing.approve(s, req.uid, who("gm"), now=T0 + M)
    assert caught.value.rule == "self-approval"
    _disable(db, "csm")
    refused = _refused_at_filing(db, wf, who, "gm", "view", "A-INT")
    assert refused.stage == "department_head"
    assert "no enabled account of department board holds the department_head role" in (
        refused.message
    )
    assert "gm filed it" in refused.message


def test_disabled_accounts_do_not_count(db, wf, who):
    req = _file(db, wf, who, "carol", "view", "A-SEC")
    _sign(db, wf, who, req.uid, "dh_east")
    _sign(db, wf, who, req.uid, "io", 2)
    assert _now_signers(db, req.uid) == ["csm"]
    _disable(db, "csm")  # while it waits: the general manager may sign now
    assert _now_signers(db, req.uid) == ["gm"]
    assert _sign(db, wf, who, req.uid, "gm", 3).state == "approved"


def test_a_refusal_at_filing_is_audited_as_a_denied_filing(db, wf, who):
    _disable(db, "csm", "sup")
    refused = _refused_at_filing(db, wf, who, "dh_east", "report", None)
    event = refused.event
    assert event is not None and event.action == AuditAction.REQUEST_FILE
    assert event.outcome == Outcome.DENIED and event.actor.username == "dh_east"
    assert event.detail == {
        "request": None,
        "kind": "report",
        "rule": "unfinishable",
        "stage": "cs_manager",
    }
    assert event.reason == refused.message
    with Session(db) as s:  # nothing was filed
        assert s.exec(select(AccessRequest)).all() == []


# -- the three dead ends, end to end ------------------------------------------------------


@pytest.mark.parametrize(("kind", "kw"), [("view", {}), ("loan", LOAN)])
def test_dead_end_1_the_only_officer_keeps_the_top_secret_archive(db, wf, who, kind, kw):
    """The demo's dead end: one information officer, who is also the custodian."""
    _disable(db, "io", "io2", "both", "sup")
    refused = _refused_at_filing(db, wf, who, "carol", kind, "A-TOP", **kw)
    assert refused.stage == "custodian"
    assert refused.message == (
        "no one could sign stage custodian (the archive's custodian) of this top_secret "
        f"{kind} request: keeper is the custodian and is the only one who can sign stage "
        "information_officer; and no enabled account holds the alternate role "
        "info_supervisor; fix: name another custodian (POST /customers/A-TOP/custodian) or "
        "give a second account the information_officer role, or give another account the "
        "info_supervisor role (who signs instead)"
    )
    with transaction(db) as s:  # the fix: a supervisor
        add_user(s, username="sup2", roles=["info_supervisor"], department="cs")
    req = _file(db, wf, who, "carol", kind, "A-TOP", **kw)
    for i, signer in enumerate(["dh_east", "keeper", "csm", "sup2"]):
        done = _sign(db, wf, who, req.uid, signer, i + 1)
    assert done.state == "approved"
    assert _roles(db, req.uid)[-1] == ("sup2", "info_supervisor (alternate)")


@pytest.mark.parametrize(("kind", "kw"), [("view", {}), ("loan", LOAN)])
def test_dead_end_2_a_department_heads_own_request(db, sink, pe, who, kind, kw):
    _disable(db, "both")  # dh_sales is the only head of sales
    bare = Workflow(audit=sink, engine=pe, chains=_bare_chains())
    refused = _refused_at_filing(db, bare, who, "dh_sales", kind, "A-INT", **kw)
    assert refused.stage == "department_head"
    assert "dh_sales filed it; and the stage has no alternate" in refused.message
    assert "fix: give another enabled account of department sales the department_head role" in (
        refused.message
    )
    wf = Workflow(audit=sink, engine=pe)
    req = _file(db, wf, who, "dh_sales", kind, "A-INT", **kw)
    assert _now_signers(db, req.uid) == ["csm", "gm"]
    _sign(db, wf, who, req.uid, "csm")
    done = _sign(db, wf, who, req.uid, "io", 2)
    assert done.state == "approved"
    assert _roles(db, req.uid) == [
        ("csm", "cs_manager (alternate)"),
        ("io", "information_officer"),
    ]


def test_dead_end_3_the_customer_service_managers_own_report(db, sink, pe, who):
    bare = Workflow(audit=sink, engine=pe, chains=_bare_chains())
    refused = _refused_at_filing(db, bare, who, "csm", "report", None)
    assert refused.stage == "cs_manager" and "csm filed it" in refused.message
    wf = Workflow(audit=sink, engine=pe)
    req = _file(db, wf, who, "csm", "report", None)
    assert _now_signers(db, req.uid) == ["sup"]
    _sign(db, wf, who, req.uid, "sup")
    assert _sign(db, wf, who, req.uid, "gm", 2).state == "approved"
    assert _roles(db, req.uid) == [
        ("sup", "info_supervisor (alternate)"),
        ("gm", "general_manager"),
    ]


def test_a_custodian_filing_without_an_alternate_stage_is_still_refused(db, sink, pe, who):
    bare = Workflow(audit=sink, engine=pe, chains=_bare_chains())
    with pytest.raises(Refused) as caught:
        _file(db, bare, who, "keeper", "view", "A-TOP")
    assert caught.value.rule == "self-approval"


# -- telling the signers ------------------------------------------------------------------


def _waiting(db, uid) -> dict[str, str]:
    with Session(db) as s:
        return {
            n.recipient: n.message
            for n in s.exec(
                select(Notification).where(
                    Notification.request_uid == uid, Notification.event == "stage_waiting"
                )
            )
        }


def test_whoever_may_sign_the_next_stage_is_told(db, wf, who):
    req = _file(db, wf, who, "carol", "view", "A-INT")
    told = _waiting(db, req.uid)
    assert list(told) == ["dh_east"]
    assert told["dh_east"] == (
        f"view request {req.uid} from carol (A-INT) waits for stage department_head: "
        "your department head"
    )
    assert "complaint" not in told["dh_east"]  # the reason stays in the request
    _sign(db, wf, who, req.uid, "dh_east")
    assert sorted(_waiting(db, req.uid)) == ["both", "dh_east", "io", "io2", "keeper"]
    _sign(db, wf, who, req.uid, "io", 2)  # the last stage: nobody else to tell
    assert sorted(_waiting(db, req.uid)) == ["both", "dh_east", "io", "io2", "keeper"]


def test_alternates_are_told_when_no_usual_signer_is_left(db, wf, who):
    req = _file(db, wf, who, "csm", "report", None)
    assert _waiting(db, req.uid) == {
        "sup": f"report request {req.uid} from csm (no archives) waits for stage cs_manager: "
        "the customer-information supervisor (no other customer-service manager is left)"
    }


# -- re-derived chains --------------------------------------------------------------------


def _set(db, archive, **values):
    with transaction(db) as s:
        s.exec(sa.update(Archive).where(Archive.archive_no == archive).values(**values))


def test_a_re_derived_chain_keeps_the_alternates(db, wf, who):
    req = _file(db, wf, who, "carol", "view", "A-INT")
    _sign(db, wf, who, req.uid, "dh_east")
    _set(db, "A-INT", classification="secret")
    after = _sign(db, wf, who, req.uid, "io", 2)
    assert after.stages[-1]["name"] == "cs_manager"
    assert after.stages[-1]["alternate_roles"] == ["general_manager"]
    _disable(db, "csm")
    assert _sign(db, wf, who, req.uid, "gm", 3).state == "approved"


def test_a_re_derived_chain_nobody_could_finish_waits_and_the_requester_is_told(db, wf, who):
    req = _file(db, wf, who, "carol", "view", "A-INT")
    _sign(db, wf, who, req.uid, "dh_east")
    _disable(db, "sup")
    _set(db, "A-INT", classification="top_secret", custodian="io")
    after = _sign(db, wf, who, req.uid, "io2", 2)  # re-derived, then signed
    assert after.state == "pending"
    with Session(db) as s:
        told = s.exec(
            select(Notification.message).where(
                Notification.recipient == "carol", Notification.event == "rechained"
            )
        ).one()
    assert "no one could sign stage custodian" not in told  # io may still sign it
    _set(db, "A-INT", custodian="io2")  # the officer who signed becomes the custodian
    _sign(db, wf, who, req.uid, "csm", 3)  # re-derived again; the manager's stage still signs
    with Session(db) as s:
        told = s.exec(
            select(Notification.message)
            .where(Notification.recipient == "carol", Notification.event == "rechained")
            .order_by(Notification.id)
        ).all()[-1]
    assert f"no one could sign stage custodian (the archive's custodian) of request {req.uid}" in (
        told
    )
    assert "io2 is the custodian and signed an earlier stage" in told and "fix: " in told
    assert _load(db, req.uid).state == "pending"


# -- change requests use the same search --------------------------------------------------


def test_a_change_falls_to_its_alternate_when_the_only_head_gains_from_it(db, wf, who):
    _disable(db, "both")
    with transaction(db) as s:
        add_user(s, username="sp_dh", roles=["salesperson", "department_head"], department="sales")
    _disable(db, "dh_sales")  # sp_dh, the only head left, is the new owner
    with transaction(db) as s:
        req = archive_changes.reassign(
            wf, s, who("io"), archive_no="A-INT", owner="sp_dh", contacts=None, reason="r", now=T0
        ).request
    assert _now_signers(db, req.uid) == ["gm"]
    _disable(db, "gm")
    with pytest.raises(Unfinishable) as caught, transaction(db) as s:
        archive_changes.reassign(
            wf, s, who("io"), archive_no="A-INT", owner="sp_dh", contacts=None, reason="r", now=T0
        )
    assert caught.value.stage == "department_head"
    assert "sp_dh gains from the change" in caught.value.message


def test_the_general_managers_own_report_goes_to_the_supervisor_and_no_other_does(
    db, wf, who
) -> None:
    """``alternate_when = "filer"``: the supervisor stands in for the general manager only
    on the general manager's own report; for anyone else's the general manager signs."""
    own = _file(db, wf, who, "gm", "report", None)
    _sign(db, wf, who, own.uid, "csm", 1)
    assert _now_signers(db, own.uid) == ["sup"]
    done = _sign(db, wf, who, own.uid, "sup", 2)
    assert done.state == "approved"
    assert dict(_roles(db, own.uid))["sup"] == "info_supervisor (alternate)"
    other = _file(db, wf, who, "dh_east", "report", None)
    _sign(db, wf, who, other.uid, "csm", 1)
    assert _now_signers(db, other.uid) == ["gm"]
    with pytest.raises(Refused), transaction(db) as s:
        wf.signing.approve(s, other.uid, who("sup"), now=T0 + 3 * M)
