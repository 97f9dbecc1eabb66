"""A leaver's handover needs what reassigning its archives needs, and applies only to
the archives it recorded when filed (SQLite and PostgreSQL)."""

from __future__ import annotations

import tomllib
from datetime import date

import pytest
from sqlmodel import Session, select

from foundation.db import transaction
from policies.chains import CHAINS_FILE, parse_chains
from policies.errors import ConfigError, InvalidInput, Refused
from tests.policies.conftest import T0
from vault.models import Archive, ArchiveContact, User


def _file(db, wf, who, filer="adm"):
    with transaction(db) as s:
        return wf.staff.file(s, from_user="alice", to_user="dan", actor=who(filer), now=T0)


def _sign(db, wf, who, uid, *signers):
    req = None
    for signer in signers:
        with transaction(db) as s:
            req = wf.signing.approve(s, uid, who(signer), now=T0)
    return req


def _owners(db) -> set[str]:
    with Session(db) as s:
        return set(s.exec(select(Archive.owner)).all())


def _alice_enabled(db) -> bool:
    with Session(db) as s:
        return not s.exec(select(User.disabled).where(User.username == "alice")).one()


def _set(db, no: str, **values) -> None:
    with transaction(db) as s:
        archive = s.exec(select(Archive).where(Archive.archive_no == no)).one()
        for key, value in values.items():
            setattr(archive, key, value)
        s.add(archive)


def _add_archive(db, no: str, *, owner="alice", cls="internal", custodian=None, dept="sales"):
    with transaction(db) as s:
        s.add(
            Archive(
                archive_no=no,
                category="general",
                grade="A",
                classification=cls,
                owner=owner,
                custodian=custodian,
                department=dept,
                retention_until=date(2035, 1, 1),
            )
        )


def test_the_handover_chain_is_the_reassignment_chain() -> None:
    base = tomllib.loads(CHAINS_FILE.read_text(encoding="utf-8"))
    chains = parse_chains(base)
    for level in ("internal", "secret", "top_secret"):
        handover = chains.kind("handover").stages_for(classification=level, external=False)
        reassign = chains.kind("reassign").stages_for(classification=level, external=False)
        assert [(s.name, s.roles, s.custodian) for s in handover] == [
            (s.name, s.roles, s.custodian) for s in reassign
        ]
    # a handover chain weaker than the reassignment chain is refused at start-up
    weaker = {**base, "kinds": {**base["kinds"]}}
    weaker["kinds"]["handover"] = {
        **base["kinds"]["handover"],
        "stages": [s for s in base["kinds"]["handover"]["stages"] if s["name"] != "cs_manager"],
    }
    with pytest.raises(ConfigError, match=r"kinds\.reassign"):
        parse_chains(weaker)


def test_a_handover_is_signed_by_every_stage_a_reassignment_needs(db, wf, who) -> None:
    req = _file(db, wf, who)
    assert [s["name"] for s in req.stages] == [
        "department_head",
        "information_officer",
        "cs_manager",
        "custodian",
    ]
    assert (req.classification, req.custodian) == ("top_secret", "keeper")
    assert req.archives == ["A-INT", "A-OLD", "A-SEC", "A-TOP"]
    # in order, each by its role; the custodian stage by the custodian only
    with pytest.raises(Refused), transaction(db) as s:
        wf.signing.approve(s, req.uid, who("io"), now=T0)
    _sign(db, wf, who, req.uid, "dh_sales", "io", "csm")
    with pytest.raises(Refused) as caught, transaction(db) as s:
        wf.signing.approve(s, req.uid, who("sup"), now=T0)
    assert caught.value.rule == "wrong-custodian"
    assert _owners(db) == {"alice"} and _alice_enabled(db)
    assert _sign(db, wf, who, req.uid, "keeper").state == "approved"
    assert _owners(db) == {"dan"} and not _alice_enabled(db)


def test_an_internal_only_handover_needs_the_head_and_an_officer(db, wf, who) -> None:
    for no in ("A-SEC", "A-TOP"):
        _set(db, no, owner="bob")
    req = _file(db, wf, who)
    assert [s["name"] for s in req.stages] == ["department_head", "information_officer"]
    assert req.classification == "internal" and req.custodian is None
    assert _sign(db, wf, who, req.uid, "dh_sales").state == "pending"
    assert _owners(db) == {"alice", "bob"}
    _sign(db, wf, who, req.uid, "io")
    assert _owners(db) == {"dan", "bob"}


