"""Lists: every request for those who answer for them, the purposes, the accounts and
a lookup of names. Each refuses the roles it is not for (audited), and bad filters
get a 422 naming the parameter with nothing done. On SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import pytest

from foundation.db import transaction
from policies.chains import load_chains
from policies.directory import add_user
from tests.api.conftest import _HASH
from tests.api.test_workflow import _file, _new

VIEW = {"kind": "view", "groups": ["contact"], "purpose": "revisit", "reason": "回访"}


@pytest.fixture
def visitor(api_vault):
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
        session.add(user)


def _log(client, login, **params) -> list[dict]:
    r = client.get("/audit", params=params, headers=login("qian.audit"))
    assert r.status_code == 200, r.text
    return r.json()["items"]


def _ids(client, login, who="qian.audit", **params) -> tuple[list[str], int]:
    r = client.get("/requests", params={"role": "all", **params}, headers=login(who))
    assert r.status_code == 200, r.text
    body = r.json()
    return [i["id"] for i in body["items"]], body["total"]


def test_compliance_and_the_supervisor_search_every_request(client, login, clock) -> None:
    one = _new(client, login("zhang.wei"))
    two = _new(client, login("wang.fang"), department="销售二部")
    start = clock.now
    a = _file(client, login("li.na"), archives=[one], **VIEW)["id"]
    clock.advance(hours=1)
    b = _file(client, login("wang.fang"), archives=[two], **VIEW)["id"]
    clock.advance(hours=1)
    c = _file(
        client,
        login("zhang.wei"),
        kind="copy",
        archives=[one, two],
        groups=["identity"],
        purpose="contract_follow_up",
        reason="合同",
    )["id"]
    assert client.post(f"/requests/{b}/withdraw", headers=login("wang.fang")).status_code == 200
    for who in ("qian.audit", "zhao.lei"):
        assert _ids(client, login, who) == ([c, b, a], 3)
    assert _ids(client, login, state="withdrawn") == ([b], 1)
    assert _ids(client, login, kind="copy") == ([c], 1)
    assert _ids(client, login, requester="li.na") == ([a], 1)
    assert _ids(client, login, archive=one) == ([c, a], 2)
    later = (start + timedelta(minutes=30)).isoformat()
    assert _ids(client, login, **{"from": later}) == ([c, b], 2)
    assert _ids(client, login, to=later) == ([a], 1)
    assert _ids(client, login, limit=1, offset=1) == ([b], 3)
    page = client.get("/requests?role=all&limit=2", headers=login("qian.audit")).json()
    assert page["items"][0]["facts"]["requester"]["username"] == "zhang.wei"
    # each search is an audit entry with its filters, never content
    entries = _log(client, login, action="request:list", outcome="allowed")
    assert len(entries) == 10
    searched = [e["detail"] for e in entries if e["detail"]["filters"] == {"archive": one}]
    assert searched == [
        {"filters": {"archive": one}, "offset": 0, "limit": 50, "count": 2, "total": 2}
    ]


@pytest.mark.parametrize("who", ["li.na", "head.one", "chen.jing", "sun.li", "zhou.gm", "admin"])
def test_everyone_else_is_refused_the_search_and_it_is_audited(client, login, who) -> None:
    _file(client, login("li.na"), archives=[_new(client, login("zhang.wei"))], **VIEW)
    r = client.get("/requests?role=all&kind=view", headers=login(who))
    assert r.status_code == 403, r.text
    assert r.json()["rule"] == "request-readers" and "items" not in r.json()
    (entry,) = _log(client, login, action="request:list", outcome="denied")
    assert entry["actor"] == who and entry["detail"]["filters"] == {"kind": "view"}


@pytest.mark.parametrize(
    ("query", "names"),
    [
        ("state=lost", "state"),
        ("kind=borrow", "kind"),
        ("requester=Not%20A%20Name", "requester"),
        ("archive=12345", "archive"),
        ("from=yesterday", "from"),
        ("from=2026-01-01T00:00:00", "from"),  # no time zone
        ("to=2026-01-01T00:00:00", "to"),
        ("limit=201", "limit"),
        ("limit=0", "limit"),
        ("offset=-1", "offset"),
        ("role=everyone", "role"),
    ],
)
def test_bad_filters_name_the_parameter_and_do_nothing(client, login, query, names) -> None:
    r = client.get(f"/requests?role=all&{query}", headers=login("qian.audit"))
    assert r.status_code == 422, r.text
    assert names in r.text
    assert _log(client, login, action="request:list") == []


def test_filters_belong_to_the_search(client, login) -> None:
    r = client.get("/requests?role=mine&state=pending", headers=login("li.na"))
    assert r.status_code == 422 and "state" in r.json()["detail"]


def test_purposes_are_listed_and_in_the_openapi_enum(client, login, visitor) -> None:
    configured = load_chains().purposes
    for who in ("li.na", "visitor.wu", "admin"):
        r = client.get("/requests/purposes", headers=login(who))
        assert r.status_code == 200, r.text
        assert {i["code"]: i["label"] for i in r.json()["items"]} == dict(configured)
    assert client.get("/requests/purposes").status_code == 401
    schema = client.get("/openapi.json").json()["components"]["schemas"]["RequestIn"]
    assert schema["properties"]["purpose"]["enum"] == list(configured)


def test_administrators_list_the_accounts(client, login, visitor) -> None:
    admin = login("admin")
    r = client.get("/users", headers=admin)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["total"] == 12 and len(body["items"]) == 12
    li = next(u for u in body["items"] if u["username"] == "li.na")
    assert li == {
        "username": "li.na",
        "display_name": "",
        "department": "销售一部",
        "roles": ["salesperson"],
        "clearance": "internal",
        "external": False,
        "disabled": False,
    }
    assert "hash" not in r.text and "credential" not in r.text and "介绍信" not in r.text
    heads = client.get("/users?role=department_head", headers=admin).json()
    assert [u["username"] for u in heads["items"]] == ["head.one", "head.two"]
    sales = client.get("/users", params={"department": "销售一部", "limit": 2}, headers=admin)
    assert sales.json()["total"] == 3 and len(sales.json()["items"]) == 2
    r = client.patch("/users/wang.fang", json={"disabled": True}, headers=admin)
    assert r.status_code == 200, r.text
    off = client.get("/users?disabled=true", headers=admin).json()
    assert [u["username"] for u in off["items"]] == ["wang.fang"]
    assert {e["detail"]["count"] for e in _log(client, login, action="user:list")} == {12, 2, 1}


@pytest.mark.parametrize("who", ["li.na", "zhao.lei", "qian.audit", "visitor.wu"])
def test_only_administrators_list_accounts(client, login, visitor, who) -> None:
    r = client.get("/users", headers=login(who))
    assert r.status_code == 403, r.text
    assert "items" not in r.json()
    (entry,) = _log(client, login, action="user:list", outcome="denied")
    assert entry["actor"] == who


@pytest.mark.parametrize("query", ["role=emperor", "disabled=perhaps", "limit=500", "offset=-2"])
def test_bad_account_filters_are_refused(client, login, query) -> None:
    r = client.get(f"/users?{query}", headers=login("admin"))
    assert r.status_code == 422, r.text
    assert query.split("=")[0] in r.text


@pytest.mark.parametrize(
    "who", ["head.one", "chen.jing", "zhao.lei", "sun.li", "zhou.gm", "qian.audit"]
)
def test_approvers_and_compliance_look_up_names(client, login, who) -> None:
    r = client.get("/users/lookup", params={"q": "HEAD"}, headers=login(who))
    assert r.status_code == 200, r.text
    items = r.json()["items"]
    assert [i["username"] for i in items] == ["head.one", "head.two"]
    assert set(items[0]) == {"username", "display_name", "department", "roles"}
    assert items[0]["roles"] == ["department_head"]


def test_a_lookup_gives_at_most_twenty_names(client, login, api_vault) -> None:
    with transaction(api_vault.engine) as session:
        for i in range(25):
            add_user(session, username=f"temp.{i:02d}", roles=["salesperson"], department="X")
    r = client.get("/users/lookup?q=temp", headers=login("chen.jing"))
    assert len(r.json()["items"]) == 20
    assert (
        client.get("/users/lookup?q=temp&limit=21", headers=login("chen.jing")).status_code == 422
    )


@pytest.mark.parametrize("who", ["li.na", "visitor.wu", "admin"])
def test_salespeople_visitors_and_administrators_may_not_look_up(client, login, visitor, who):
    r = client.get("/users/lookup?q=a", headers=login(who))
    assert r.status_code == 403, r.text
    (entry,) = _log(client, login, action="user:list", outcome="denied")
    assert entry["actor"] == who


@pytest.mark.parametrize(
    "query", ["", "q=", "q=" + "a" * 65, "q=a%01b", "q=%E2%80%AEa", "q=%20%20"]
)
def test_bad_lookups_are_refused(client, login, query) -> None:
    r = client.get(f"/users/lookup?{query}", headers=login("chen.jing"))
    assert r.status_code == 422, r.text
    assert "q" in r.text


def test_ones_own_requests_are_paged_by_the_database(client, login, clock) -> None:
    """role=mine pages like role=all (newest first, a total), whatever the count, and
    never lists another account's requests; its notifications are the newest only."""
    one = _new(client, login("zhang.wei"))
    two = _new(client, login("wang.fang"), department="销售二部")
    li = login("li.na")
    filed = []
    for _ in range(5):
        filed.append(_file(client, li, archives=[one], **VIEW)["id"])
        clock.advance(minutes=1)
    other = _file(client, login("wang.fang"), archives=[two], **VIEW)["id"]
    pages = [
        client.get("/requests", params={"role": "mine", "offset": o, "limit": 2}, headers=li)
        for o in (0, 2, 4)
    ]
    assert all(p.status_code == 200 for p in pages)
    seen = [i["id"] for p in pages for i in p.json()["items"]]
    assert sorted(seen) == sorted(filed) and other not in seen
    assert {p.json()["total"] for p in pages} == {5}
    assert [len(p.json()["items"]) for p in pages] == [2, 2, 1]
    assert all(len(p.json()["notifications"]) <= 2 for p in pages)
    whole = client.get("/requests", headers=li).json()
    assert whole["limit"] == 50 and [i["id"] for i in whole["items"]] == seen
    too_many = client.get("/requests", params={"role": "mine", "limit": 201}, headers=li)
    assert too_many.status_code == 422 and "limit" in too_many.text
