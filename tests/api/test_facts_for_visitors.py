"""A caller who may not list the customer list (a visitor) learns of the archives in
its own request only their numbers and markings: not the owner, grade, category,
department or custodian, neither in the facts nor in who signs next. Staff who may
list keep every fact."""

from __future__ import annotations

from foundation.db import transaction
from policies.directory import add_user
from tests.api.conftest import _HASH
from tests.api.test_workflow import _approve, _file
from tests.factories import archive

HIDDEN = ("owner", "grade", "category", "department", "custodian", "status")


def _visitor(api_vault) -> None:
    with transaction(api_vault.engine) as session:
        user = add_user(
            session,
            username="ext.wu",
            roles=["external"],
            department="",
            clearance="internal",
            external=True,
            credential_ref="介绍信-2026-002",
        )
        user.password_hash = _HASH
        session.add(user)


def test_a_visitor_never_learns_a_top_secret_archives_custodian(client, login, api_vault):
    _visitor(api_vault)
    body = archive(classification="top_secret", custodian="zhao.lei", grade="B")
    r = client.post("/customers", json=body, headers=login("zhang.wei"))
    assert r.status_code == 201, r.text
    no = r.json()["archive"]["archive_no"]
    ext = login("ext.wu")
    req = _file(
        client,
        ext,
        kind="view",
        archives=[no],
        groups=["identity"],
        purpose="customer_service",
        reason="律师函核对",
    )
    assert req["classification"] == "top_secret"  # the chain they face, by its marking
    assert req["facts"]["archives"] == [
        {"archive_no": no, "classification": {"code": "top_secret", "marking": "绝密"}}
    ]
    _approve(client, login("chen.jing"), req["id"])
    _approve(client, login("sun.li"), req["id"])
    for shown in (
        client.get(f"/requests/{req['id']}", headers=ext).json(),
        client.get("/requests", headers=ext).json()["items"][0],
    ):
        assert shown["facts"]["next"]["stage"] == "custodian"
        assert shown["facts"]["next"]["signers"] == []
        assert "zhao.lei" not in str(shown["facts"]) and "zhao.lei" not in shown["next_signer"]
        assert "zhang.wei" not in str(shown)
    # The custodian's own queue and the staff who may list still see every fact.
    staff = client.get(f"/requests/{req['id']}", headers=login("sun.li")).json()
    (arch,) = staff["facts"]["archives"]
    assert arch["owner"]["username"] == "zhang.wei" and arch["grade"] == "B"
    assert arch["custodian"]["username"] == "zhao.lei"
    assert staff["facts"]["next"]["signers"] == ["zhao.lei"]
    assert all(k in arch for k in HIDDEN)
