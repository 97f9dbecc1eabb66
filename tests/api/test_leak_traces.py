"""Tracing a leaked file to its export over HTTP (Art 27): the export, its requester,
approvers and recipient are named from 50 rows; a file that never left the vault
names none; only compliance and the handlers may upload; bad uploads are 4xx."""

from __future__ import annotations

import csv
import io
import json
import random

import pytest

from audit.events import Actor
from policies.fingerprint import Fingerprinter
from tests.api.test_workflow import _approve, _file
from tests.spreadsheet import round_trip
from vault.importer import bulk_insert
from vault.renderings import canonical
from vault.seed import SyntheticArchives
from vault.store import ArchiveStore

N = 150  # a request names at most 100 archives


@pytest.fixture
def archives(api_vault) -> list[str]:
    store = ArchiveStore(api_vault)
    gen = SyntheticArchives(seed=11, owners=(("zhang.wei", "销售一部"),))
    rows = (
        store.filing.prepare({**r, "classification": "internal", "custodian": None, "grade": "C"})
        for r in gen.many(N)
    )
    report = bulk_insert(store, rows, actor=Actor("test", "system"), total=N, source="test")
    first = int(report.first.rsplit("-", 1)[1])
    year = report.first.split("-")[1]
    return [f"KH-{year}-{first + i:06d}" for i in range(N)]


def _export(client, login, who, numbers, kind="copy", fmt="csv", **extra) -> str:
    req = _file(
        client,
        login(who),
        kind=kind,
        archives=numbers,
        groups=["identity", "contact"],
        purpose="contract_follow_up",
        reason="合同附件",
        format=fmt,
        **extra,
    )
    _approve(client, login("zhao.lei"), req["id"])
    if kind == "external":
        _approve(client, login("sun.li"), req["id"])
    r = client.post("/exports", json={"request": req["id"]}, headers=login(who))
    assert r.status_code == 200, r.text
    assert "fingerprint" not in str(r.headers).lower()
    return r.text


def _rows(text: str) -> list[dict[str, str]]:
    if text.lstrip().startswith("["):
        return [
            {"archive_no": r["archive_no"]}
            | {k: v for g in r.values() if isinstance(g, dict) for k, v in g.items()}
            for r in json.loads(text)
        ]
    return list(csv.DictReader(io.StringIO(text)))


