"""The customer's access report over HTTP (PIPL Art 45, GDPR Art 15)."""

from __future__ import annotations

import pytest

from tests.api.test_leak_evidence import _grant_read, _log
from tests.api.test_workflow import _approve, _file, _new


def test_the_report_lists_what_is_held_and_every_access(client, login) -> None:
    zhang = login("zhang.wei")
    no = _new(client, zhang)
    grant = _grant_read(client, login, no)
    req = _file(
        client,
        zhang,
        kind="external",
        archives=[no],
        groups=["identity"],
        purpose="contract_follow_up",
        reason="合同",
        recipient="上海某律师事务所",
        format="json",
    )
    _approve(client, login("zhao.lei"), req["id"])
    _approve(client, login("sun.li"), req["id"])
    exported = client.post("/exports", json={"request": req["id"]}, headers=zhang)
    assert exported.status_code == 200, exported.text
    r = client.get(f"/customers/{no}/access-report", headers=login("qian.audit"))
    assert r.status_code == 200, r.text
    report = r.json()
    assert report["archive"]["archive_no"] == no
    held = {g["group"] for g in report["held"]["groups"]}
    assert "contact" in held and set(report["consent"]["groups"]) >= held
    assert "13800138000" not in r.text  # names and states, never content
    reads = [a for a in report["accesses"] if a["who"] == "li.na"]
    assert reads[0]["purpose"] == "customer_service" and reads[0]["grant"] == grant
    assert reads[0]["groups"] == ["contact"]
    out = [a for a in report["accesses"] if a["action"] == "archive:export"]
    assert out[0]["exported_to"]["recipient"] == "上海某律师事务所" and out[0]["provision"]
    assert out[0]["who"] == "zhang.wei" and out[0]["purpose"] == "contract_follow_up"
    # itself audited
    entries = _log(client, login, action="archive:access-report", archive=no)
    assert entries and entries[0]["actor"] == "qian.audit"
    assert entries[0]["detail"]["accesses"] == len(report["accesses"])
    # the handlers may ask too
    for who in ("zhao.lei", "sun.li"):
        assert client.get(f"/customers/{no}/access-report", headers=login(who)).status_code == 200


@pytest.mark.parametrize("who", ["zhang.wei", "head.one", "chen.jing", "zhou.gm", "admin"])
def test_the_report_is_refused_to_everyone_else(client, login, who) -> None:
    no = _new(client, login("zhang.wei"))
    r = client.get(f"/customers/{no}/access-report", headers=login(who))
    assert r.status_code == 403, r.text
    assert "accesses" not in r.json()
    refused = _log(client, login, action="archive:access-report", outcome="denied")
    assert any(e["actor"] == who and e["archives"] == [no] for e in refused)
    assert not _log(client, login, action="archive:access-report", outcome="allowed")


def test_bad_archive_numbers(client, login) -> None:
    h = login("qian.audit")
    assert client.get("/customers/nope/access-report", headers=h).status_code == 422
    assert client.get("/customers/KH-2026-999999/access-report", headers=h).status_code == 404
