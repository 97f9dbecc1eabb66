"""Important clients have two or more contacts (篇七), and kept archives a custodian
(Art 22), from the moment they are filed over the API."""

from __future__ import annotations

from foundation.db import transaction
from policies.directory import add_user
from tests.api.conftest import _HASH
from tests.factories import archive

CONTENT = ("王小明", "13800138000")


def _file(client, headers, **over):
    body = archive(**over)
    if "owner" not in over:
        body.pop("owner", None)
    return client.post("/customers", json=body, headers=headers)


def _listed(client, login, **query) -> list[dict]:
    r = client.get("/customers", params=query, headers=login("head.one"))
    assert r.status_code == 200, r.text
    return r.json()["items"]


def _reads(client, headers, no) -> bool:
    r = client.get(f"/customers/{no}?groups=identity", headers=headers)
    assert r.status_code in (200, 403), r.text
    return r.status_code == 200


def _sign(client, headers, uid, expect=200) -> dict:
    r = client.post(f"/requests/{uid}/approve", json={}, headers=headers)
    # A refused signer gets 403, or 404 when the request is not theirs to see at all.
    assert r.status_code in ((403, 404) if expect == 403 else (expect,)), r.text
    return r.json()


def _people(api_vault, *people) -> None:
    """people: (name, roles, department, disabled)."""
    with transaction(api_vault.engine) as session:
        for name, roles, dept, disabled in people:
            user = add_user(
                session, username=name, roles=roles, department=dept, clearance="top_secret"
            )
            user.password_hash = _HASH
            user.disabled = disabled
            session.add(user)


def test_a_grade_a_archive_without_a_second_contact_is_refused_and_nothing_stored(
    client, login
) -> None:
    zhang = login("zhang.wei")
    for contacts in ([], ["zhang.wei"]):  # the owner does not count twice
        r = _file(client, zhang, grade="A", contacts=contacts)
        assert r.status_code == 422, r.text
        assert r.json()["type"].endswith("important-client"), r.text
        assert "contacts" in r.json()["detail"] and "篇七" in r.json()["detail"]
        assert not any(c in r.text for c in CONTENT)
    assert _listed(client, login) == []
    r = _file(client, zhang, grade="B")  # other grades need none
    assert r.status_code == 201 and r.json()["contacts_request"] is None, r.text


def test_contacts_named_at_filing_read_only_after_a_second_signature(client, login) -> None:
    """The owner alone never makes a colleague a reader: the contact named when filing
    is added by a reassign request the department head and an officer sign."""
    zhang, li = login("zhang.wei"), login("li.na")
    r = _file(client, zhang, grade="A", contacts=["li.na"])
    assert r.status_code == 201, r.text
    no = r.json()["archive"]["archive_no"]
    pending = r.json()["contacts_request"]
    assert r.json()["archive"]["contacts"] == []
    assert pending["kind"] == "reassign" and pending["state"] == "pending"
    assert pending["change"]["added_contacts"] == ["li.na"]
    assert pending["archives"] == [no]
    assert not _reads(client, li, no)
    _sign(client, zhang, pending["id"], expect=403)  # the filer never signs
    _sign(client, li, pending["id"], expect=403)  # nor the one it lets read
    _sign(client, login("head.one"), pending["id"])
    assert not _reads(client, li, no)
    _sign(client, login("chen.jing"), pending["id"])
    assert _reads(client, li, no)
    meta = client.get(f"/customers/{no}", headers=zhang).json()["archive"]
    assert meta["contacts"] == ["li.na"]


def test_department_heads_list_important_clients_short_of_contacts(client, login) -> None:
    zhang = login("zhang.wei")
    waiting = _file(client, zhang, grade="A", contacts=["li.na"]).json()
    no = waiting["archive"]["archive_no"]
    _file(client, zhang, grade="B")
    short = _listed(client, login, missing_contacts="true")
    assert [a["archive_no"] for a in short] == [no]
    assert set(short[0]) >= {"archive_no", "grade", "owner"}
    assert "content" not in short[0] and "profile" not in short[0]
    _sign(client, login("head.one"), waiting["contacts_request"]["id"])
    _sign(client, login("chen.jing"), waiting["contacts_request"]["id"])
    assert _listed(client, login, missing_contacts="true") == []
    r = client.get("/customers?missing_contacts=perhaps", headers=login("head.one"))
    assert r.status_code == 422, r.text


