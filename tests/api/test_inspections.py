"""The half-yearly inspection (Art 14) over HTTP: what it finds, what it never shows, who runs it."""

from __future__ import annotations

import copy
import json

import pytest
import sqlalchemy as sa
from sqlmodel import Session, select

from audit.report_signature import body_sha256, verify_report
from foundation.db import transaction
from policies.inspection_html import render_html
from policies.inspection_models import Inspection
from tests.auditlog import tamper
from tests.factories import archive
from vault.models import Archive, SealedGroup, User

CANARY = "金丝雀-13912345678"
INSPECTORS = ("qian.audit", "zhao.lei")
OTHERS = ("zhang.wei", "head.one", "chen.jing", "sun.li", "zhou.gm", "admin")


def _new(client, headers, **over) -> str:
    body = archive(**over)
    body.pop("owner", None)
    r = client.post("/customers", json=body, headers=headers)
    assert r.status_code == 201, r.text
    return r.json()["archive"]["archive_no"]


def _full_archive(client, login) -> str:
    """An archive with every kind of ciphertext: groups, a revision, an interaction, a file."""
    h = login("zhang.wei")
    profile = {"name": CANARY, "mobile_phone": "13912345678", "health": CANARY}
    no = _new(client, h, profile=profile)
    r = client.patch(f"/customers/{no}", json={"profile": {"health": CANARY + "2"}}, headers=h)
    assert r.status_code == 200, r.text
    r = client.post(
        f"/customers/{no}/interactions",
        json={"occurred_on": "2026-01-05", "channel": "call", "text": CANARY},
        headers=h,
    )
    assert r.status_code == 201, r.text
    r = client.post(
        f"/customers/{no}/attachments",
        params={"filename": f"{CANARY}.txt"},
        content=CANARY.encode() * 50_000,
        headers={**h, "Content-Type": "text/plain"},
    )
    assert r.status_code == 201, r.text
    return no


def _inspect(client, login, who="qian.audit") -> dict:
    r = client.post("/inspections", headers=login(who))
    assert r.status_code == 201, r.text
    return r.json()


def _flip(engine, no: str, group: str = "contact") -> None:
    with transaction(engine) as session:
        aid = session.exec(select(Archive.id).where(Archive.archive_no == no)).one()
        row = session.get(SealedGroup, (aid, group))
        blob = bytearray(row.ciphertext)
        blob[-5] ^= 0x01
        row.ciphertext = bytes(blob)
        session.add(row)


def test_a_clean_vault_inspects_clean_and_every_kind_is_opened(client, login) -> None:
    no = _full_archive(client, login)
    _new(client, login("zhang.wei"))
    out = _inspect(client, login)
    body = out["report"]["body"]
    assert out["clean"] and body["clean"] and body["integrity_ok"]
    kinds = body["content"]["kinds"]
    assert all(k["failed"] == 0 for k in kinds.values())
    assert kinds["dek"]["ok"] == 2 and kinds["manifest"]["ok"] == 2
    for kind in ("group", "revision", "interaction", "attachment", "chunk"):
        assert kinds[kind]["ok"] >= 1, kind
    assert kinds["chunk"]["ok"] >= 2  # the file spans chunks
    assert body["content"]["failing_archives"] == []
    assert body["audit_log"]["ok"] and body["audit_log"]["newest_checkpoint"]
    assert all(part["total"] == 0 for part in body["findings"].values())
    assert verify_report(out["report"]).ok
    assert no not in json.dumps(body)  # a clean archive is not even named


def test_a_flipped_byte_names_its_archive_and_nothing_leaks(client, login, api_vault) -> None:
    bad = _full_archive(client, login)
    good = _full_archive(client, login)
    _flip(api_vault.engine, bad)
    out = _inspect(client, login)
    body = out["report"]["body"]
    assert not body["integrity_ok"] and not out["clean"]
    assert body["content"]["failing_archives"] == [{"archive_no": bad, "kinds": ["group"]}]
    assert body["content"]["kinds"]["group"]["failed"] == 1
    assert good not in json.dumps(body)
    # no plaintext anywhere: the answer, the stored row, the page, the audit log
    html = client.get(f"/inspections/{out['uid']}/html", headers=login("qian.audit")).text
    with Session(api_vault.engine) as session:
        stored = session.exec(select(Inspection)).one().report
        log = session.connection().execute(sa.text("SELECT * FROM audit_entry")).all()
    for text in (json.dumps(out, ensure_ascii=False), stored, html, repr(log)):
        assert CANARY not in text and "13912345678" not in text
    entry = client.get("/audit?action=vault:inspect", headers=login("qian.audit")).json()["items"][
        0
    ]
    assert entry["archives"] == [bad]


def test_a_tampered_audit_entry_is_reported(client, login, api_vault) -> None:
    _new(client, login("zhang.wei"))
    assert api_vault.audit_log().head() >= 3  # sequenced: entry 3 stands in the chain
    tamper(api_vault.engine, sa.text("UPDATE audit_entry SET actor = 'mallory' WHERE seq = 3"))
    body = _inspect(client, login)["report"]["body"]
    assert not body["audit_log"]["ok"] and not body["integrity_ok"]
    assert any(p["seq"] == 3 for p in body["audit_log"]["problems"])
    assert body["content"]["failing_archives"] == []


def _granted(client, login, no: str, kind: str, **extra) -> None:
    r = client.post(
        "/requests",
        headers=login("li.na"),
        json={
            "kind": kind,
            "archives": [no],
            "groups": ["contact"],
            "purpose": "contract_follow_up",
            "reason": "签约",
        }
        | extra,
    )
    assert r.status_code == 201, r.text
    for signer in ("head.one", "chen.jing"):
        ok = client.post(f"/requests/{r.json()['id']}/approve", json={}, headers=login(signer))
        assert ok.status_code == 200, ok.text


