"""Change requests in the workflow: who files, who signs instead, who never signs,
and that nothing changes before the final signature (SQLite and PostgreSQL)."""

from __future__ import annotations

import pytest
from sqlmodel import Session, select

from foundation.db import transaction
from policies import archive_changes
from policies.chains import CHAINS_FILE, parse_chains
from policies.directory import add_user, set_roles
from policies.errors import ConfigError, InvalidInput, Refused
from policies.models import RequestSignature
from tests.policies.conftest import T0
from vault.models import Archive, User


def _reassign(db, wf, who, filer, owner, archive="A-INT"):
    with transaction(db) as s:
        return archive_changes.reassign(
            wf, s, who(filer), archive_no=archive, owner=owner, contacts=None, reason="r", now=T0
        ).request


def _owner(db, no="A-INT") -> str:
    with Session(db) as s:
        return s.exec(select(Archive.owner).where(Archive.archive_no == no)).one()


def test_nobody_signs_a_change_that_gives_them_access(db, wf, who) -> None:
    with transaction(db) as s:
        add_user(s, username="sp_dh", roles=["salesperson", "department_head"], department="sales")
    req = _reassign(db, wf, who, "io", "sp_dh")
    assert req.change["subjects"] == ["sp_dh"]
    with pytest.raises(Refused) as caught, transaction(db) as s:
        wf.signing.approve(s, req.uid, who("sp_dh"), now=T0)
    assert caught.value.rule == "beneficiary"
    with transaction(db) as s:
        wf.signing.approve(s, req.uid, who("dh_sales"), now=T0)
    assert _owner(db) == "alice"  # not before the last signature
    with pytest.raises(Refused) as caught, transaction(db) as s:
        wf.signing.approve(s, req.uid, who("io"), now=T0)
    assert caught.value.rule == "self-approval"
    with transaction(db) as s:
        done = wf.signing.approve(s, req.uid, who("io2"), now=T0)
    assert done.state == "approved" and done.grant_uid is None
    assert _owner(db) == "sp_dh"


def test_a_filer_who_could_sign_a_stage_is_replaced_by_its_alternate(db, wf, who) -> None:
    # keeper is the top-secret archive's custodian: the supervisor signs in their place
    req = _reassign(db, wf, who, "keeper", "dan", archive="A-TOP")
    names = [(s["name"], tuple(s["roles"]), s.get("custodian")) for s in req.stages]
    assert names == [
        ("department_head", ("department_head",), False),
        ("information_officer", ("information_officer",), False),
        ("cs_manager", ("cs_manager",), False),
        ("custodian", ("info_supervisor",), False),
    ]
    # the department head files: the general manager signs instead
    req = _reassign(db, wf, who, "dh_sales", "dan")
    assert req.stages[0]["roles"] == ["general_manager"]
    with pytest.raises(Refused), transaction(db) as s:
        wf.signing.approve(s, req.uid, who("dh_sales"), now=T0)


def test_a_failed_apply_rolls_back_the_final_signature(db, wf, who) -> None:
    req = _reassign(db, wf, who, "io", "dan")
    with transaction(db) as s:
        wf.signing.approve(s, req.uid, who("dh_sales"), now=T0)
    with transaction(db) as s:  # dan is no longer a salesperson when it is signed
        set_roles(s, "dan", ["department_head"])
    with pytest.raises(InvalidInput), transaction(db) as s:
        wf.signing.approve(s, req.uid, who("io2"), now=T0)
    with Session(db) as s:
        signed = s.exec(select(RequestSignature.signer)).all()
    assert signed == ["dh_sales"] and _owner(db) == "alice"


def test_change_kinds_are_not_filed_as_access_requests(db, wf, who) -> None:
    with pytest.raises(InvalidInput, match="POST /customers"), transaction(db) as s:
        wf.filing.file(
            s, who("io"), kind="reassign", archives=["A-INT"], purpose="other", reason="r", now=T0
        )


def test_ever_admin_is_durable(db) -> None:
    with transaction(db) as s:
        set_roles(s, "adm", [])
        assert s.exec(select(User.ever_admin).where(User.username == "adm")).one()
        with pytest.raises(Refused, match="admin role"):
            set_roles(s, "adm", ["cs_manager"])
        add_user(s, username="ops", roles=["compliance"])
        # compliance reads every request and the whole log: never beside admin
        with pytest.raises(Refused, match="admin role"):
            set_roles(s, "ops", ["compliance", "admin"])
        set_roles(s, "ops", ["admin"])
        set_roles(s, "ops", [])
        for role in ("compliance", "salesperson"):
            with pytest.raises(Refused, match="admin role"):
                set_roles(s, "ops", [role])


def test_chains_keep_change_kinds_grant_free_and_admin_out_of_ownership() -> None:
    import tomllib

    base = tomllib.loads(CHAINS_FILE.read_text(encoding="utf-8"))
    bad = {**base, "kinds": {**base["kinds"]}}
    bad["kinds"]["reassign"] = {**base["kinds"]["reassign"], "grants": ["read"]}
    with pytest.raises(ConfigError, match="grants nothing"):
        parse_chains(bad)
    bad["kinds"]["reassign"] = {**base["kinds"]["reassign"], "filers": ["admin"]}
    with pytest.raises(ConfigError, match="admin"):
        parse_chains(bad)
