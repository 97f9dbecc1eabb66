"""One person alone never widens who can read an archive (over HTTP).

Each attack below worked on one person's say-so before: reassigning an archive or
adding contacts, lowering a classification or changing its custodian, naming
readers or a custodian when filing an archive, giving an account a role that reads
content, and a leaver's handover. Now each is refused
or becomes a request that the attacker alone cannot finish, and the would-be
reader still cannot read; a second person's signature applies the change.
"""

from __future__ import annotations

import pytest

from foundation.db import transaction
from policies.directory import add_user
from tests.api.conftest import _HASH, PASSWORD
from tests.factories import archive


@pytest.fixture
def more(api_vault):
    """A second information officer and a registered visitor."""
    with transaction(api_vault.engine) as session:
        for name, roles, dept, external, cred in (
            ("xu.ming", ["information_officer"], "客户服务部", False, None),
            ("visitor.wu", ["external"], "访客", True, "介绍信 2026-017"),
        ):
            user = add_user(
                session,
                username=name,
                roles=roles,
                department=dept,
                clearance="top_secret" if not external else "internal",
                external=external,
                credential_ref=cred,
            )
            user.password_hash = _HASH
            session.add(user)


def _new(client, headers, **over) -> str:
    body = archive(**over)
    body.pop("owner", None)
    r = client.post("/customers", json=body, headers=headers)
    assert r.status_code == 201, r.text
    return r.json()["archive"]["archive_no"]


def _sign(client, headers, uid, expect=200) -> dict:
    r = client.post(f"/requests/{uid}/approve", json={}, headers=headers)
    assert r.status_code == expect, r.text
    return r.json()


def _reads(client, headers, no) -> bool:
    r = client.get(f"/customers/{no}?groups=identity", headers=headers)
    assert r.status_code in (200, 403), r.text
    return r.status_code == 200


def _reads_clear(client, headers, no) -> bool:
    """Reads the identity group unmasked (a 200 with everything masked does not count)."""
    r = client.get(f"/customers/{no}?groups=identity", headers=headers)
    assert r.status_code in (200, 403), r.text
    return r.status_code == 200 and not r.json()["masked_groups"]


def _people(api_vault, *people) -> None:
    """people: (name, roles, department, clearance)."""
    with transaction(api_vault.engine) as session:
        for name, roles, dept, clearance in people:
            user = add_user(
                session, username=name, roles=roles, department=dept, clearance=clearance
            )
            user.password_hash = _HASH
            session.add(user)


# -- reassignment and contacts -------------------------------------------------------


def test_an_information_officer_alone_cannot_hand_an_archive_to_someone(
    client, login, more
) -> None:
    no = _new(client, login("zhang.wei"))
    li = login("li.na")
    officer = login("chen.jing")
    r = client.post(
        f"/customers/{no}/owner",
        headers=officer,
        json={"owner": "li.na", "contacts": ["zhang.wei"], "reason": "调岗"},
    )
    assert r.status_code == 202, r.text
    req = r.json()
    assert req["kind"] == "reassign" and req["state"] == "pending"
    assert [s["name"] for s in req["stages"]] == ["department_head", "information_officer"]
    assert req["next_signer"] == "the archive's department head"
    assert req["change"]["owner"] == {"from": "zhang.wei", "to": "li.na"}
    assert not _reads(client, li, no)  # nothing changed yet
    # the filer never signs; another department's head does not sign for this one
    assert _sign(client, officer, req["id"], 403)["rule"] == "self-approval"
    _sign(client, login("head.two"), req["id"], 404)  # may not sign it: answered as an unknown id
    _sign(client, login("head.one"), req["id"])
    assert not _reads(client, li, no)
    assert _sign(client, officer, req["id"], 403)["rule"] == "self-approval"
    done = _sign(client, login("xu.ming"), req["id"])
    assert done["state"] == "approved"
    assert done["change"]["applied"] == {"owner": "li.na", "contacts": ["zhang.wei"]}
    assert _reads(client, li, no)
    assert _reads(client, login("zhang.wei"), no)  # now a listed contact
    got = client.get(f"/requests/{req['id']}", headers=officer).json()
    assert [s["signer"] for s in got["signatures"]] == ["head.one", "xu.ming"]


