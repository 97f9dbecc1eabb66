"""The signer rules one by one, below the workflow: ``Signing.check_signer`` and the
change-request rules of ``policies.changes`` (``signer_problem``, ``_could_sign``,
``resolve_stages``), on hand-built requests and stages.

A refusal is audited after the caller rolls back, so what it *carries* matters as much
as that it happens: each refusal is checked for its rule, its message and the whole
audit event (action, actor, outcome, archives, purpose, request id, reason).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlmodel import Session, SQLModel

from audit.events import Actor, AuditAction, AuditEvent, Outcome
from foundation.db import transaction
from policies.chains import StageSpec
from policies.changes import _could_sign, resolve_stages, signer_problem
from policies.decision import Principal
from policies.directory import disable_user, load_principal
from policies.errors import Conflict, InvalidInput, Refused, UserDisabled
from policies.models import AccessRequest, RequestSignature
from policies.signing import Signing
from tests.policies.conftest import T0
from vault.models import Archive

H = timedelta(hours=1)
DH = "department_head"
IO = "information_officer"
CSM = "cs_manager"
GM = "general_manager"
SUP = "info_supervisor"


def _stage(name: str, *roles: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "roles": list(roles),
        "label": f"the {name.replace('_', ' ')}",
        "article": "",
        "custodian": False,
        "scope": "any",
        **extra,
    }


def _request(**kw: Any) -> AccessRequest:
    values: dict[str, Any] = {
        "uid": "R-0001",
        "kind": "view",
        "requester": "carol",
        "requester_department": "east",
        "archives": ["A-INT", "A-SEC"],
        "custodian": "keeper",
        "purpose": "revisit",
        "reason": "needed for the customer's complaint",
        "stages": [
            _stage(DH, DH, scope="requester_department"),
            _stage(IO, IO),
        ],
        "next_stage": 0,
        "state": "pending",
        "version": 3,
        "created_at": T0,
        "expires_at": T0 + 24 * H,
    }
    values.update(kw)
    return AccessRequest(**values)


def _who(username: str, *roles: str, department: str = "") -> Principal:
    return Principal(username=username, roles=frozenset(roles), department=department)


def _refused_event(
    req: AccessRequest, who: Principal, action: AuditAction, rule: str, message: str
) -> AuditEvent:
    return AuditEvent(
        action=action,
        actor=Actor(who.username, who.role_label),
        outcome=Outcome.DENIED,
        archives=tuple(req.archives),
        purpose=req.purpose,
        reason=message,
        detail={"request": req.uid, "rule": rule},
    )


# -- Signing.check_signer -------------------------------------------------------------


@pytest.fixture
def session(tmp_path: Path) -> Iterator[Session]:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'signing.db'}")
    # The archive table too: a custodian's signature is checked against the archive's
    # current keeper.
    tables = [
        AccessRequest.__table__,  # type: ignore[attr-defined]
        RequestSignature.__table__,  # type: ignore[attr-defined]
        Archive.__table__,  # type: ignore[attr-defined]
    ]
    SQLModel.metadata.create_all(engine, tables=tables)
    with Session(engine) as s:
        yield s
    engine.dispose()


# check_signer reads nothing of its collaborators (desk, loans, staff): only the
# request, the signer and the signatures already in the session.
SIGNING = Signing.__new__(Signing)


def _stored(session: Session, **kw: Any) -> AccessRequest:
    req = _request(**kw)
    session.add(req)
    session.flush()
    return req


def _sign(session: Session, req: AccessRequest, signer: str, index: int = 0) -> None:
    assert req.id is not None
    session.add(
        RequestSignature(
            request_id=req.id,
            stage_index=index,
            stage_name=req.stages[index]["name"],
            signer=signer,
            signer_role="x",
            decision="approve",
            signed_at=T0,
        )
    )
    session.flush()


def _check(
    session: Session,
    req: AccessRequest,
    who: Principal,
    *,
    action: AuditAction = AuditAction.REQUEST_APPROVE,
    now: Any = T0 + H,
    expected_version: int | None = None,
) -> tuple[int, dict[str, Any], str]:
    return SIGNING.check_signer(session, req, who, action, now, expected_version)


def _refusal(
    session: Session,
    req: AccessRequest,
    who: Principal,
    rule: str,
    message: str,
    *,
    action: AuditAction = AuditAction.REQUEST_APPROVE,
    now: Any = T0 + H,
) -> None:
    with pytest.raises(Refused) as caught:
        _check(session, req, who, action=action, now=now)
    assert caught.value.rule == rule
    assert caught.value.message == message
    assert caught.value.event == _refused_event(req, who, action, rule, message)


DH_EAST = _who("dh_east", DH, department="east")
IO_1 = _who("io", IO, department="cs")


def test_the_first_stage_goes_to_a_head_of_the_requesters_department(session) -> None:
    req = _stored(session)
    assert _check(session, req, DH_EAST) == (0, req.stages[0], DH)


def test_a_stale_version_is_a_conflict_and_the_seen_one_is_not(session) -> None:
    req = _stored(session)
    with pytest.raises(Conflict) as caught:
        _check(session, req, DH_EAST, expected_version=2)
    assert caught.value.message == (
        "request R-0001 changed since you opened it (version 2 → 3); reload it"
    )
    assert _check(session, req, DH_EAST, expected_version=3)[0] == 0


@pytest.mark.parametrize("state", ["approved", "denied", "withdrawn", "expired"])
@pytest.mark.parametrize("action", [AuditAction.REQUEST_APPROVE, AuditAction.REQUEST_DENY])
def test_only_a_pending_request_is_signed(session, state, action) -> None:
    req = _stored(session, state=state)
    message = f"request R-0001 is {state}; it can no longer be signed"
    _refusal(session, req, DH_EAST, "not-pending", message, action=action)


def test_a_pending_request_is_not_signed_from_its_expiry_on(session) -> None:
    req = _stored(session)
    message = "request R-0001 expired at 2025-03-04T09:00:00+00:00 without a decision"
    _refusal(session, req, DH_EAST, "not-pending", message, now=T0 + 24 * H)
    _refusal(session, req, DH_EAST, "not-pending", message, now=T0 + 25 * H)
    assert _check(session, req, DH_EAST, now=T0 + 24 * H - timedelta(seconds=1))[0] == 0


def test_nobody_signs_their_own_request(session) -> None:
    req = _stored(session, requester="dh_east")
    _refusal(
        session,
        req,
        DH_EAST,
        "self-approval",
        "nobody signs their own request",
        action=AuditAction.REQUEST_DENY,
    )


def test_one_person_signs_one_stage_even_holding_both_roles(session) -> None:
    both = _who("both", DH, IO, department="east")
    req = _stored(session)
    _sign(session, req, "both")
    req.next_stage = 1
    _refusal(
        session,
        req,
        both,
        "double-signing",
        "you already signed a stage of request R-0001; one person signs at most one "
        "stage, even holding both roles",
    )
    assert _check(session, req, IO_1) == (1, req.stages[1], IO)


def test_a_signature_on_another_request_does_not_count(session) -> None:
    other = _stored(session, uid="R-0002")
    _sign(session, other, "dh_east")
    req = _stored(session)
    assert _check(session, req, DH_EAST)[0] == 0


def test_a_request_with_no_stage_left_is_refused(session) -> None:
    req = _stored(session, next_stage=2)
    _refusal(session, req, IO_1, "order", "request R-0001 has no stage left to sign")


def test_stages_are_signed_in_order_by_their_role(session) -> None:
    req = _stored(
        session, stages=[_stage(IO, IO, CSM), _stage(DH, DH, scope="requester_department")]
    )
    _refusal(
        session,
        req,
        DH_EAST,
        "wrong-role",
        "stage information_officer of request R-0001 is signed by the information "
        "officer (information_officer, cs_manager); stages are signed in order",
    )


def test_a_signer_holding_several_of_a_stages_roles_signs_in_the_first_by_name(
    session,
) -> None:
    req = _stored(session, stages=[_stage(IO, IO, CSM, GM)])
    assert _check(session, req, _who("x", GM, IO, SUP))[2] == GM
    assert _check(session, req, _who("y", IO, CSM))[2] == CSM


def test_a_custodian_stage_is_signed_by_the_archives_custodian_only(session) -> None:
    stages = [_stage("custodian", IO, custodian=True)]
    req = _stored(session, stages=stages)
    _refusal(
        session,
        req,
        IO_1,
        "wrong-custodian",
        "stage custodian of request R-0001 is signed by the archive's custodian (keeper)",
    )
    keeper = _who("keeper", IO, department="cs")  # the custodianship counts, as custodian
    assert _check(session, req, keeper) == (0, stages[0], "custodian")
    # a keeper who lost the role a keeper needs (Art 22) no longer signs
    _refusal(
        session,
        req,
        _who("keeper", department="cs"),
        "wrong-custodian",
        "you no longer hold the information officer or supervisor role a custodian needs "
        "(Art 22); another signer signs in your place",
    )


@pytest.mark.parametrize(
    ("department", "requester_department", "named"),
    [("sales", "east", "east"), ("", "east", "east"), ("", "", "no department")],
)
def test_a_department_head_signs_only_for_their_own_department(
    session, department, requester_department, named
) -> None:
    req = _stored(session, requester_department=requester_department)
    _refusal(
        session,
        req,
        _who("dh", DH, department=department),
        "wrong-department",
        f"a department head signs only for their own department; request R-0001 is from {named}",
    )


def test_a_department_scope_binds_the_custodian_stage_too(session) -> None:
    stages = [_stage("custodian", IO, custodian=True, scope="requester_department")]
    req = _stored(session, stages=stages)
    _refusal(
        session,
        req,
        _who("keeper", IO, department="cs"),
        "wrong-department",
        "a department head signs only for their own department; request R-0001 is from east",
    )


def test_a_change_requests_own_rules_are_refused_with_their_event(session) -> None:
    req = _stored(
        session,
        kind="reassign",
        stages=[_stage(IO, IO)],
        change={"department": "sales", "subjects": ["io"]},
    )
    _refusal(
        session,
        req,
        IO_1,
        "beneficiary",
        "request R-0001 gives you access; someone else signs it",
        action=AuditAction.REQUEST_DENY,
    )
    assert _check(session, req, _who("io2", IO))[0] == 0


# -- signer_problem -------------------------------------------------------------------

CHANGE_DH = _stage(DH, DH, GM, scope="change_department")


def _change(kind: str = "reassign", **change: Any) -> AccessRequest:
    return _request(kind=kind, change=change, stages=[CHANGE_DH])


def test_an_access_request_has_no_change_rules() -> None:
    req = _change(kind="view", department="sales", subjects=["dh_east"])
    assert signer_problem(req, DH_EAST, CHANGE_DH) is None


@pytest.mark.parametrize("kind", ["reassign", "reclassify", "role", "handover"])
def test_nobody_signs_a_change_that_gives_them_access(kind) -> None:
    req = _change(kind=kind, department="east", subjects=["bob", "dh_east"])
    assert signer_problem(req, DH_EAST, CHANGE_DH) == (
        "beneficiary",
        "request R-0001 gives you access; someone else signs it",
    )
    assert signer_problem(req, _who("dh_x", DH, department="east"), CHANGE_DH) is None


def test_a_change_without_a_change_or_subjects_names_no_beneficiary() -> None:
    req = _request(kind="reassign", change=None, stages=[_stage(IO, IO)])
    assert signer_problem(req, IO_1, req.stages[0]) is None
    req = _change(department="east")
    assert signer_problem(req, DH_EAST, CHANGE_DH) is None


@pytest.mark.parametrize(
    ("signer_department", "change", "named"),
    [
        ("sales", {"department": "east"}, "east"),
        ("", {"department": "east"}, "east"),
        ("", {"department": ""}, "no department"),
        ("", {}, "no department"),
        ("sales", {}, "no department"),
    ],
)
def test_a_department_head_signs_a_change_only_for_its_department(
    signer_department, change, named
) -> None:
    req = _change(**change)
    assert signer_problem(req, _who("dh", DH, department=signer_department), CHANGE_DH) == (
        "wrong-department",
        f"a department head signs only for their own department; request R-0001 concerns {named}",
    )


def test_the_changes_department_head_and_the_stages_other_roles_may_sign() -> None:
    req = _change(department="east")
    assert signer_problem(req, DH_EAST, CHANGE_DH) is None
    # the stage's other role signs for any department
    assert signer_problem(req, _who("gm", GM, department="board"), CHANGE_DH) is None
    assert signer_problem(req, _who("gm", GM, DH, department="sales"), CHANGE_DH) is None


def test_the_department_rule_is_the_change_departments_scope_only() -> None:
    req = _change(department="east")
    for scope in ("any", "requester_department"):
        stage = {**CHANGE_DH, "scope": scope}
        assert signer_problem(req, _who("dh", DH, department="sales"), stage) is None
    # a stage naming no roles still binds a department head to the change's department
    bare = {"name": DH, "scope": "change_department"}
    assert signer_problem(req, _who("dh", DH, department="sales"), bare) == (
        "wrong-department",
        "a department head signs only for their own department; request R-0001 concerns east",
    )
    assert signer_problem(req, DH_EAST, bare) is None


# -- _could_sign ----------------------------------------------------------------------


def _spec(name: str, *roles: str, **kw: Any) -> StageSpec:
    return StageSpec(name=name, roles=roles, label=f"the {name}", **kw)


CUSTODIAN = _spec("custodian", IO, custodian=True)


def test_a_filer_could_sign_the_custodian_stage_when_custodian_or_none_is_named() -> None:
    keeper = _who("keeper", IO)
    assert _could_sign(CUSTODIAN, keeper, "keeper", "sales") is True
    assert _could_sign(CUSTODIAN, keeper, None, "sales") is True
    assert _could_sign(CUSTODIAN, keeper, "other", "sales") is False


def test_a_filer_without_the_stages_role_could_not_sign_it() -> None:
    stage = _spec(IO, IO, CSM, scope="change_department")
    assert _could_sign(stage, _who("dh", DH, department="sales"), None, "sales") is False
    assert _could_sign(stage, _who("csm", CSM), None, "sales") is True


def test_a_department_head_could_sign_a_change_only_for_their_department() -> None:
    stage = _spec(DH, DH, GM, scope="change_department")
    assert _could_sign(stage, _who("dh", DH, department="sales"), None, "sales") is True
    assert _could_sign(stage, _who("dh", DH, department="east"), None, "sales") is False
    # holding the stage's other role too, the department does not matter
    assert _could_sign(stage, _who("dh", DH, GM, department="east"), None, "sales") is True
    # outside a change-department scope a department head could sign it anywhere
    anywhere = _spec(DH, DH, scope="any")
    assert _could_sign(anywhere, _who("dh", DH, department="east"), None, "sales") is True


# -- resolve_stages -------------------------------------------------------------------


def test_stages_the_filer_could_not_sign_are_stored_as_configured() -> None:
    stages = [
        _spec(DH, DH, scope="change_department", alternate_roles=(GM,), alternate_label="GM"),
        _spec(IO, IO),
    ]
    filer = _who("carol", "salesperson", department="sales")
    assert resolve_stages(stages, filer, custodian="keeper", department="sales") == [
        stages[0].as_dict(),
        stages[1].as_dict(),
    ]


def test_a_stage_the_filer_could_sign_goes_to_its_alternate() -> None:
    head = _spec(
        DH,
        DH,
        scope="change_department",
        alternate_roles=(GM, CSM),
        alternate_label="the general manager",
    )
    custodian = _spec(
        "custodian", IO, custodian=True, alternate_roles=(SUP,), alternate_label="supervisor"
    )
    filer = _who("dh", DH, department="sales")
    resolved = resolve_stages(
        [_spec(IO, IO), head, custodian], filer, custodian=None, department="sales"
    )
    assert resolved == [
        _spec(IO, IO).as_dict(),
        {
            "name": DH,
            "roles": [GM, CSM],
            "label": "the general manager",
            "article": "",
            "custodian": False,
            "scope": "any",
            "alternate_when": "no_usual_signer_left",
            "alternate_for": DH,
        },
        {
            "name": "custodian",
            "roles": [SUP],
            "label": "supervisor",
            "article": "",
            "custodian": False,
            "scope": "any",
            "alternate_when": "no_usual_signer_left",
            "alternate_for": "custodian",
        },
    ]


def test_a_stage_the_filer_could_sign_without_alternate_goes_to_another_holder() -> None:
    stage = _spec(IO, IO)
    resolved = resolve_stages([stage], _who("io", IO), custodian=None, department="sales")
    assert resolved == [stage.as_dict()]


def test_a_custodian_stage_without_alternate_needs_a_custodian_other_than_the_filer() -> None:
    keeper = _who("keeper", IO)
    with pytest.raises(InvalidInput) as caught:
        resolve_stages([CUSTODIAN], keeper, custodian=None, department="sales")
    assert caught.value.message == "this change needs the archive's custodian, and none is named"
    with pytest.raises(InvalidInput) as caught:
        resolve_stages([CUSTODIAN], keeper, custodian="keeper", department="sales")
    assert caught.value.message == (
        "you are the archive's custodian and cannot sign your own change"
    )
    assert resolve_stages([CUSTODIAN], keeper, custodian="other", department="sales") == [
        CUSTODIAN.as_dict()
    ]


# -- a disabled signer ----------------------------------------------------------------


def test_a_disabled_signer_never_reaches_the_signer_rules(db) -> None:
    """``check_signer`` takes a ``Principal``; a disabled account gets none, so it signs
    nothing from the moment it is disabled (the API loads the principal per request)."""
    with transaction(db) as s:
        assert load_principal(s, "dh_east").username == "dh_east"
        disable_user(s, "dh_east")
    with pytest.raises(UserDisabled, match="user 'dh_east' is disabled"), Session(db) as s:
        load_principal(s, "dh_east")
