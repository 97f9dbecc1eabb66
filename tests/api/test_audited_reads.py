"""Listing an archive's attachments and reading the audit trail are accesses, audited too."""

from __future__ import annotations

from tests.factories import archive


def _new(client, headers) -> str:
    body = archive()
    body.pop("owner", None)
    r = client.post("/customers", json=body, headers=headers)
    assert r.status_code == 201, r.text
    return r.json()["archive"]["archive_no"]


def _log(client, login, **params) -> list[dict]:
    r = client.get("/audit", params=params, headers=login("zhao.lei"))
    assert r.status_code == 200, r.text
    return r.json()["items"]


def test_listing_attachments_is_audited_and_so_is_a_refusal(client, login) -> None:
    owner = login("zhang.wei")
    no = _new(client, owner)
    r = client.post(
        f"/customers/{no}/attachments",
        files={"file": ("contract.pdf", b"%PDF-1.4 contract", "application/pdf")},
        headers=owner,
    )
    assert r.status_code == 201, r.text
    listed = client.get(f"/customers/{no}/attachments", headers=owner)
    assert listed.status_code == 200 and len(listed.json()) == 1
    assert client.get(f"/customers/{no}/attachments", headers=login("li.na")).status_code == 403
    entries = _log(client, login, archive=no, action="archive:attachment-list")
    assert [(e["actor"], e["outcome"]) for e in entries] == [
        ("li.na", "denied"),
        ("zhang.wei", "allowed"),
    ]
    assert entries[1]["detail"]["count"] == 1 and entries[1]["groups"] == ["attachments"]


def test_every_audit_read_endpoint_is_audited(client, login) -> None:
    supervisor = login("qian.audit")
    assert client.get("/audit", params={"limit": 5}, headers=supervisor).status_code == 200
    assert client.get("/audit/verify", headers=supervisor).status_code == 200
    assert client.get("/audit/checkpoints/latest", headers=supervisor).status_code == 200
    assert client.get("/audit/proof/1", headers=supervisor).status_code == 200
    entries = _log(client, login, action="audit:read", actor="qian.audit")
    assert [e["detail"]["endpoint"] for e in entries] == ["proof", "checkpoint", "query"]
    assert entries[2]["detail"]["limit"] == 5 and entries[0]["detail"]["seq"] == 1
    # A verification is its own action, with its result: the newest is the log's status.
    verified = _log(client, login, action="audit:verify", actor="qian.audit")
    assert verified[0]["detail"]["ok"] is True and verified[0]["detail"]["entries"] > 0
    assert all(e["outcome"] == "allowed" for e in entries)
    again = _log(client, login, action="audit:read", actor="zhao.lei")
    assert again[0]["detail"]["filters"] == {"action": "audit:verify", "actor": "qian.audit"}


def test_a_refused_audit_read_is_audited(client, login) -> None:
    sales = login("zhang.wei")
    for url in ("/audit", "/audit/verify", "/audit/checkpoints/latest", "/audit/proof/1"):
        assert client.get(url, headers=sales).status_code == 403, url
    denied = _log(client, login, action="audit:read", outcome="denied")
    assert len(denied) == 4 and {e["actor"] for e in denied} == {"zhang.wei"}