def test_a_department_head_cannot_take_another_departments_archive(client, login) -> None:
    no = _new(client, login("zhang.wei"))  # 销售一部
    r = client.post(
        f"/customers/{no}/owner",
        headers=login("head.two"),  # 销售二部
        json={"owner": "wang.fang", "reason": "调岗"},
    )
    assert r.status_code == 403 and r.json()["rule"] == "wrong-department"
    assert not _reads(client, login("wang.fang"), no)
    log = client.get(
        f"/audit?archive={no}&action=archive:reassign", headers=login("qian.audit")
    ).json()["items"]
    assert [(e["actor"], e["outcome"], e["detail"]["rule"]) for e in log] == [
        ("head.two", "denied", "wrong-department")
    ]
    # nor give one of his own department's archives to another department's salesperson
    r = client.post(
        f"/customers/{no}/owner",
        headers=login("head.one"),
        json={"owner": "wang.fang", "reason": "调岗"},
    )
    assert r.status_code == 403 and "销售二部" in r.json()["detail"]


def test_an_administrator_never_reassigns_even_a_secret_archive(client, login) -> None:
    no = _new(client, login("zhang.wei"), classification="secret", custodian="chen.jing")
    for body in ({"owner": "li.na"}, {"contacts": ["li.na"]}, {"contacts": []}):
        r = client.post(
            f"/customers/{no}/owner", headers=login("admin"), json={**body, "reason": "调岗"}
        )
        assert r.status_code == 403, r.text
    assert not _reads(client, login("li.na"), no)
    log = client.get(f"/audit?archive={no}", headers=login("qian.audit")).json()["items"]
    assert any(e["outcome"] == "denied" and e["actor"] == "admin" for e in log)


def test_successors_are_salespeople_never_visitors_or_administrators(client, login, more) -> None:
    no = _new(client, login("zhang.wei"))
    admin = login("admin")
    r = client.post(
        "/users",
        headers=admin,
        json={"username": "ghost", "roles": ["admin"]},
    )
    assert r.status_code == 201, r.text
    assert client.patch("/users/ghost", json={"roles": []}, headers=admin).status_code == 200
    head = login("head.one")
    cases = {
        "visitor.wu": "external",
        "ghost": "ever-admin",  # held admin once, holds nothing now
        "admin": "ever-admin",
    }
    for who, rule in cases.items():
        for body in ({"owner": who}, {"contacts": [who]}):
            r = client.post(f"/customers/{no}/owner", headers=head, json={**body, "reason": "x"})
            assert r.status_code == 403 and r.json()["rule"] == rule, (who, r.text)
    r = client.post(
        f"/customers/{no}/owner", headers=head, json={"owner": "head.one", "reason": "x"}
    )
    assert r.status_code == 422 and "not a salesperson" in r.json()["detail"]


def test_removing_contacts_narrows_and_is_done_at_once_and_audited(client, login) -> None:
    no = _new(client, login("zhang.wei"))
    head = login("head.one")
    r = client.post(
        f"/customers/{no}/owner", headers=head, json={"contacts": ["li.na"], "reason": "x"}
    )
    assert r.status_code == 202
    _sign(client, login("zhou.gm"), r.json()["id"])  # in place of the filing head
    _sign(client, login("chen.jing"), r.json()["id"])
    assert _reads(client, login("li.na"), no)
    r = client.post(f"/customers/{no}/owner", headers=head, json={"contacts": [], "reason": "x"})
    assert r.status_code == 200, r.text
    assert r.json()["contacts"] == [] and r.json()["owner"] == "zhang.wei"
    assert not _reads(client, login("li.na"), no)
    log = client.get(
        f"/audit?archive={no}&action=archive:reassign", headers=login("qian.audit")
    ).json()["items"]
    assert any(e["detail"].get("op") == "remove-contacts" for e in log)