def test_loose_ends_are_listed(client, login, clock, api_vault) -> None:
    no = _new(client, login("zhang.wei"))
    _granted(client, login, no, "loan", hours=24, material="客户档案复印件", copies=1)
    loan = client.get("/loans", headers=login("chen.jing")).json()["items"][0]["id"]
    assert client.post(f"/loans/{loan}/confirm", headers=login("li.na")).status_code == 200
    clock.advance(hours=25)  # the loan is overdue now
    _granted(client, login, no, "view")
    secret = _new(client, login("zhang.wei"), classification="secret", custodian="chen.jing")
    with transaction(api_vault.engine) as session:
        row = session.exec(select(Archive).where(Archive.archive_no == secret)).one()
        row.custodian = None  # as an archive from before the rule would be
        session.add(row)
        user = session.exec(select(User).where(User.username == "li.na")).one()
        user.disabled = True  # disabled behind the vault's back: her grant stays active
        session.add(user)
    body = _inspect(client, login, "zhao.lei")["report"]["body"]
    found = body["findings"]
    assert [i["loan"] for i in found["overdue_loans"]["items"]] == [loan]
    assert [i["archive_no"] for i in found["without_custodian"]["items"]] == [secret]
    assert "no custodian" in found["without_custodian"]["items"][0]["problem"]
    orphans = found["grants_outliving_users"]["items"]
    assert [(g["holder"], g["why"], g["kind"]) for g in orphans] == [("li.na", "disabled", "view")]
    assert found["past_retention"]["total"] == 0
    assert body["integrity_ok"] and not body["clean"]


def test_the_signature_verifies_and_a_changed_report_fails(client, login, api_vault) -> None:
    doc = _inspect(client, login)["report"]
    pinned = api_vault.keys.audit_signing_key().public_key()
    assert verify_report(doc, pinned).ok
    changed = copy.deepcopy(doc)
    changed["body"]["content"]["kinds"]["group"]["failed"] = 0
    changed["body"]["clean"] = not doc["body"]["clean"]
    assert not verify_report(changed).ok
    assert not verify_report(changed, pinned).ok
    swapped = copy.deepcopy(doc)
    swapped["signature"]["value"] = swapped["signature"]["value"][::-1]
    assert not verify_report(swapped).ok
    assert not verify_report({"format": "nope"}).ok and not verify_report([]).ok
    assert "Signature" in render_html(doc)


def test_the_inspection_is_recorded_with_its_hash(client, login, api_vault) -> None:
    out = _inspect(client, login)
    digest = body_sha256(out["report"]["body"])
    assert out["report_sha256"] == digest
    entries = client.get("/audit?action=vault:inspect", headers=login("qian.audit")).json()
    entry = entries["items"][0]
    assert entry["seq"] == out["audit_seq"] and entry["actor"] == "qian.audit"
    assert entry["detail"]["report_sha256"] == digest
    assert entry["detail"]["inspection"] == out["uid"]
    listed = client.get("/inspections", headers=login("zhao.lei")).json()
    assert [i["uid"] for i in listed["items"]] == [out["uid"]]
    assert listed["due"]["due"] is False and listed["due"]["last_inspection"] == out["uid"]
    one = client.get(f"/inspections/{out['uid']}", headers=login("zhao.lei")).json()
    assert one["report"] == out["report"]
    reads = client.get("/audit?action=inspection:read", headers=login("qian.audit")).json()
    assert len(reads["items"]) == 2


def test_half_a_year_later_the_next_one_is_due(client, login, clock) -> None:
    listed = client.get("/inspections", headers=login("qian.audit")).json()
    assert listed["due"]["due"] is True and listed["due"]["last_inspection"] is None
    _inspect(client, login)
    clock.advance(days=183)
    assert client.get("/inspections", headers=login("qian.audit")).json()["due"]["due"] is False
    clock.advance(days=1)
    assert client.get("/inspections", headers=login("qian.audit")).json()["due"]["due"] is True


@pytest.mark.parametrize("who", OTHERS)
def test_only_compliance_and_the_supervisor_inspect(client, login, api_vault, who) -> None:
    uid = _inspect(client, login)["uid"]
    h = login(who)
    for method, url in (
        ("post", "/inspections"),
        ("get", "/inspections"),
        ("get", f"/inspections/{uid}"),
        ("get", f"/inspections/{uid}/html"),
    ):
        r = client.request(method.upper(), url, headers=h)
        assert r.status_code == 403, (who, url, r.text)
        assert CANARY not in r.text
    with Session(api_vault.engine) as session:
        assert len(session.exec(select(Inspection)).all()) == 1  # nothing run by them
    denied = client.get(
        f"/audit?action=vault:inspect&actor={who}&outcome=denied", headers=login("qian.audit")
    ).json()["items"]
    assert len(denied) == 4
    assert {e["detail"]["attempted"] for e in denied} == {"run", "list", "read"}


def test_a_stranger_and_bad_ids(client, login) -> None:
    assert client.post("/inspections").status_code == 401
    assert client.get("/inspections/IN-0000000000", headers=login("qian.audit")).status_code == 404
    assert client.get("/inspections/x';--", headers=login("qian.audit")).status_code == 422
    assert client.get("/inspections?limit=0", headers=login("qian.audit")).status_code == 422


def test_each_inspector_may_run_one(client, login) -> None:
    for who in INSPECTORS:
        assert _inspect(client, login, who)["report"]["body"]["by"] == who
