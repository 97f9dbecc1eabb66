"""Evidence from the audit log frozen into a leak case, over HTTP (Art 27)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlmodel import Session, select

from audit.models import entry_table
from foundation.db import transaction
from policies.leak_evidence_models import LeakEvidence
from tests.api.test_workflow import _approve, _file, _new
from tests.auditlog import tamper


def _case(client, login, archives=()) -> str:
    body = {"what_seen": "a list on a screen", "archives": list(archives)}
    r = client.post("/leaks", json=body, headers=login("zhang.wei"))
    assert r.status_code == 201, r.text
    return r.json()["uid"]


def _grant_read(client, login, no: str) -> str:
    """li.na reads ``no``'s contact group under an approved view request; the grant id."""
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
    r = client.get(f"/customers/{no}?groups=contact", headers=li)
    assert r.status_code == 200, r.text
    return str(r.json()["decision"]["grant_id"])


def _now() -> datetime:
    return datetime.now(UTC)  # audit entries are stamped with the wall clock


def _log(client, login, **params) -> list[dict]:
    r = client.get("/audit", params=params | {"limit": 1000}, headers=login("qian.audit"))
    assert r.status_code == 200, r.text
    return r.json()["items"]


def test_account_evidence_is_exactly_the_entries_of_the_window(client, login) -> None:
    zhang = login("zhang.wei")
    before = _new(client, zhang)
    client.get(f"/customers/{before}", headers=zhang)
    since = _now()
    inside = [_new(client, zhang) for _ in range(2)]
    for no in inside:
        assert client.get(f"/customers/{no}?groups=contact", headers=zhang).status_code == 200
    client.get("/customers/KH-2026-999999", headers=zhang)  # a miss counts too
    until = _now()
    client.get(f"/customers/{inside[0]}", headers=zhang)  # after the window
    uid = _case(client, login)
    r = client.post(
        f"/leaks/{uid}/evidence",
        json={
            "kind": "account",
            "account": "zhang.wei",
            "since": since.isoformat(),
            "until": until.isoformat(),
        },
        headers=login("zhao.lei"),
    )
    assert r.status_code == 201, r.text
    ev = r.json()
    expected = [
        e["seq"]
        for e in _log(client, login, actor="zhang.wei")
        if since.isoformat() <= _utc(e["time"]) < until.isoformat()
    ]
    assert expected and sorted(expected) == [i["seq"] for i in ev["items"]]
    touched = ev["accounts"]["zhang.wei"]
    assert set(inside) <= set(touched["archives"]) and before not in touched["archives"]
    assert "contact" in touched["groups"]
    assert all(i["proof"] is not None for i in ev["items"]) and ev["tree_size"] >= max(expected)


def _utc(text: str) -> str:
    return datetime.fromisoformat(text).astimezone(UTC).isoformat()


def test_archive_evidence_names_the_readers_with_purpose_and_grant(client, login) -> None:
    since = _now()
    no = _new(client, login("zhang.wei"))
    grant = _grant_read(client, login, no)
    other = _new(client, login("zhang.wei"))
    client.get(f"/customers/{other}", headers=login("zhang.wei"))
    uid = _case(client, login, archives=[no])
    r = client.post(
        f"/leaks/{uid}/evidence",
        json={"kind": "archives", "since": since.isoformat(), "until": _now().isoformat()},
        headers=login("sun.li"),
    )
    assert r.status_code == 201, r.text
    ev = r.json()
    assert ev["archives"] == [no]
    reads = [i for i in ev["items"] if i["actor"] == "li.na" and i["action"] == "archive:read"]
    assert reads and reads[0]["purpose"] == "customer_service" and reads[0]["grant_id"] == grant
    assert all(no in i["archives"] for i in ev["items"])  # the other archive is not there
    assert "li.na" in ev["accounts"] and ev["accounts"]["li.na"]["groups"] == ["contact"]
    # the attachment is on the case and in the log, with the record's digest
    attached = _log(client, login, action="leak:change")
    assert any(e["detail"].get("digest") == ev["digest"] for e in attached)


@pytest.mark.parametrize("who", ["zhang.wei", "li.na", "admin", "chen.jing", "qian.audit"])
def test_only_the_handlers_attach(client, login, api_vault, who) -> None:
    uid = _case(client, login, archives=["KH-2026-000001"])
    window = {"since": (_now() - timedelta(hours=1)).isoformat(), "until": _now().isoformat()}
    r = client.post(
        f"/leaks/{uid}/evidence", json={"kind": "archives"} | window, headers=login(who)
    )
    assert r.status_code in (403, 404), (who, r.text)
    with Session(api_vault.engine) as s:
        assert s.exec(select(LeakEvidence)).all() == []
    refused = _log(client, login, action="leak:change", outcome="denied")
    assert any(e["actor"] == who and e["detail"].get("case") == uid for e in refused)


