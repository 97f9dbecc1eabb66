"""Over HTTP: search finds only what the caller may read in clear; a request's chain and its
grant follow the archive's current classification and custodian; a loan is read
only after the borrower confirms it. On SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from audit.events import Actor
from tests.factories import archive

OFFICER = Actor("chen.jing", "information_officer")
PROFILE = {
    "name": "欧阳秘密",
    "mobile_phone": "139 1234 5678",
    "id_number": "11010519491231002X",
    "licence_plate": "京A12345",
    "health": "良好",
}
# Every indexed field, as a caller would type it.
QUERIES = {
    "mobile": "+86 139-1234-5678",
    "name": "欧阳秘密",
    "id_number": "11010519491231002x",
    "plate": "京a 12345",
}


def _new(client, headers, **over) -> str:
    body = archive(**over)
    body.pop("owner", None)
    r = client.post("/customers", json=body, headers=headers)
    assert r.status_code == 201, r.text
    return r.json()["archive"]["archive_no"]


def _file(client, headers, **body) -> dict:
    r = client.post("/requests", json=body, headers=headers)
    assert r.status_code == 201, r.text
    return r.json()


def _approve(client, headers, uid, **body) -> dict:
    r = client.post(f"/requests/{uid}/approve", json=body, headers=headers)
    assert r.status_code == 200, r.text
    return r.json()


def _search(client, headers, field, value, *, post: bool) -> dict:
    if post:
        r = client.post("/customers/search", json={field: value}, headers=headers)
    else:
        r = client.get("/customers/search", params={field: value}, headers=headers)
    assert r.status_code == 200, r.text
    return r.json()


def _reclassify(client, no, level, custodian=None) -> None:
    """The vault's own reclassification (re-sealed under the level's KEK)."""
    client.app.state.services.store.lifecycle.reclassify(
        no, level, actor=OFFICER, custodian=custodian, reason="客户升级为重要客户"
    )


@pytest.mark.parametrize("post", [False, True], ids=["GET", "POST"])
def test_search_hides_archives_the_caller_may_not_read(client, login, post) -> None:
    top = _new(
        client,
        login("zhang.wei"),
        classification="top_secret",
        custodian="zhao.lei",
        profile=PROFILE,
    )
    wang = login("wang.fang")
    assert client.get(f"/customers/{top}", headers=wang).status_code == 403
    for field, value in QUERIES.items():
        found = _search(client, wang, field, value, post=post)
        assert found["items"] == [] and found["total"] == 0, field
        assert top not in str(found) and "zhao.lei" not in str(found)
    # The owner of a top-secret archive reads it only under a custodian-signed grant.
    assert _search(client, login("zhang.wei"), "mobile", QUERIES["mobile"], post=post) == {
        "items": [],
        "total": 0,
        "offset": 0,
        "limit": 1,
    }
    # Each search is audited with what it returned, never the candidates.
    log = client.get(
        "/audit?actor=wang.fang&action=archive:search", headers=login("qian.audit")
    ).json()["items"]
    assert len(log) == len(QUERIES)
    assert all(e["archives"] == [] and e["detail"]["returned"] == 0 for e in log)
    assert all("candidates" not in e["detail"] and "matches" not in e["detail"] for e in log)
    assert "13912345678" not in str(log) and "欧阳" not in str(log)


def test_a_permitted_reader_finds_it_and_the_count_matches(client, login) -> None:
    zhang = login("zhang.wei")
    top = _new(client, zhang, classification="top_secret", custodian="zhao.lei", profile=PROFILE)
    # Same mobile, an internal archive zhang.wei owns: he finds that one only.
    own = _new(client, zhang, profile={"name": "王小明", "mobile_phone": "13912345678"})
    found = _search(client, zhang, "mobile", QUERIES["mobile"], post=False)
    assert [a["archive_no"] for a in found["items"]] == [own] and found["total"] == 1
    # An information officer sees internal archives only masked: a search never compares
    # a value he cannot read in clear, so he finds neither.
    officer = _search(client, login("chen.jing"), "mobile", QUERIES["mobile"], post=True)
    assert officer["items"] == [] and officer["total"] == 0
    li = login("li.na")
    req = _file(
        client,
        li,
        kind="view",
        archives=[top],
        groups=["identity", "contact"],
        purpose="customer_service",
        reason="客户来电",
    )
    for signer in ("head.one", "chen.jing", "sun.li", "zhao.lei"):
        done = _approve(client, login(signer), req["id"])
    assert done["state"] == "approved"
    # The grant covers identity (name) and contact (mobile): found by those fields only.
    granted = {"name", "mobile"}
    for field, value in QUERIES.items():
        hit = _search(client, li, field, value, post=field != "mobile")
        if field in granted:
            assert [a["archive_no"] for a in hit["items"]] == [top], field
            assert hit["total"] == 1 and hit["items"][0]["custodian"] == "zhao.lei"
        else:  # id_number (credentials) and plate (whereabouts): not granted
            assert hit["items"] == [] and hit["total"] == 0, field
    log = client.get(
        "/audit?actor=li.na&action=archive:search", headers=login("qian.audit")
    ).json()["items"]
    assert len(log) == len(QUERIES)
    assert sorted(e["detail"]["returned"] for e in log) == [0, 0, 1, 1]
    assert all(e["archives"] == ([top] if e["detail"]["returned"] else []) for e in log)


def test_a_masked_reader_cannot_unmask_a_value_by_searching(client, login) -> None:
    """An information officer sees internal archives masked (138****8000). Were a masked
    read enough for search to compare the clear value, 10,000 searches would give the
    number; the search is refused that candidate like one he may not read at all."""
    no = _new(client, login("zhang.wei"))
    officer = login("chen.jing")
    r = client.get(f"/customers/{no}?groups=contact,identity", headers=officer)
    assert r.status_code == 200 and set(r.json()["masked_groups"]) == {"contact", "identity"}
    assert r.json()["content"]["contact"]["mobile_phone"] == "138****8000"
    for middle in ("0012", "0013", "0014"):  # 0013 is the real one
        hit = _search(client, officer, "mobile", f"138{middle}8000", post=True)
        assert hit["items"] == [] and hit["total"] == 0, middle
    assert _search(client, officer, "name", "王小明", post=False)["total"] == 0
    log = client.get(
        "/audit?actor=chen.jing&action=archive:search", headers=login("qian.audit")
    ).json()["items"]
    assert len(log) == 4 and all(e["detail"]["returned"] == 0 for e in log)
    # The owner reads the mobile in clear, so he finds it.
    mine = _search(client, login("zhang.wei"), "mobile", "13800138000", post=True)
    assert [a["archive_no"] for a in mine["items"]] == [no]


def test_a_grant_answers_searches_only_about_the_groups_it_covers(client, login) -> None:
    """li.na's view grant covers ``contact`` only: a search by id_number (credentials)
    or by name (identity) must not confirm those values; by mobile it finds the archive."""
    no = _new(client, login("zhang.wei"), profile=PROFILE)
    li = login("li.na")
    req = _file(
        client,
        li,
        kind="view",
        archives=[no],
        groups=["contact"],
        purpose="customer_service",
        reason="回访客户",
    )
    for signer in ("head.one", "chen.jing"):
        done = _approve(client, login(signer), req["id"])
    assert done["state"] == "approved"
    assert client.get(f"/customers/{no}?groups=credentials", headers=li).status_code == 403
    assert client.get(f"/customers/{no}?groups=contact", headers=li).status_code == 200
    for field in ("id_number", "name", "plate"):
        for post in (False, True):
            hit = _search(client, li, field, QUERIES[field], post=post)
            assert hit["items"] == [] and hit["total"] == 0, (field, post)
    hit = _search(client, li, "mobile", QUERIES["mobile"], post=True)
    assert [a["archive_no"] for a in hit["items"]] == [no] and hit["total"] == 1


def test_a_signature_after_a_raise_needs_the_secret_chain_then_reads(client, login) -> None:
    no = _new(client, login("zhang.wei"))
    li = login("li.na")
    req = _file(
        client,
        li,
        kind="view",
        archives=[no],
        groups=["contact"],
        purpose="customer_service",
        reason="客户来电，需回电",
    )
    _approve(client, login("head.one"), req["id"])
    _reclassify(client, no, "secret", custodian="zhao.lei")
    # An approver who opened the request before the change is told to reload it.
    stale = client.post(
        f"/requests/{req['id']}/approve",
        json={"expected_version": req["version"] + 1},
        headers=login("chen.jing"),
    )
    assert stale.status_code == 409, stale.text
    second = _approve(client, login("chen.jing"), req["id"])
    assert second["state"] == "pending" and second["classification"] == "secret"
    assert [s["name"] for s in second["stages"]][second["next_stage"]] == "cs_manager"
    assert client.get(f"/customers/{no}?groups=contact", headers=li).status_code == 403
    notes = client.get("/requests?role=mine", headers=li).json()["notifications"]
    assert any(n["event"] == "rechained" for n in notes)
    assert [
        q["id"]
        for q in client.get("/requests?role=to_approve", headers=login("sun.li")).json()["items"]
    ] == [req["id"]]
    assert _approve(client, login("sun.li"), req["id"])["state"] == "approved"
    r = client.get(f"/customers/{no}?groups=contact", headers=li)
    assert r.status_code == 200, r.text
    assert r.json()["content"]["contact"]["mobile_phone"] == "13800138000"
    log = client.get(
        f"/audit?archive={no}&action=request:rechain", headers=login("qian.audit")
    ).json()["items"]
    assert len(log) == 1 and log[0]["detail"]["added"] == ["cs_manager"]


def test_a_raise_after_approval_ends_reads_under_the_old_grant(client, login) -> None:
    no = _new(client, login("zhang.wei"))
    li = login("li.na")
    req = _file(
        client,
        li,
        kind="view",
        archives=[no],
        groups=["contact"],
        purpose="customer_service",
        reason="客户来电",
    )
    _approve(client, login("head.one"), req["id"])
    _approve(client, login("chen.jing"), req["id"])
    assert client.get(f"/customers/{no}?groups=contact", headers=li).status_code == 200
    _reclassify(client, no, "secret", custodian="zhao.lei")
    r = client.get(f"/customers/{no}?groups=contact", headers=li)
    assert r.status_code == 403 and "13800138000" not in r.text
    decision = r.json()["decision"]
    assert "approved for an internal archive" in decision["why"] and "now secret" in decision["why"]
    assert "view request" in decision["next_step"]
    assert "customer-service manager" in decision["next_step"]
    # Through the routed endpoint (fast path off) the answer is the same.
    routed = client.get(f"/customers/{no}", params={"groups": "contact", "x": ""}, headers=li)
    assert routed.status_code in (403, 422) and "13800138000" not in routed.text


def test_a_loan_is_read_only_after_the_borrower_confirms_it(client, login) -> None:
    no = _new(client, login("zhang.wei"))
    li = login("li.na")
    req = _file(
        client,
        li,
        kind="loan",
        archives=[no],
        groups=["contact"],
        purpose="contract_follow_up",
        reason="签约",
        hours=24,
        material="客户档案复印件",
        copies=1,
    )
    _approve(client, login("head.one"), req["id"])
    assert _approve(client, login("chen.jing"), req["id"])["state"] == "approved"
    r = client.get(f"/customers/{no}?groups=contact", headers=li)
    assert r.status_code == 403 and "13800138000" not in r.text
    assert "confirm" in r.json()["decision"]["next_step"]
    (loan,) = client.get("/loans", headers=li).json()["items"]
    assert loan["confirmed_at"] is None
    assert (
        client.post(f"/loans/{loan['id']}/confirm", headers=login("wang.fang")).status_code
        == 404  # not theirs: answered as an unknown id
    )
    assert client.post(f"/loans/{loan['id']}/confirm", headers=li).status_code == 200
    r = client.get(f"/customers/{no}?groups=contact", headers=li)
    assert r.status_code == 200, r.text
    assert r.json()["content"]["contact"]["mobile_phone"] == "13800138000"