def test_a_reassignment_whose_archive_moved_meanwhile_is_not_applied(client, login, more) -> None:
    no = _new(client, login("zhang.wei"))
    first = client.post(
        f"/customers/{no}/owner",
        headers=login("chen.jing"),
        json={"owner": "li.na", "reason": "x"},
    ).json()
    second = client.post(
        f"/customers/{no}/owner",
        headers=login("xu.ming"),
        json={"owner": "li.na", "reason": "y"},
    ).json()
    _sign(client, login("head.one"), first["id"])
    _sign(client, login("xu.ming"), first["id"])
    _sign(client, login("head.one"), second["id"])
    assert _sign(client, login("chen.jing"), second["id"], 403)["rule"] == "stale"


# -- classification and custodian -------------------------------------------------------


def test_one_officer_cannot_declassify_a_top_secret_archive(client, login) -> None:
    no = _new(client, login("zhang.wei"))
    r = client.post(
        f"/customers/{no}/classification",
        headers=login("chen.jing"),
        json={"classification": "top_secret", "custodian": "chen.jing", "reason": "重要客户"},
    )
    assert r.status_code == 403 and r.json()["rule"] == "self-appointment"  # nor by raising
    r = client.post(
        f"/customers/{no}/classification",
        headers=login("sun.li"),
        json={"classification": "top_secret", "custodian": "chen.jing", "reason": "重要客户"},
    )
    assert r.status_code == 200, r.text
    owner = login("zhang.wei")
    assert not _reads(client, owner, no)  # top-secret: only under a custodian's grant
    manager = login("sun.li")
    r = client.post(
        f"/customers/{no}/classification",
        headers=manager,
        json={"classification": "internal", "reason": "降密"},
    )
    assert r.status_code == 202, r.text
    req = r.json()
    assert req["kind"] == "reclassify"
    assert req["change"]["classification"] == {"from": "top_secret", "to": "internal"}
    # the current custodian signs; the manager filed, so the general manager stands in
    assert [s["name"] for s in req["stages"]] == ["custodian", "cs_manager"]
    assert req["next_signer"] == "the archive's current custodian (chen.jing)"
    assert not _reads(client, owner, no)
    assert _sign(client, manager, req["id"], 403)["rule"] == "self-approval"
    # the information supervisor sees every request, so she is refused by its rule
    assert _sign(client, login("zhao.lei"), req["id"], 403)["rule"] == "wrong-custodian"
    _sign(client, login("chen.jing"), req["id"])
    assert not _reads(client, owner, no)
    assert _sign(client, manager, req["id"], 403)["rule"] == "self-approval"
    done = _sign(client, login("zhou.gm"), req["id"])
    assert done["change"]["applied"]["classification"] == "internal"
    assert _reads(client, owner, no)


def test_one_officer_cannot_name_any_custodian(client, login) -> None:
    no = _new(client, login("zhang.wei"), classification="secret", custodian="chen.jing")
    r = client.post(
        f"/customers/{no}/classification",
        headers=login("sun.li"),
        json={"classification": "secret", "custodian": "zhao.lei", "reason": "换人"},
    )
    assert r.status_code == 202, r.text
    req = r.json()
    assert [s["name"] for s in req["stages"]] == ["custodian"]
    assert req["change"]["custodian"] == {"from": "chen.jing", "to": "zhao.lei"}
    # the new custodian does not sign their own appointment; the current one does
    assert _sign(client, login("zhao.lei"), req["id"], 403)["rule"] == "wrong-custodian"
    _sign(client, login("chen.jing"), req["id"])
    got = client.get(f"/requests/{req['id']}", headers=login("sun.li")).json()
    assert got["change"]["applied"]["custodian"] == "zhao.lei"
    # a custodian is an information officer or the supervisor, never the owner
    for who in ("zhang.wei", "head.one", "admin"):
        r = client.post(
            f"/customers/{no}/classification",
            headers=login("sun.li"),
            json={"classification": "top_secret", "custodian": who, "reason": "x"},
        )
        assert r.status_code in (403, 422), r.text


