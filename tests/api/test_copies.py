"""Copies are counted over HTTP: N approved copies permit N exports, in the approved
format; the N+1th is refused and audited. On SQLite and PostgreSQL."""

from __future__ import annotations

import threading

import pytest

from api.deps import caller_for
from policies.archive_acts import Caller
from policies.errors import Refused
from tests.api.test_workflow import _approve, _file, _new

COPY = {
    "kind": "copy",
    "groups": ["identity"],
    "purpose": "contract_follow_up",
    "reason": "合同附件",
}


def _export(client, headers, uid, fmt=None):
    body = {"request": uid} | ({"format": fmt} if fmt else {})
    return client.post("/exports", json=body, headers=headers)


def _exports(client, login, **query) -> list[dict]:
    q = "&".join(f"{k}={v}" for k, v in query.items())
    r = client.get(f"/audit?action=archive:export&{q}", headers=login("qian.audit"))
    assert r.status_code == 200, r.text
    return r.json()["items"]


def test_n_copies_permit_n_exports_and_the_next_is_refused(client, login) -> None:
    zhang = login("zhang.wei")
    no = _new(client, zhang)
    req = _file(client, zhang, archives=[no], format="csv", copies=2, **COPY)
    assert req["facts"]["export"] == {"format": "csv", "copies": 2}
    _approve(client, login("zhao.lei"), req["id"])
    for n in (1, 2):
        r = _export(client, zhang, req["id"])  # the approved format when none is given
        assert r.status_code == 200, r.text
        assert r.headers["x-copy"] == f"{n}/2" and r.headers["content-type"].startswith("text/csv")
    third = _export(client, zhang, req["id"], "csv")
    assert third.status_code == 403, third.text
    assert third.json()["rule"] == "copies-used"
    assert "all 2 approved copies were made; file a new copy request" in third.json()["detail"]
    allowed = _exports(client, login, outcome="allowed")
    assert sorted((e["detail"]["copy"], e["detail"]["copies"]) for e in allowed) == [(1, 2), (2, 2)]
    assert all(e["detail"]["request"] == req["id"] for e in allowed)
    denied = _exports(client, login, outcome="denied")
    assert [e["detail"]["rule"] for e in denied] == ["copies-used"]
    assert denied[0]["actor"] == "zhang.wei" and denied[0]["archives"] == [no]


def test_an_export_in_another_format_is_refused_and_takes_no_copy(client, login) -> None:
    zhang = login("zhang.wei")
    no = _new(client, zhang)
    req = _file(client, zhang, archives=[no], format="csv", **COPY)
    _approve(client, login("zhao.lei"), req["id"])
    wrong = _export(client, zhang, req["id"], "json")
    assert wrong.status_code == 403 and wrong.json()["rule"] == "format"
    assert "approved for csv" in wrong.json()["detail"]
    right = _export(client, zhang, req["id"], "csv")
    assert right.status_code == 200 and right.headers["x-copy"] == "1/1"
    assert [e["detail"]["rule"] for e in _exports(client, login, outcome="denied")] == ["format"]


def test_a_request_that_states_nothing_is_one_json_copy(client, login) -> None:
    zhang = login("zhang.wei")
    no = _new(client, zhang)
    req = _file(client, zhang, archives=[no], **COPY)
    assert req["facts"]["export"] == {"format": "json", "copies": 1}
    _approve(client, login("zhao.lei"), req["id"])
    first = _export(client, zhang, req["id"])
    assert first.status_code == 200 and first.headers["content-type"] == "application/json"
    assert _export(client, zhang, req["id"]).status_code == 403


def test_external_provision_counts_its_copies_too(client, login) -> None:
    zhang = login("zhang.wei")
    no = _new(client, zhang)
    req = _file(
        client,
        zhang,
        kind="external",
        archives=[no],
        groups=["identity"],
        purpose="contract_follow_up",
        reason="银行核验",
        recipient="招商银行深圳分行",
        format="json",
        copies=1,
    )
    assert req["facts"]["export"] == {
        "format": "json",
        "copies": 1,
        "recipient": "招商银行深圳分行",
    }
    _approve(client, login("zhao.lei"), req["id"])
    _approve(client, login("sun.li"), req["id"])
    assert _export(client, zhang, req["id"]).status_code == 200
    again = _export(client, zhang, req["id"])
    assert again.status_code == 403 and "file a new external request" in again.json()["detail"]


def test_an_approver_narrows_copies_and_may_not_widen_them(client, login) -> None:
    zhang = login("zhang.wei")
    no = _new(client, zhang)
    req = _file(client, zhang, archives=[no], copies=3, **COPY)
    zhao = login("zhao.lei")
    wide = client.post(f"/requests/{req['id']}/approve", json={"copies": 4}, headers=zhao)
    assert wide.status_code == 403 and wide.json()["rule"] == "widen"
    same = client.get(f"/requests/{req['id']}", headers=zhang).json()
    assert same["state"] == "pending" and same["version"] == req["version"]
    assert same["facts"]["export"]["copies"] == 3
    assert (
        client.post(f"/requests/{req['id']}/approve", json={"copies": 0}, headers=zhao).status_code
        == 422
    )
    done = _approve(client, zhao, req["id"], copies=1)
    assert done["state"] == "approved" and done["facts"]["export"]["copies"] == 1
    assert _export(client, zhang, req["id"]).headers["x-copy"] == "1/1"
    assert _export(client, zhang, req["id"]).status_code == 403


@pytest.mark.parametrize(
    ("body", "names"),
    [
        ({"copies": 0}, "copies"),
        ({"copies": 101}, "copies"),
        ({"format": "xml"}, "format"),
        ({"kind": "view", "format": "csv"}, "format"),
        ({"copies": "two"}, "copies"),
    ],
)
def test_bad_format_or_copies_are_refused_and_nothing_is_filed(client, login, body, names):
    zhang = login("zhang.wei")
    no = _new(client, zhang)
    before = client.get("/requests", headers=zhang).json()["items"]
    r = client.post("/requests", json={"archives": [no], **COPY, **body}, headers=zhang)
    assert r.status_code == 422, r.text
    assert names in r.text
    assert client.get("/requests", headers=zhang).json()["items"] == before


def test_two_exports_race_for_the_last_copy_and_one_wins(client, login) -> None:
    """Each in its own thread, session and transaction, through the service the route calls."""
    zhang = login("zhang.wei")
    no = _new(client, zhang)
    req = _file(client, zhang, archives=[no], copies=2, **COPY)
    _approve(client, login("zhao.lei"), req["id"])
    assert _export(client, zhang, req["id"]).status_code == 200
    services = client.app.state.services
    token = zhang["Authorization"].split()[1]
    caller: Caller = caller_for(services, services.tokens.verify(token, now=services.clock()), None)
    barrier = threading.Barrier(2)
    outcomes: list[object] = []

    def export() -> None:
        barrier.wait()
        try:
            outcomes.append(services.acts.export(caller, req["id"]).copy)
        except Refused as exc:
            outcomes.append(exc.rule)

    threads = [threading.Thread(target=export) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(outcomes, key=str) == [2, "copies-used"]
    copies = sorted(e["detail"]["copy"] for e in _exports(client, login, outcome="allowed"))
    assert copies == [1, 2]