@pytest.mark.parametrize(
    "change",
    ["custodian", "raised", "new-archive", "archive-gone", "new-listing"],
)
def test_a_handover_whose_archives_changed_since_filing_is_stale(db, wf, who, change) -> None:
    req = _file(db, wf, who)
    _sign(db, wf, who, req.uid, "dh_sales", "io", "csm")
    if change == "custodian":  # the top-secret archive is now kept by someone else
        _set(db, "A-TOP", custodian="io2")
    elif change == "raised":
        _set(db, "A-INT", classification="secret", custodian="io2")
    elif change == "new-archive":
        _add_archive(db, "A-NEW", cls="top_secret", custodian="io2")
    elif change == "archive-gone":
        _set(db, "A-OLD", owner="bob")
    else:  # alice is listed on bob's archive after filing
        _add_archive(db, "A-BOB", owner="bob", cls="secret", custodian="io2")
        with transaction(db) as s:
            bobs = s.exec(select(Archive).where(Archive.archive_no == "A-BOB")).one()
            s.add(ArchiveContact(archive_id=bobs.id, username="alice"))
    signer = "io2" if change == "custodian" else "keeper"
    if change == "custodian":
        # the stage names the custodian recorded at filing; the new one cannot sign it
        with pytest.raises(Refused) as caught, transaction(db) as s:
            wf.signing.approve(s, req.uid, who("io2"), now=T0)
        assert caught.value.rule == "wrong-custodian"
        signer = "keeper"
    with pytest.raises(Refused) as caught, transaction(db) as s:
        wf.signing.approve(s, req.uid, who(signer), now=T0)
    assert caught.value.rule == "stale" and "file a new one" in caught.value.message
    assert "dan" not in _owners(db) and _alice_enabled(db)


def test_top_secret_archives_with_different_custodians_are_refused_when_filed(db, wf, who) -> None:
    _add_archive(db, "A-TOP2", cls="top_secret", custodian="io2")
    with pytest.raises(InvalidInput, match="different custodians") as caught, transaction(db) as s:
        wf.staff.file(s, from_user="alice", to_user="dan", actor=who("adm"), now=T0)
    assert "A-TOP" in str(caught.value) and "A-TOP2" in str(caught.value)
    assert "reassign" in str(caught.value)
    # handed over by a reassign request first, the rest goes by one handover
    _set(db, "A-TOP2", owner="bob")
    assert _file(db, wf, who).custodian == "keeper"


def test_contact_listings_count_towards_the_chain(db, wf, who) -> None:
    """Being listed on an archive reads it as owning it does: a handover moving a
    listing on a secret archive needs the customer-service manager."""
    for no in ("A-SEC", "A-TOP", "A-INT", "A-OLD"):
        _set(db, no, owner="bob")
    with transaction(db) as s:
        secret = s.exec(select(Archive).where(Archive.archive_no == "A-SEC")).one()
        s.add(ArchiveContact(archive_id=secret.id, username="alice"))
    req = _file(db, wf, who)
    assert req.change["archives"] == [] and req.change["listed_on"] == ["A-SEC"]
    assert [s["name"] for s in req.stages] == [
        "department_head",
        "information_officer",
        "cs_manager",
    ]
    done = _sign(db, wf, who, req.uid, "dh_sales", "io", "csm")
    assert done.change["applied"]["listed_on"] == ["A-SEC"]
    with Session(db) as s:
        listed = s.exec(
            select(ArchiveContact.username).where(ArchiveContact.archive_id == secret.id)
        ).all()
    assert listed == ["dan"]


def test_archives_of_another_department_go_by_reassign_requests(db, wf, who) -> None:
    _add_archive(db, "A-EAST", dept="east")
    with pytest.raises(InvalidInput, match="another department") as caught, transaction(db) as s:
        wf.staff.file(s, from_user="alice", to_user="dan", actor=who("adm"), now=T0)
    assert "A-EAST" in str(caught.value)