def test_raising_needs_a_custodian_and_stays_direct(client, login) -> None:
    no = _new(client, login("zhang.wei"))
    officer = login("chen.jing")
    r = client.post(
        f"/customers/{no}/classification",
        headers=officer,
        json={"classification": "secret", "reason": "重要客户"},
    )
    assert r.status_code == 422 and "custodian" in r.json()["detail"]
    r = client.post(
        f"/customers/{no}/classification",
        headers=officer,
        json={"classification": "secret", "custodian": "zhang.wei", "reason": "重要客户"},
    )
    assert r.status_code == 422 and "information officer" in r.json()["detail"]
    r = client.post(
        f"/customers/{no}/classification",
        headers=officer,
        json={"classification": "secret", "custodian": "zhao.lei", "reason": "重要客户"},
    )
    assert r.status_code == 200 and r.json()["custodian"] == "zhao.lei"


# -- filing a new archive --------------------------------------------------------------


def _file_new(client, headers, **over):
    body = archive(**over)
    if "owner" not in over:
        body.pop("owner", None)
    return client.post("/customers", json=body, headers=headers)


def _listed(client, login) -> int:
    return client.get("/customers", headers=login("chen.jing")).json()["total"]


def test_a_salesperson_cannot_list_another_departments_salesperson_on_a_new_archive(
    client, login, more
) -> None:
    """Adding a contact to an archive is a reassign request; naming one when filing it
    passes the same check (enabled salesperson of its department, never a visitor or an
    account that is or was admin), or one salesperson alone would make a reader."""
    zhang = login("zhang.wei")
    r = client.post(
        "/users", headers=login("admin"), json={"username": "ghost", "roles": ["admin"]}
    )
    assert r.status_code == 201, r.text
    cases = {
        "wang.fang": (403, "wrong-department"),  # 销售二部
        "visitor.wu": (403, "external"),
        "admin": (403, "ever-admin"),
        "ghost": (403, "ever-admin"),
        "head.one": (422, None),  # not a salesperson
        "nobody.x": (422, None),  # not a user
    }
    for who, (status, rule) in cases.items():
        r = _file_new(client, zhang, contacts=[who])
        assert r.status_code == status, (who, r.text)
        assert r.json().get("rule") == rule, (who, r.text)
        assert "王小明" not in r.text and "13800138000" not in r.text
    assert _listed(client, login) == 0  # nothing was filed
    log = client.get(
        "/audit?actor=zhang.wei&action=archive:create", headers=login("qian.audit")
    ).json()["items"]
    assert sum(e["outcome"] == "denied" for e in log) == 4  # every refusal is audited
    assert not any(e["outcome"] == "success" for e in log)
    # A salesperson of the archive's own department is named, and listed once a second
    # person signs the reassign request filing the archive opened.
    r = _file_new(client, zhang, contacts=["li.na"])
    assert r.status_code == 201, r.text
    no = r.json()["archive"]["archive_no"]
    assert r.json()["archive"]["contacts"] == []
    pending = r.json()["contacts_request"]
    assert pending["kind"] == "reassign" and pending["state"] == "pending"
    assert pending["change"]["added_contacts"] == ["li.na"]
    assert not _reads(client, login("li.na"), no)
    _sign(client, login("head.one"), pending["id"])
    _sign(client, login("chen.jing"), pending["id"])
    assert _reads(client, login("li.na"), no)
    assert not _reads(client, login("wang.fang"), no)


