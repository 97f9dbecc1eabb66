"""Every request answer carries the facts its signers judge on, to those who may see it,
and never a word of customer content. On SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from foundation.db import transaction
from policies.directory import add_user
from tests.api.conftest import _HASH
from tests.api.test_hidden_ids import _same, _unknown_like
from tests.api.test_workflow import _approve, _file
from tests.factories import archive

# What the customer's archive holds (tests.factories.archive): it must never appear.
NAME, MOBILE, COMPANY = "客户甲乙丙", "13912345678", "星河地产，深圳市南山区"
CONTENT = (NAME, MOBILE, COMPANY, "良好")


@pytest.fixture
def staff(api_vault):
    """Display names for the cast, and a registered visitor."""
    with transaction(api_vault.engine) as session:
        user = add_user(
            session,
            username="visitor.wu",
            roles=["external"],
            department="访客",
            external=True,
            credential_ref="介绍信 2026-017",
        )
        user.password_hash = _HASH
        user.display_name = "吴访客"
        session.add(user)
    with api_vault.engine.begin() as conn:
        conn.exec_driver_sql("UPDATE app_user SET display_name = '李娜' WHERE username = 'li.na'")


def _archive(client, headers, **over) -> str:
    body = archive(profile={"name": NAME, "mobile_phone": MOBILE}, **over)
    body.pop("owner", None)
    r = client.post("/customers", json=body, headers=headers)
    assert r.status_code == 201, r.text
    return r.json()["archive"]["archive_no"]


def _kinds(client, login, no: str) -> dict[str, dict]:
    li = login("li.na")
    view = dict(archives=[no], groups=["contact"], purpose="revisit", reason="回访")
    return {
        "view": _file(client, li, kind="view", **view),
        "loan": _file(
            client,
            li,
            kind="loan",
            archives=[no],
            groups=["contact"],
            purpose="contract_follow_up",
            reason="签约",
            hours=24,
            material="客户档案复印件",
            copies=2,
        ),
        "copy": _file(client, li, kind="copy", format="csv", copies=3, **view),
        "external": _file(client, li, kind="external", recipient="招商银行", format="json", **view),
        "visitor": _file(client, login("visitor.wu"), kind="view", **view),
    }


def test_facts_of_each_kind(client, login, staff) -> None:
    no = _archive(client, login("zhang.wei"))
    filed = _kinds(client, login, no)
    facts = {k: v["facts"] for k, v in filed.items()}
    view = facts["view"]
    assert view["requester"] == {
        "username": "li.na",
        "display_name": "李娜",
        "department": "销售一部",
        "roles": ["salesperson"],
        "external": False,
    }
    assert view["purpose"]["code"] == "revisit" and "回访" in view["purpose"]["label"]
    assert view["reason"] == "回访"
    (arch,) = view["archives"]
    assert arch["archive_no"] == no
    assert arch["classification"] == {"code": "internal", "marking": "内部"}
    assert arch["owner"]["username"] == "zhang.wei" and arch["custodian"] is None
    assert view["chain"] == [] and view["next"]["stage"] == "department_head"
    assert facts["loan"]["loan"] == {"material": "客户档案复印件", "copies": 2}
    assert facts["copy"]["export"] == {"format": "csv", "copies": 3}
    assert facts["external"]["export"] == {"format": "json", "copies": 1, "recipient": "招商银行"}
    visitor = facts["visitor"]["requester"]
    assert visitor["external"] and visitor["credential_ref"] == "介绍信 2026-017"
    assert visitor["display_name"] == "吴访客"
    # the chain so far, with who signed as what and when, and who signs next
    signed = _approve(client, login("head.one"), filed["view"]["id"])
    (sig,) = signed["facts"]["chain"]
    assert (sig["signer"], sig["role"], sig["stage"]) == (
        "head.one",
        "department_head",
        "department_head",
    )
    assert sig["at"] and signed["facts"]["next"]["label"] == "an information officer"
    shown = client.get(f"/requests/{filed['view']['id']}", headers=login("chen.jing")).json()
    assert shown["facts"] == signed["facts"]


def test_a_secret_archive_shows_its_marking_and_custodian(client, login, staff) -> None:
    body = archive(
        profile={"name": NAME, "mobile_phone": MOBILE},
        classification="secret",
        custodian="zhao.lei",
    )
    r = client.post("/customers", json=body, headers=login("zhang.wei"))
    assert r.status_code == 201, r.text
    no = r.json()["archive"]["archive_no"]
    req = _file(
        client,
        login("li.na"),
        kind="view",
        archives=[no],
        groups=["contact"],
        purpose="revisit",
        reason="回访",
    )
    (arch,) = req["facts"]["archives"]
    assert arch["classification"] == {"code": "secret", "marking": "机密"}
    assert arch["custodian"]["username"] == "zhao.lei"


def test_only_those_who_may_see_a_request_see_it_and_its_facts(client, login, staff) -> None:
    no = _archive(client, login("zhang.wei"))
    req = _file(
        client,
        login("li.na"),
        kind="view",
        archives=[no],
        groups=["contact"],
        purpose="revisit",
        reason="回访",
    )
    uid, fake = req["id"], _unknown_like(req["id"])
    # Another department's salesperson, the next stage's officer before her turn, an
    # administrator: the same 404 as an id that does not exist.
    for outsider in ("wang.fang", "chen.jing", "admin", "head.two"):
        assert _same(client, "GET", uid, fake, "/requests/{id}", login(outsider)) == 404
    for reader in ("li.na", "head.one", "qian.audit", "zhao.lei"):
        r = client.get(f"/requests/{uid}", headers=login(reader))
        assert r.status_code == 200 and r.json()["facts"]["requester"]["username"] == "li.na"
    _approve(client, login("head.one"), uid)
    # the signer of stage 1 still sees it; the officer now may sign, so she sees it too
    for reader in ("head.one", "chen.jing"):
        r = client.get(f"/requests/{uid}", headers=login(reader))
        assert r.status_code == 200 and r.json()["facts"]["chain"][0]["signer"] == "head.one"
    assert _same(client, "GET", uid, fake, "/requests/{id}", login("wang.fang")) == 404


def test_no_answer_leaks_customer_content(client, login, staff) -> None:
    """An insider files, signs, lists and looks up everything this module serves: the
    customer's name, mobile, company and health never appear."""
    no = _archive(client, login("zhang.wei"))
    filed = _kinds(client, login, no)
    bodies = [r for r in filed.values()]
    bodies.append(_approve(client, login("head.one"), filed["view"]["id"]))
    deny = client.post(
        f"/requests/{filed['loan']['id']}/deny",
        json={"reason": "不需要"},
        headers=login("head.one"),
    )
    bodies.append(deny.json())
    for who, url in (
        ("li.na", "/requests"),
        ("head.one", "/requests?role=to_approve"),
        ("chen.jing", "/requests?role=to_approve"),
        ("zhao.lei", "/requests?role=to_approve"),
        ("qian.audit", "/requests?role=all"),
        ("zhao.lei", f"/requests?role=all&archive={no}"),
        ("qian.audit", f"/requests/{filed['copy']['id']}"),
        ("li.na", "/requests/purposes"),
        ("admin", "/users"),
        ("qian.audit", "/users/lookup?q=zh"),
    ):
        r = client.get(url, headers=login(who))
        assert r.status_code == 200, (url, r.text)
        bodies.append(r.json())
    text = repr(bodies)
    assert no in text  # the archive is named by its number ...
    for secret in CONTENT:  # ... and nothing of what it holds
        assert secret not in text, secret
