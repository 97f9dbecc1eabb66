"""Art 22: a secret or top-secret archive's custodian is an enabled information officer or
the information supervisor, never its owner or a contact; changing one is a request
nobody finishes alone; a leaving custodian names successors (SQLite and PostgreSQL)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from sqlmodel import Session, select

from audit.events import Outcome
from foundation.db import transaction
from policies import archive_changes
from policies.custodians import check_may_disable, custodian_problem, review
from policies.directory import add_user, disable_user
from policies.errors import Conflict, InvalidInput, PolicyError, Refused, Unfinishable
from policies.models import AccessRequest
from tests.policies.conftest import T0
from vault.models import Archive, ArchiveContact, User


@pytest.fixture
def cs(db):
    """A head of the customer-service department (signs a leaving officer's handover) and
    a salesperson who is an information officer too."""
    with transaction(db) as s:
        add_user(s, username="dh_cs", roles=["department_head"], department="cs")
        add_user(
            s,
            username="dual",
            roles=["salesperson", "information_officer"],
            department="sales",
            clearance="top_secret",
        )
    return db


def _keeper(db, no="A-TOP") -> str | None:
    with Session(db) as s:
        return s.exec(select(Archive.custodian).where(Archive.archive_no == no)).one()


def _set(db, no, **values) -> None:
    with transaction(db) as s:
        archive = s.exec(select(Archive).where(Archive.archive_no == no)).one()
        for key, value in values.items():
            setattr(archive, key, value)
        s.add(archive)


def _change(db, wf, who, filer, custodian, no="A-TOP"):
    with transaction(db) as s:
        return archive_changes.change_custodian(
            wf, s, who(filer), archive_no=no, custodian=custodian, reason="换人", now=T0
        )


def _sign(db, wf, who, uid, *signers):
    req = None
    for signer in signers:
        with transaction(db) as s:
            req = wf.signing.approve(s, uid, who(signer), now=T0)
    return req


def _refused_and_audited(exc: PolicyError, archive: str = "A-TOP") -> None:
    assert exc.event is not None and exc.event.outcome == Outcome.DENIED
    assert exc.event.archives == (archive,)


def _pending(db) -> int:
    with Session(db) as s:
        return len(s.exec(select(AccessRequest).where(AccessRequest.state == "pending")).all())


# -- the rule ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("candidate", "owner", "contacts", "expected"),
    [
        (None, "alice", (), "no custodian is named"),
        ("nobody", "alice", (), "not a user"),
        ("adm", "alice", (), "admin role"),
        ("ext", "alice", (), "visitor"),
        ("io2", "alice", (), "disabled"),
        ("alice", "alice", (), "not an information officer"),
        ("dh_sales", "alice", (), "not an information officer"),
        ("csm", "alice", (), "not an information officer"),
        ("io", "io", (), "owns the archive"),
        ("io", "alice", ("io",), "listed on the archive"),
        ("io", "alice", (), None),
        ("sup", "alice", ("bob",), None),
    ],
)
def test_who_may_keep_an_archive(db, candidate, owner, contacts, expected) -> None:
    with transaction(db) as s:
        disable_user(s, "io2")
    with Session(db) as s:
        problem = custodian_problem(s, SimpleNamespace(owner=owner, contacts=contacts), candidate)
    if expected is None:
        assert problem is None
    else:
        assert problem is not None and expected in problem


def test_an_archive_rows_contacts_are_read_from_the_database(db) -> None:
    with transaction(db) as s:
        top = s.exec(select(Archive).where(Archive.archive_no == "A-TOP")).one()
        s.add(ArchiveContact(archive_id=top.id, username="io"))
    with Session(db) as s:
        top = s.exec(select(Archive).where(Archive.archive_no == "A-TOP")).one()
        assert "contact" in (custodian_problem(s, top, "io") or "")
        assert custodian_problem(s, top, "io2") is None


def test_the_review_flags_every_archive_that_breaks_the_rule(db) -> None:
    _set(db, "A-TOP", custodian="alice")
    with Session(db) as s:
        found = {a.archive_no: problem for a, problem in review(s)}
    assert set(found) == {"A-SEC", "A-TOP"}  # internal archives need no custodian
    assert "no custodian" in (found["A-SEC"] or "")
    assert "not an information officer" in (found["A-TOP"] or "")


# -- changing a custodian ----------------------------------------------------------------


def test_nobody_alone_makes_a_friend_custodian(db, wf, who) -> None:
    req = _change(db, wf, who, "io", "io2")
    assert req.kind == "reclassify"
    assert req.change["classification"] == {"from": "top_secret", "to": "top_secret"}
    assert req.change["custodian"] == {"from": "keeper", "to": "io2"}
    assert [s["name"] for s in req.stages] == ["custodian", "cs_manager"]
    for signer, rule in (("io", "self-approval"), ("io2", "wrong-custodian")):
        with pytest.raises(Refused) as caught, transaction(db) as s:
            wf.signing.approve(s, req.uid, who(signer), now=T0)
        assert caught.value.rule == rule
    _sign(db, wf, who, req.uid, "keeper")
    assert _keeper(db) == "keeper"  # nothing changes before the last signature
    with pytest.raises(Refused) as caught, transaction(db) as s:
        wf.signing.approve(s, req.uid, who("io2"), now=T0)
    assert caught.value.rule in {"beneficiary", "wrong-role"}
    done = _sign(db, wf, who, req.uid, "csm")
    assert done.state == "approved" and _keeper(db) == "io2"


def test_the_custodian_filing_their_own_replacement_does_not_sign_it(db, wf, who) -> None:
    req = _change(db, wf, who, "keeper", "io2")
    assert req.stages[0]["alternate_for"] == "custodian" and req.stages[0]["roles"] == [
        "info_supervisor"
    ]
    with pytest.raises(Refused), transaction(db) as s:
        wf.signing.approve(s, req.uid, who("keeper"), now=T0)
    assert _sign(db, wf, who, req.uid, "sup", "csm").state == "approved"
    assert _keeper(db) == "io2"


def test_an_archive_without_a_valid_custodian_gets_one_through_the_supervisor(db, wf, who) -> None:
    req = _change(db, wf, who, "io", "io2", no="A-SEC")  # kept by nobody (an old archive)
    assert [s["name"] for s in req.stages] == ["custodian"]
    assert req.stages[0]["roles"] == ["info_supervisor"]
    assert _sign(db, wf, who, req.uid, "sup").state == "approved"
    assert _keeper(db, "A-SEC") == "io2"
    # a custodian who left their role no longer signs: the supervisor does
    _set(db, "A-TOP", custodian="alice")
    req = _change(db, wf, who, "io", "io2")
    assert req.stages[0]["roles"] == ["info_supervisor"]


@pytest.mark.parametrize(
    ("filer", "candidate", "status"),
    [
        ("io", "alice", InvalidInput),  # the owner, a salesperson
        ("io", "dh_sales", InvalidInput),  # not an officer or the supervisor
        ("io", "adm", Refused),  # an administrator's account
        ("io", "ext", InvalidInput),  # a visitor
        ("io", "nobody", InvalidInput),
        ("io", "keeper", InvalidInput),  # already the custodian
        ("io", "io", Refused),  # the filer names themselves
        ("alice", "io", Refused),  # a salesperson files nothing of the kind
        ("dh_sales", "io", Refused),
        ("adm", "io", Refused),
    ],
)
def test_a_refused_custodian_change_changes_nothing_and_is_audited(
    db, wf, who, filer, candidate, status
) -> None:
    with pytest.raises(status) as caught:
        _change(db, wf, who, filer, candidate)
    _refused_and_audited(caught.value)
    assert _keeper(db) == "keeper" and _pending(db) == 0


def test_the_supervisor_is_never_made_custodian_by_their_own_signature(db, wf, who) -> None:
    """Without a valid custodian the supervisor signs; naming the supervisor then leaves
    nobody to sign, and the filing says so."""
    with pytest.raises(Unfinishable, match="no one could sign") as caught:
        _change(db, wf, who, "io", "sup", no="A-SEC")
    assert _pending(db) == 0
    assert caught.value.event is not None and caught.value.event.detail["stage"] == "custodian"


def test_an_internal_archive_has_no_custodian(db, wf, who) -> None:
    with pytest.raises(InvalidInput, match="internal archive has no custodian"):
        _change(db, wf, who, "io", "io2", no="A-INT")


def test_a_custodian_disabled_before_the_last_signature_is_not_applied(db, wf, who) -> None:
    req = _change(db, wf, who, "io", "io2")
    _sign(db, wf, who, req.uid, "keeper")
    with transaction(db) as s:
        disable_user(s, "io2")
    with pytest.raises(Refused) as caught, transaction(db) as s:
        wf.signing.approve(s, req.uid, who("csm"), now=T0)
    assert caught.value.rule == "stale" and "disabled" in caught.value.message
    assert _keeper(db) == "keeper"


def test_a_custodian_change_whose_archive_moved_on_is_stale(db, wf, who) -> None:
    req = _change(db, wf, who, "io", "io2")
    _sign(db, wf, who, req.uid, "keeper")
    _set(db, "A-TOP", custodian="sup")
    with pytest.raises(Refused) as caught, transaction(db) as s:
        wf.signing.approve(s, req.uid, who("csm"), now=T0)
    assert caught.value.rule == "stale" and _keeper(db) == "sup"


# -- reclassification --------------------------------------------------------------------


def _reclassify(db, wf, who, no, level, custodian=None, filer="io"):
    with transaction(db) as s:
        return archive_changes.reclassify(
            wf, s, who(filer), archive_no=no, level=level, custodian=custodian, reason="r", now=T0
        )


@pytest.mark.parametrize(
    ("no", "level", "custodian", "words"),
    [
        ("A-INT", "secret", None, "no custodian is named"),
        ("A-INT", "top_secret", "alice", "not an information officer"),  # the owner
        ("A-SEC", "top_secret", None, "no custodian is named"),  # an old archive kept by none
        ("A-TOP", "internal", "io2", "internal archive has no custodian"),
    ],
)
def test_reclassifying_names_a_valid_custodian(db, wf, who, no, level, custodian, words) -> None:
    with pytest.raises(InvalidInput, match=words) as caught:
        _reclassify(db, wf, who, no, level, custodian)
    assert "Art 22" in caught.value.message or "internal" in caught.value.message
    _refused_and_audited(caught.value, no)
    with Session(db) as s:
        assert s.exec(select(Archive.classification).where(Archive.archive_no == no)).one() in {
            "internal",
            "secret",
            "top_secret",
        }
    assert _pending(db) == 0


def test_lowering_to_internal_clears_the_custodian_on_request(db, wf, who) -> None:
    req = _reclassify(db, wf, who, "A-TOP", "internal").request
    assert req is not None
    assert req.change["custodian"] == {"from": "keeper", "to": None}
    assert "alice" in req.change["subjects"]


def test_naming_oneself_custodian_through_a_reclassification_is_refused(db, wf, who) -> None:
    with pytest.raises(Refused) as caught:
        _reclassify(db, wf, who, "A-TOP", "top_secret", custodian="io")
    assert caught.value.rule == "self-appointment"
    assert _pending(db) == 0


# -- a leaving custodian -----------------------------------------------------------------


def _handover(db, wf, who, leaver="keeper", to=None, filer="adm", **kw):
    with transaction(db) as s:
        return wf.staff.file(s, from_user=leaver, to_user=to, actor=who(filer), now=T0, **kw)


def test_a_leaving_custodian_names_a_successor_for_each_archive(db, wf, who, cs) -> None:
    with pytest.raises(InvalidInput) as caught:
        _handover(db, wf, who)
    assert "A-TOP" in caught.value.message and "custodian" in caught.value.message
    for kw, words in (
        ({"custodians": {"A-TOP": "alice"}}, "not an information officer"),
        ({"custodian_to": "keeper"}, "the one leaving"),
        ({"custodians": {"A-INT": "io2"}, "custodian_to": "io2"}, "not the custodian"),
        ({"custodian_to": "adm"}, "admin"),
    ):
        with pytest.raises(InvalidInput, match=words):
            _handover(db, wf, who, **kw)
    assert _pending(db) == 0
    req = _handover(db, wf, who, custodians={"A-TOP": "io2"})
    assert req.change["custodians"] == {"A-TOP": "io2"} and req.archives == []
    assert "io2" in req.change["subjects"]
    # the keeper is the one leaving: the supervisor signs in the custodian's place
    assert [s["name"] for s in req.stages] == [
        "department_head",
        "information_officer",
        "cs_manager",
        "custodian",
    ]
    assert req.stages[-1]["roles"] == ["info_supervisor"]
    # the administrator who started it never finishes it
    with pytest.raises(Refused) as refused, transaction(db) as s:
        wf.signing.approve(s, req.uid, who("adm"), now=T0)
    assert refused.value.rule == "self-approval"
    done = _sign(db, wf, who, req.uid, "dh_cs", "io", "csm", "sup")
    assert done.state == "approved"
    assert _keeper(db) == "io2"
    with Session(db) as s:
        assert s.exec(select(User.disabled).where(User.username == "keeper")).one()


def test_a_handover_whose_kept_archives_changed_is_stale(db, wf, who, cs) -> None:
    req = _handover(db, wf, who, custodian_to="io2")
    _sign(db, wf, who, req.uid, "dh_cs", "io", "csm")
    _set(db, "A-SEC", custodian="keeper")  # the leaver keeps one more since filing
    with pytest.raises(Refused) as caught, transaction(db) as s:
        wf.signing.approve(s, req.uid, who("sup"), now=T0)
    assert caught.value.rule == "stale" and _keeper(db) == "keeper"


def test_the_successor_never_ends_as_custodian_of_what_they_receive(db, wf, who, cs) -> None:
    _set(db, "A-SEC", custodian="dual")
    with pytest.raises(InvalidInput, match="A-SEC"):
        _handover(db, wf, who, leaver="alice", to="dual", filer="dh_sales")
    assert _pending(db) == 0


def test_a_custodian_is_not_disabled_while_keeping_archives(db, wf, who, cs) -> None:
    with Session(db) as s, pytest.raises(Conflict, match="1 active archive") as caught:
        check_may_disable(s, "keeper")
    assert "handover" in caught.value.message
    with Session(db) as s:
        check_may_disable(s, "io2")  # keeps nothing


def test_a_leaver_signs_nothing_of_their_own_handover(db, wf, who, cs) -> None:
    """The leaving officer is not the filer and gains nothing, yet signing their own
    handover's officer stage would let the person leaving choose where their archives
    go: they are a party to it and never sign it."""
    _set(db, "A-SEC", custodian="io2")
    req = _handover(db, wf, who, leaver="keeper", custodian_to="io2")
    _sign(db, wf, who, req.uid, "dh_cs")
    with pytest.raises(Refused) as caught, transaction(db) as s:
        wf.signing.approve(s, req.uid, who("keeper"), now=T0)
    assert caught.value.rule == "party"
    assert _pending(db) == 1


def test_a_leaving_officer_without_a_department_head_is_handed_over_by_the_alternate(
    db, wf, who
) -> None:
    """The customer-service department has no head in this cast: the general manager
    signs that stage in the head's place, so the handover can finish."""
    req = _handover(db, wf, who, leaver="keeper", custodian_to="io2")
    assert req.stages[0]["name"] == "department_head"
    with pytest.raises(Refused), transaction(db) as s:
        wf.signing.approve(s, req.uid, who("dh_sales"), now=T0)  # another department's head
    done = _sign(db, wf, who, req.uid, "gm", "io", "csm", "sup")
    assert done.state == "approved" and _keeper(db) == "io2"