def test_a_new_archive_is_filed_in_the_filers_department(client, login) -> None:
    """A salesperson files in his own department (its salespeople are the ones who may
    be listed); an information officer files for any department, for one of its
    salespeople."""
    r = _file_new(client, login("zhang.wei"), department="销售二部")
    assert r.status_code == 403 and r.json()["rule"] == "wrong-department", r.text
    r = _file_new(client, login("zhang.wei"), department="销售二部", contacts=["wang.fang"])
    assert r.status_code == 403 and r.json()["rule"] == "wrong-department", r.text
    assert _listed(client, login) == 0
    officer = login("chen.jing")
    r = _file_new(client, officer, owner="wang.fang", department="销售一部")
    assert r.status_code == 403 and r.json()["rule"] == "wrong-department", r.text
    r = _file_new(client, officer, owner="head.two", department="销售二部")
    assert r.status_code == 422 and "not a salesperson" in r.json()["detail"], r.text
    r = _file_new(client, officer, owner="wang.fang", department="销售二部")
    assert r.status_code == 201, r.text
    assert r.json()["archive"]["department"] == "销售二部"
    assert _reads(client, login("wang.fang"), r.json()["archive"]["archive_no"])
    r = _file_new(client, login("wang.fang"))
    assert r.status_code == 403, r.text  # the factory's 销售一部 is not wang.fang's
    body = archive()
    body.pop("owner")
    body.pop("department")
    r = client.post("/customers", json=body, headers=login("wang.fang"))
    assert r.status_code == 201 and r.json()["archive"]["department"] == "销售二部"


def test_an_officer_cannot_create_a_secret_archive_whose_custodian_is_a_salesperson(
    client, login
) -> None:
    """Custodians are information officers or the supervisor and never the owner, and
    secret and top-secret archives always have one (DOMAIN.md): filing checks both,
    as raising a classification does."""
    officer = login("chen.jing")
    for level in ("top_secret", "secret", "internal"):
        r = _file_new(
            client, officer, classification=level, owner="zhang.wei", custodian="zhang.wei"
        )
        assert r.status_code == 422 and "information officer" in r.json()["detail"], r.text
        r = _file_new(client, officer, classification=level, owner="zhang.wei", custodian="li.na")
        assert r.status_code == 422 and "information officer" in r.json()["detail"], r.text
        r = _file_new(client, officer, classification=level, owner="zhang.wei", custodian="admin")
        assert r.status_code == 403 and r.json()["rule"] == "ever-admin", r.text
    zhang = login("zhang.wei")
    for level in ("secret", "top_secret"):
        r = _file_new(client, zhang, classification=level)
        assert r.status_code == 422 and "custodian" in r.json()["detail"], r.text
    assert _listed(client, login) == 0
    r = _file_new(client, zhang, classification="secret", custodian="chen.jing")
    assert r.status_code == 201 and r.json()["archive"]["custodian"] == "chen.jing", r.text
    r = _file_new(client, officer, classification="top_secret", owner="li.na", custodian="zhao.lei")
    assert r.status_code == 201 and r.json()["archive"]["custodian"] == "zhao.lei", r.text


# -- roles ----------------------------------------------------------------------------


def test_an_administrator_cannot_make_himself_a_reader(client, login, activate) -> None:
    no = _new(client, login("zhang.wei"))
    admin = login("admin")
    r = client.post(
        "/users",
        headers=admin,
        json={
            "username": "mole",
            "roles": ["admin", "salesperson"],
            "department": "销售一部",
        },
    )
    assert r.status_code == 403 and r.json()["rule"] == "ever-admin"
    r = client.post(
        "/users",
        headers=admin,
        json={
            "username": "mole",
            "roles": ["admin"],
            "department": "销售一部",
        },
    )
    assert r.status_code == 201
    created = r.json()
    # giving it a content role, even after dropping admin, is refused outright
    for roles in (["admin", "salesperson"], ["salesperson"], ["admin", "compliance"]):
        r = client.patch("/users/mole", json={"roles": roles}, headers=admin)
        assert r.status_code == 403 and r.json()["rule"] == "ever-admin", r.text
    assert client.patch("/users/mole", json={"roles": []}, headers=admin).status_code == 200
    r = client.patch("/users/mole", json={"roles": ["salesperson"]}, headers=admin)
    assert r.status_code == 403 and r.json()["rule"] == "ever-admin"
    # and it never receives archives
    r = client.post("/users/zhang.wei/handover", json={"to": "mole"}, headers=admin)
    assert r.status_code == 403 and r.json()["rule"] == "ever-admin"
    mole = activate(created)
    assert client.get(f"/customers/{no}", headers=mole).status_code == 403