def _csv(rows: list[dict[str, str]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(dict.fromkeys(k for r in rows for k in r)))
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def _case(client, login) -> str:
    r = client.post(
        "/leaks", json={"what_seen": "a client list on a forum"}, headers=login("li.na")
    )
    assert r.status_code == 201, r.text
    return r.json()["uid"]


def _trace(client, login, uid, body: bytes | str, who="qian.audit", ctype="text/csv"):
    data = body.encode() if isinstance(body, str) else body
    return client.post(
        f"/leaks/{uid}/fingerprint", content=data, headers=login(who) | {"Content-Type": ctype}
    )


def _fingerprint_events(client, login, uid) -> list[dict]:
    case = client.get(f"/leaks/{uid}", headers=login("zhao.lei")).json()
    return [e for e in case["events"] if e["kind"] == "fingerprint"]


@pytest.fixture
def exports(client, login, archives) -> dict[str, str]:
    return {
        "copy": _export(client, login, "zhang.wei", archives[:100]),
        "other": _export(client, login, "li.na", archives[50:]),
        "external": _export(
            client,
            login,
            "zhang.wei",
            archives[:100],
            kind="external",
            fmt="json",
            recipient="招商银行深圳分行",
        ),
    }


def test_fifty_rows_name_the_export_its_requester_approvers_and_recipient(
    client, login, exports
) -> None:
    uid = _case(client, login)
    rows = _rows(exports["external"])
    assert len(rows) == 101  # 100 archives and one decoy row
    leaked = random.Random(1).sample(rows, 50)
    r = _trace(client, login, uid, json.dumps(leaked), ctype="application/json")
    assert r.status_code == 200, r.text
    named = r.json()["named"]
    assert named["requester"] == "zhang.wei" and named["kind"] == "external"
    assert named["approvers"] == ["zhao.lei", "sun.li"]
    assert named["recipient"] == "招商银行深圳分行"
    assert r.json()["confidence"] >= 0.99
    log = client.get("/audit?action=archive:export", headers=login("qian.audit")).json()["items"]
    assert named["export"] in {e["detail"].get("fingerprint") for e in log}
    (event,) = _fingerprint_events(client, login, uid)
    assert event["detail"]["export"] == named["export"] and event["actor"] == "qian.audit"
    assert set(event["detail"]) <= {
        "export", "confidence", "rows", "bits", "exports_compared", "request", "requester",
        "approvers",
    }  # fmt: skip


def test_reordered_rows_saved_by_a_spreadsheet_still_name_it(client, login, exports) -> None:
    uid = _case(client, login)
    rows = _rows(exports["other"])
    leaked = random.Random(2).sample(rows, 50)
    random.Random(3).shuffle(leaked)
    r = _trace(client, login, uid, round_trip(_csv(leaked), encoding="gb18030"), who="sun.li")
    assert r.status_code == 200, r.text
    named = r.json()["named"]
    assert named is not None and named["approvers"] == ["zhao.lei"]
    copy = _trace(client, login, uid, _csv(_rows(exports["copy"])[:50]), who="zhao.lei")
    assert copy.json()["named"]["export"] not in (named["export"], None)


def test_a_file_that_never_left_the_vault_names_none(
    client, login, exports, archives, api_vault
) -> None:
    uid = _case(client, login)
    fields = {f: s.type for f, s in api_vault.schema.fields.items()}
    plain = [  # the same archives rendered plainly (no decoy row: that never left either)
        {k: canonical(fields[k], v) if k in fields else v for k, v in row.items()}
        for row in _rows(exports["copy"])
        if row["archive_no"] in archives
    ]
    r = _trace(client, login, uid, _csv(plain))
    assert r.status_code == 200 and r.json()["named"] is None, r.json()
    other = Fingerprinter(bytes(32 * [9]), api_vault.schema)
    content = [
        (row["archive_no"], {"contact": {k: v for k, v in row.items() if k != "archive_no"}})
        for row in plain
    ]
    marked = [{"archive_no": no} | c["contact"] for no, c in other.mark("FP-X", content, [], [])]
    r = _trace(client, login, uid, _csv(marked))
    assert r.status_code == 200 and r.json()["named"] is None
    assert [e["detail"]["export"] for e in _fingerprint_events(client, login, uid)] == [None, None]


def test_only_compliance_and_the_handlers_upload(client, login, exports) -> None:
    uid = _case(client, login)
    body = _csv(_rows(exports["copy"])[:50])
    for who in ("li.na", "zhang.wei", "admin", "head.one", "chen.jing", "zhou.gm"):
        r = _trace(client, login, uid, body, who=who)
        assert r.status_code == 403, who
    assert _trace(client, login, "LK-0000000000", body, who="admin").status_code == 403
    assert _trace(client, login, "LK-0000000000", body).status_code == 404
    assert _fingerprint_events(client, login, uid) == []
    denied = client.get(
        "/audit?action=leak:change&outcome=denied", headers=login("qian.audit")
    ).json()["items"]
    assert {e["actor"] for e in denied} >= {"li.na", "admin", "head.one"}


def test_bad_uploads_are_refused_and_nothing_is_stored(client, login, monkeypatch) -> None:
    uid = _case(client, login)
    assert _trace(client, login, uid, b"").status_code == 422
    assert _trace(client, login, uid, b"\x89PNG\r\n\x1a\n\x00\x00").status_code == 422
    assert _trace(client, login, uid, b"%PDF-1.7", ctype="application/pdf").status_code == 415
    assert _trace(client, login, uid, "name,mobile\n王,1\n").status_code == 422
    assert _trace(client, login, uid, "[1, 2", ctype="application/json").status_code == 422
    monkeypatch.setattr("api.routers.leak_traces.MAX_BYTES", 1000)
    assert _trace(client, login, uid, "archive_no\n" + "KH-2026-000001\n" * 200).status_code == 413
    assert _fingerprint_events(client, login, uid) == []
