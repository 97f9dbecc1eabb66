"""The call list a handover leaves (篇七): who sees which line, who marks it done, once."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.factories import archive

CUSTOMER = archive()["profile"]


def _new(client, login) -> str:
    body = archive()
    body.pop("owner", None)
    r = client.post("/customers", json=body, headers=login("zhang.wei"))
    assert r.status_code == 201, r.text
    return r.json()["archive"]["archive_no"]


@pytest.fixture
def handed(client, login) -> list[str]:
    """zhang.wei leaves; li.na takes over two archives (handover signed by two people)."""
    numbers = sorted([_new(client, login), _new(client, login)])
    r = client.post("/users/zhang.wei/handover", json={"to": "li.na"}, headers=login("admin"))
    assert r.status_code == 202, r.text
    uid = r.json()["id"]
    calls = client.get("/handovers/calls", headers=login("li.na")).json()["items"]
    assert calls == []  # nothing before the handover applies
    for signer in ("head.one", "chen.jing"):
        r = client.post(f"/requests/{uid}/approve", json={}, headers=login(signer))
        assert r.status_code == 200, r.text
    assert r.json()["state"] == "approved"
    return numbers


def _calls(client, headers, **params) -> list[dict]:
    r = client.get("/handovers/calls", params=params, headers=headers)
    assert r.status_code == 200, r.text
    return r.json()["items"]


def test_one_line_per_moved_archive_seen_by_the_right_people(client, login, handed) -> None:
    mine = _calls(client, login("li.na"), open="true")
    assert [c["archive_no"] for c in mine] == handed
    assert {c["new_owner"] for c in mine} == {"li.na"}
    assert {c["leaver"] for c in mine} == {"zhang.wei"}
    assert all(c["done_at"] is None for c in mine)
    for viewer in ("head.one", "chen.jing", "qian.audit"):
        assert [c["archive_no"] for c in _calls(client, login(viewer))] == handed
    for viewer in ("head.two", "wang.fang", "sun.li", "admin"):
        assert _calls(client, login(viewer)) == []
    # the leaver is disabled with the handover: sees nothing at all
    assert client.get("/handovers/calls", headers=login("zhang.wei")).status_code == 401


def test_the_list_carries_no_customer_content(client, login, handed) -> None:
    r = client.get("/handovers/calls", headers=login("chen.jing"))
    for value in CUSTOMER.values():
        assert str(value) not in r.text


def test_marked_done_once_by_the_new_owner_or_their_head(client, login, clock, handed) -> None:
    first, second = (c["id"] for c in _calls(client, login("li.na")))
    today = clock.now.date()
    body = {"channel": "phone", "at": today.isoformat(), "note": "已电话告知"}
    for who, status in (("wang.fang", 404), ("head.two", 404), ("chen.jing", 403)):
        r = client.post(f"/handovers/calls/{first}/done", json=body, headers=login(who))
        assert r.status_code == status, r.text
    r = client.post(f"/handovers/calls/{first}/done", json=body, headers=login("li.na"))
    assert r.status_code == 200, r.text
    assert r.json()["done_at"] == today.isoformat() and r.json()["done_by"] == "li.na"
    assert r.json()["channel"] == "phone"
    again = client.post(f"/handovers/calls/{first}/done", json=body, headers=login("head.one"))
    assert again.status_code == 409, again.text
    r = client.post(
        f"/handovers/calls/{second}/done",
        json={"channel": "visit", "at": today.isoformat()},
        headers=login("head.one"),
    )
    assert r.status_code == 200 and r.json()["done_by"] == "head.one"
    assert _calls(client, login("li.na"), open="true") == []
    assert len(_calls(client, login("li.na"))) == 2
    log = client.get(
        "/audit", params={"action": "archive:reassign"}, headers=login("qian.audit")
    ).json()["items"]
    done = [e for e in log if e["detail"].get("op") == "handover-call-done"]
    assert {e["actor"] for e in done} == {"li.na", "head.one"}
    assert all("已电话告知" not in str(e) for e in log)  # the free-text note stays out


def test_bad_channel_or_day_is_a_422_and_changes_nothing(client, login, clock, handed) -> None:
    call = _calls(client, login("li.na"))[0]["id"]
    today = clock.now.date()
    for body in (
        {"channel": "pigeon", "at": today.isoformat()},
        {"channel": "phone", "at": (today + timedelta(days=1)).isoformat()},
        {"channel": "phone", "at": (today - timedelta(days=30)).isoformat()},
        {"channel": "phone", "at": "yesterday"},
        {"channel": "phone"},
        {"channel": "phone", "at": today.isoformat(), "note": "x" * 501},
        {"channel": "phone", "at": today.isoformat(), "extra": 1},
    ):
        r = client.post(f"/handovers/calls/{call}/done", json=body, headers=login("li.na"))
        assert r.status_code == 422, (body, r.text)
    assert client.post(
        "/handovers/calls/0/done",
        json={"channel": "phone", "at": today.isoformat()},
        headers=login("li.na"),
    ).status_code in (404, 422)
    assert all(c["done_at"] is None for c in _calls(client, login("li.na")))