def test_a_content_role_needs_the_information_supervisor(client, login, activate) -> None:
    admin = login("admin")
    r = client.post(
        "/users",
        headers=admin,
        json={
            "username": "new.sales",
            "roles": ["salesperson", "compliance"],
            "department": "销售一部",
            "reason": "新员工入职",
        },
    )
    assert r.status_code == 202, r.text
    # compliance reads every request and the whole log: signed like a content role
    assert r.json()["roles"] == []
    assert r.json()["pending_roles"] == ["compliance", "salesperson"]
    req = r.json()["request"]
    assert req["change"]["roles"] == {"from": [], "to": ["compliance", "salesperson"]}
    me = activate(r.json())
    assert client.get("/me", headers=me).json()["roles"] == []
    assert _sign(client, admin, req["id"], 403)["rule"] == "self-approval"
    for other in ("chen.jing", "sun.li", "head.one"):
        _sign(client, login(other), req["id"], 404)  # may not sign it: answered as an unknown id
    _sign(client, login("zhao.lei"), req["id"])
    assert client.get("/me", headers=me).json()["roles"] == ["compliance", "salesperson"]
    # promoting an existing account files a request too; removing a role is at once
    r = client.patch(
        "/users/li.na", json={"roles": ["salesperson", "department_head"]}, headers=admin
    )
    assert r.status_code == 202 and r.json()["pending_roles"] == ["department_head"]
    promotion = r.json()["request"]["id"]
    r = client.patch("/users/li.na", json={"roles": []}, headers=admin)
    assert r.status_code == 200 and r.json()["roles"] == []
    # the newer change supersedes the pending promotion: signing it cannot bring it back
    assert client.get(f"/requests/{promotion}", headers=admin).json()["state"] == "withdrawn"
    assert _sign(client, login("zhao.lei"), promotion, 403)["rule"] == "not-pending"
    assert client.get("/me", headers=login("li.na")).json()["roles"] == []


# -- handover -------------------------------------------------------------------------


def test_a_handover_is_started_by_one_person_and_signed_by_another(client, login, more) -> None:
    no = _new(client, login("zhang.wei"))
    admin = login("admin")
    for who, rule in (("visitor.wu", "external"), ("wang.fang", "wrong-department")):
        r = client.post("/users/zhang.wei/handover", json={"to": who}, headers=admin)
        assert r.status_code == 403 and r.json()["rule"] == rule, r.text
    r = client.post("/users/zhang.wei/handover", json={"to": "li.na"}, headers=login("chen.jing"))
    assert r.status_code == 403  # an information officer signs, does not start
    r = client.post("/users/zhang.wei/handover", json={"to": "li.na"}, headers=admin)
    assert r.status_code == 202, r.text
    req = r.json()
    assert req["change"]["from"] == "zhang.wei" and req["change"]["to"] == "li.na"
    assert req["change"]["archives"] == [no] and req["archives"] == [no]
    # an internal archive: the stages a reassignment of it needs
    assert [s["name"] for s in req["stages"]] == ["department_head", "information_officer"]
    assert not _reads(client, login("li.na"), no)
    assert _sign(client, admin, req["id"], 403)["rule"] == "self-approval"
    _sign(client, login("head.two"), req["id"], 404)  # may not sign it: answered as an unknown id
    _sign(client, login("chen.jing"), req["id"], 404)  # stages are signed in order
    _sign(client, login("head.one"), req["id"])
    assert not _reads(client, login("li.na"), no)
    _sign(client, login("chen.jing"), req["id"])
    assert _reads(client, login("li.na"), no)
    r = client.post("/auth/token", data={"username": "zhang.wei", "password": PASSWORD})
    assert r.status_code == 401