def test_the_important_grades_are_configured(client, login, api_vault) -> None:
    api_vault.settings.important_grades = ["B"]
    zhang = login("zhang.wei")
    r = _file(client, zhang, grade="B")
    assert r.status_code == 422 and "grade B" in r.json()["detail"], r.text
    assert _file(client, zhang, grade="A").status_code == 201


def test_a_contact_who_may_not_read_fails_the_whole_filing(client, login) -> None:
    zhang = login("zhang.wei")
    r = _file(client, zhang, grade="A", contacts=["wang.fang"])  # 销售二部
    assert r.status_code == 403 and r.json()["rule"] == "wrong-department", r.text
    r = _file(client, zhang, grade="A", contacts=["Not A Name"])
    assert r.status_code == 422, r.text
    assert _listed(client, login) == []
    r = client.get("/requests", headers=zhang)
    assert r.status_code == 200 and not r.json().get("items"), r.text


# -- custodians at creation ---------------------------------------------------------------


def test_kept_archives_are_refused_without_a_proper_custodian(client, login, api_vault) -> None:
    """A secret or top-secret archive names an enabled information officer or the
    supervisor as custodian, never its owner or one of its contacts."""
    _people(
        api_vault,
        ("dual", ["salesperson", "information_officer"], "销售一部", False),
        ("gone.officer", ["information_officer"], "客户服务部", True),
    )
    officer = login("chen.jing")
    for level in ("secret", "top_secret"):
        r = _file(client, officer, classification=level, owner="zhang.wei")
        assert r.status_code == 422, r.text
        assert "custodian" in r.json()["detail"] and "Art 22" in r.json()["detail"], r.text
        if level == "secret":  # the import format itself already asks it of top-secret
            assert r.json()["type"].endswith("custodian-required"), r.text
        cases = {
            "li.na": "not an information officer",  # a salesperson
            "gone.officer": "disabled",
            "nobody.here": "not users of this vault",
        }
        for who, words in cases.items():
            r = _file(client, officer, classification=level, owner="zhang.wei", custodian=who)
            assert r.status_code == 422 and words in r.json()["detail"], (who, r.text)
        r = _file(client, officer, classification=level, owner="dual", custodian="dual")
        assert r.status_code == 422 and "owns the archive" in r.json()["detail"], r.text
        r = _file(
            client,
            officer,
            classification=level,
            owner="zhang.wei",
            custodian="dual",
            contacts=["dual"],
        )
        assert r.status_code == 422 and "listed as a contact" in r.json()["detail"], r.text
    assert _listed(client, login) == []
    r = _file(client, officer, classification="top_secret", owner="zhang.wei", custodian="zhao.lei")
    assert r.status_code == 201 and r.json()["archive"]["custodian"] == "zhao.lei", r.text


def test_a_salesperson_still_cannot_add_contacts_to_an_existing_archive(client, login) -> None:
    """Salespeople file a reassign request only by naming contacts on an archive they
    file; adding one to an existing archive stays with the department head or an
    information officer."""
    zhang = login("zhang.wei")
    no = _file(client, zhang, grade="B").json()["archive"]["archive_no"]
    r = client.post(
        f"/customers/{no}/owner", json={"contacts": ["li.na"], "reason": "帮忙"}, headers=zhang
    )
    assert r.status_code == 403, r.text
    assert not _reads(client, login("li.na"), no)
    assert client.get("/requests", headers=zhang).json()["items"] == []


def test_removing_the_last_second_contact_is_done_with_a_warning(client, login) -> None:
    """Removing contacts only narrows, so it is never refused, but an important client
    left with its owner alone is named in the answer."""
    r = _file(client, login("zhang.wei"), grade="A", contacts=["li.na"])
    no, pending = r.json()["archive"]["archive_no"], r.json()["contacts_request"]["id"]
    _sign(client, login("head.one"), pending)
    _sign(client, login("chen.jing"), pending)
    r = client.post(
        f"/customers/{no}/owner", json={"contacts": [], "reason": "调岗"}, headers=login("head.one")
    )
    assert r.status_code == 200, r.text
    assert r.json()["contacts"] == [] and "important client" in r.json()["warnings"][0]
    assert not _reads(client, login("li.na"), no)