@pytest.mark.parametrize("who", ["zhang.wei", "li.na", "admin", "wang.fang", "zhou.gm"])
def test_reporters_and_strangers_never_read_evidence(client, login, who) -> None:
    uid = _case(client, login, archives=["KH-2026-000001"])  # filed by zhang.wei
    window = {"since": (_now() - timedelta(hours=1)).isoformat(), "until": _now().isoformat()}
    r = client.post(
        f"/leaks/{uid}/evidence", json={"kind": "archives"} | window, headers=login("zhao.lei")
    )
    ev = r.json()["uid"]
    for path in (f"/leaks/{uid}/evidence", f"/leaks/{uid}/evidence/{ev}"):
        got = client.get(path, headers=login(who))
        assert got.status_code == (403 if who == "zhang.wei" else 404), (who, path)
        assert "items" not in got.json()
    refused = _log(client, login, action="leak:read", outcome="denied")
    assert any(e["actor"] == who for e in refused)
    # compliance and both handlers read it
    for reader in ("qian.audit", "zhao.lei", "sun.li"):
        assert client.get(f"/leaks/{uid}/evidence/{ev}", headers=login(reader)).status_code == 200


def _frozen(client, login) -> tuple[str, str, int]:
    zhang = login("zhang.wei")
    since = _now()
    no = _new(client, zhang)
    client.get(f"/customers/{no}", headers=zhang)
    uid = _case(client, login, archives=[no])
    r = client.post(
        f"/leaks/{uid}/evidence",
        json={"kind": "archives", "since": since.isoformat(), "until": _now().isoformat()},
        headers=login("zhao.lei"),
    )
    assert r.status_code == 201, r.text
    return uid, r.json()["uid"], r.json()["items"][-1]["seq"]


def _verify(client, login, uid: str, ev: str) -> dict:
    r = client.get(f"/leaks/{uid}/evidence/{ev}/verify", headers=login("qian.audit"))
    assert r.status_code == 200, r.text
    return r.json()


def test_frozen_evidence_verifies_later(client, login) -> None:
    uid, ev, _seq = _frozen(client, login)
    for _ in range(3):  # the log grows and is signed again meanwhile
        client.get("/leaks", headers=login("sun.li"))
    assert client.get("/audit/checkpoints/latest", headers=login("qian.audit")).status_code == 200
    report = _verify(client, login, uid, ev)
    assert report["ok"], report["problems"]


def test_an_edited_evidence_row_is_detected(client, login, api_vault) -> None:
    uid, ev, _seq = _frozen(client, login)
    with transaction(api_vault.engine) as s:
        row = s.exec(select(LeakEvidence).where(LeakEvidence.uid == ev)).one()
        entries = [dict(e) for e in row.entries]
        entries[-1]["purpose"] = "audit"  # a nicer story
        row.entries = entries
        s.add(row)
    report = _verify(client, login, uid, ev)
    assert not report["ok"]
    assert any("digest" in p for p in report["problems"])
    assert any("does not match its recorded hash" in p for p in report["problems"])


def test_an_entry_dropped_from_the_evidence_row_is_detected(client, login, api_vault) -> None:
    uid, ev, _seq = _frozen(client, login)
    with transaction(api_vault.engine) as s:
        row = s.exec(select(LeakEvidence).where(LeakEvidence.uid == ev)).one()
        row.entries = list(row.entries)[:-1]
        s.add(row)
    problems = _verify(client, login, uid, ev)["problems"]
    assert any("not frozen" in p for p in problems)


def test_an_edited_log_entry_is_detected(client, login, api_vault) -> None:
    uid, ev, seq = _frozen(client, login)
    tamper(
        api_vault.engine,
        sa.update(entry_table).where(entry_table.c.seq == seq).values(actor="nobody"),
    )
    problems = _verify(client, login, uid, ev)["problems"]
    assert any(f"entry {seq}" in p for p in problems), problems


def test_bad_evidence_requests_are_clear_4xx(client, login) -> None:
    uid = _case(client, login)
    h = login("zhao.lei")
    now = _now()
    bad = [
        {"kind": "archives", "since": now.isoformat(), "until": now.isoformat()},
        {
            "kind": "archives",
            "since": (now - timedelta(hours=1)).isoformat(),
            "until": now.isoformat(),
        },
        {
            "kind": "account",
            "since": (now - timedelta(hours=1)).isoformat(),
            "until": now.isoformat(),
        },
        {"kind": "people", "since": now.isoformat(), "until": now.isoformat()},
        {
            "kind": "account",
            "account": "x",
            "since": "2026-01-01T00:00:00",
            "until": now.isoformat(),
        },
        {
            "kind": "archives",
            "archives": ["nope"],
            "since": (now - timedelta(hours=1)).isoformat(),
            "until": now.isoformat(),
        },
    ]
    for body in bad:
        r = client.post(f"/leaks/{uid}/evidence", json=body, headers=h)
        assert r.status_code == 422, (body, r.text)
    assert client.get(f"/leaks/{uid}/evidence", headers=h).json()["total"] == 0
    assert client.get(f"/leaks/{uid}/evidence/EV-0000000000", headers=h).status_code == 404