def test_a_handover_of_a_secret_archive_needs_what_its_reassignment_needs(
    client, login, api_vault
) -> None:
    """A handover moves the leaver's archives as reassignments would, so it needs the
    stages a reassignment of the most secret of them needs: for a secret archive the
    customer-service manager too, not one signature."""
    _people(api_vault, ("li.secret", ["salesperson"], "销售一部", "secret"))
    no = _new(client, login("zhang.wei"), classification="secret", custodian="chen.jing")
    head = login("head.one")
    r = client.post(
        f"/customers/{no}/owner", headers=head, json={"owner": "li.secret", "reason": "调岗"}
    )
    assert r.status_code == 202, r.text
    reassigning = [s["name"] for s in r.json()["stages"]]
    assert client.post(f"/requests/{r.json()['id']}/withdraw", json={}, headers=head).is_success
    r = client.post("/users/zhang.wei/handover", json={"to": "li.secret"}, headers=head)
    assert r.status_code == 202, r.text
    req = r.json()
    assert [s["name"] for s in req["stages"]] == reassigning
    assert reassigning == ["department_head", "information_officer", "cs_manager"]
    assert req["classification"] == "secret" and req["change"]["archives"] == [no]
    _sign(client, head, req["id"], 403)  # the filing head never signs
    _sign(client, login("zhou.gm"), req["id"])  # in place of the filing head
    assert _sign(client, login("chen.jing"), req["id"])["state"] == "pending"
    assert not _reads_clear(client, login("li.secret"), no)  # the manager has not signed
    assert client.get("/me", headers=login("zhang.wei")).status_code == 200
    done = _sign(client, login("sun.li"), req["id"])
    assert done["state"] == "approved" and done["change"]["applied"]["archives"] == [no]
    assert _reads_clear(client, login("li.secret"), no)


def test_a_handover_of_a_top_secret_archive_needs_its_custodian(client, login, more) -> None:
    no = _new(client, login("zhang.wei"), classification="top_secret", custodian="xu.ming")
    r = client.post("/users/zhang.wei/handover", json={"to": "li.na"}, headers=login("admin"))
    assert r.status_code == 202, r.text
    req = r.json()
    assert [s["name"] for s in req["stages"]] == [
        "department_head",
        "information_officer",
        "cs_manager",
        "custodian",
    ]
    for signer in ("head.one", "chen.jing", "sun.li"):
        assert _sign(client, login(signer), req["id"])["state"] == "pending"
    got = client.get(f"/requests/{req['id']}", headers=login("zhao.lei")).json()
    assert got["next_signer"] == "the archives' custodian (xu.ming)"
    # the administrator who filed it may not list the customer list: no archive's keeper
    got = client.get(f"/requests/{req['id']}", headers=login("admin")).json()
    assert got["next_signer"] == "the archives' custodian"
    assert _sign(client, login("zhao.lei"), req["id"], 403)["rule"] == "wrong-custodian"
    assert client.get("/me", headers=login("zhang.wei")).status_code == 200  # nothing moved
    done = _sign(client, login("xu.ming"), req["id"])
    assert done["state"] == "approved" and done["change"]["applied"]["archives"] == [no]


def test_top_secret_archives_kept_by_different_custodians_are_not_handed_over_at_once(
    client, login, more
) -> None:
    one = _new(client, login("zhang.wei"), classification="top_secret", custodian="xu.ming")
    two = _new(client, login("zhang.wei"), classification="top_secret", custodian="chen.jing")
    admin = login("admin")
    r = client.post("/users/zhang.wei/handover", json={"to": "li.na"}, headers=admin)
    assert r.status_code == 422, r.text
    assert "different custodians" in r.json()["detail"] and "reassign" in r.json()["detail"]
    assert one in r.json()["detail"] and two in r.json()["detail"]


def test_a_handover_whose_archives_changed_since_filing_is_not_applied(client, login, more) -> None:
    """The request records the archives it moves and their marking: a signature after
    they changed would apply a chain resolved for other archives."""
    no = _new(client, login("zhang.wei"))
    admin = login("admin")
    raised = client.post("/users/zhang.wei/handover", json={"to": "li.na"}, headers=admin).json()
    assert [s["name"] for s in raised["stages"]] == ["department_head", "information_officer"]
    _sign(client, login("head.one"), raised["id"])
    r = client.post(
        f"/customers/{no}/classification",
        headers=login("chen.jing"),
        json={"classification": "secret", "custodian": "xu.ming", "reason": "重要客户"},
    )
    assert r.status_code == 200, r.text
    refused = _sign(client, login("chen.jing"), raised["id"], 403)
    assert refused["rule"] == "stale" and "file a new one" in refused["detail"]
    assert not _reads(client, login("li.na"), no)
    assert client.get("/me", headers=login("zhang.wei")).status_code == 200  # not disabled
    # a second archive given to the leaver after filing is not moved on the old chain
    grown = client.post("/users/zhang.wei/handover", json={"to": "li.na"}, headers=admin).json()
    assert grown["classification"] == "secret"
    _sign(client, login("head.one"), grown["id"])
    _sign(client, login("chen.jing"), grown["id"])
    later = _new(client, login("zhang.wei"))
    assert _sign(client, login("sun.li"), grown["id"], 403)["rule"] == "stale"
    assert not _reads(client, login("li.na"), later)
    assert client.get("/me", headers=login("zhang.wei")).status_code == 200


def test_a_handover_does_not_give_the_leavers_loans_to_the_successor(client, login, clock) -> None:
    """A loan is approved for its borrower: the leaver's loan grant is revoked, not
    handed to the successor, and the register line stays open in the leaver's name
    until the material is returned."""
    other = _new(client, login("wang.fang"), department="销售二部")  # 销售二部's client
    li = login("li.na")
    r = client.post(
        "/requests",
        headers=li,
        json={
            "kind": "loan",
            "archives": [other],
            "groups": ["identity"],
            "purpose": "customer_service",
            "reason": "合同跟进需要",
            "hours": 48,
            "material": "客户档案",
            "copies": 1,
        },
    )
    assert r.status_code == 201, r.text
    _sign(client, login("head.one"), r.json()["id"])
    _sign(client, login("chen.jing"), r.json()["id"])
    loan = client.get("/loans", headers=li).json()["items"][0]
    assert client.post(f"/loans/{loan['id']}/confirm", json={}, headers=li).status_code == 200
    assert _reads_clear(client, li, other)
    zhang = login("zhang.wei")
    assert not _reads(client, zhang, other)
    r = client.post("/users/li.na/handover", json={"to": "zhang.wei"}, headers=login("admin"))
    assert r.status_code == 202, r.text
    for signer in ("head.one", "chen.jing"):  # whatever the chain, until it applies
        done = _sign(client, login(signer), r.json()["id"])
        if done["state"] == "approved":
            break
    assert not _reads(client, zhang, other)  # nobody approved this archive for him
    applied = done["change"]["applied"]
    assert done["state"] == "approved" and applied["loans_to_return"] == [loan["id"]]
    assert applied["revoked_grants"]  # the loan's grant among them
    assert client.get("/loans", headers=zhang).json()["items"] == []
    # the register keeper still sees the line open in li.na's name, overdue once due
    keeper = login("chen.jing")
    lines = {i["id"]: i for i in client.get("/loans", headers=keeper).json()["items"]}
    assert lines[loan["id"]]["borrower"] == "li.na" and lines[loan["id"]]["state"] == "out"
    notes = client.get("/requests", headers=zhang).json()["notifications"]
    assert any(loan["id"] in n["message"] and "returned" in n["message"] for n in notes)
    mine = client.get("/requests", headers=login("admin")).json()["notifications"]
    assert any(loan["id"] in n["message"] and "returned" in n["message"] for n in mine)
    clock.advance(hours=49)
    keeper = login("chen.jing")
    overdue = client.get("/loans?overdue=true", headers=keeper).json()["items"]
    assert [i["id"] for i in overdue] == [loan["id"]]
    r = client.post(f"/loans/{loan['id']}/return", json={}, headers=keeper)
    assert r.status_code == 200 and r.json()["state"] == "returned", r.text
