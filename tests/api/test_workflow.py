"""End to end over HTTP, one user of the vault after another."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

from foundation.db import transaction
from policies.directory import add_user
from tests.api.conftest import _HASH
from tests.factories import archive


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


def test_view_request_walked_to_a_read_that_is_audited(client, login) -> None:
    no = _new(client, login("zhang.wei"))
    li = login("li.na")
    assert client.get(f"/customers/{no}", headers=li).status_code == 403
    req = _file(
        client,
        li,
        kind="view",
        archives=[no],
        groups=["contact"],
        purpose="customer_service",
        reason="客户来电，需回电",
    )
    assert req["state"] == "pending" and [s["name"] for s in req["stages"]] == [
        "department_head",
        "information_officer",
    ]
    # the requester cannot sign their own request; the other department's head cannot sign
    # it, nor even see it: to them it is an unknown id
    assert client.post(f"/requests/{req['id']}/approve", json={}, headers=li).status_code == 403
    wrong = client.post(f"/requests/{req['id']}/approve", json={}, headers=login("head.two"))
    assert wrong.status_code == 404
    queue = client.get("/requests?role=to_approve", headers=login("head.one")).json()["items"]
    assert [q["id"] for q in queue] == [req["id"]]
    _approve(client, login("head.one"), req["id"])
    done = _approve(client, login("chen.jing"), req["id"])
    assert done["state"] == "approved"
    r = client.get(f"/customers/{no}?groups=contact", headers=li)
    assert r.status_code == 200, r.text
    assert r.json()["content"]["contact"]["mobile_phone"] == "13800138000"
    assert r.json()["decision"]["basis"] == "grant"
    # outside the granted groups: health is refused (or masked), never shown in clear
    health = client.get(f"/customers/{no}?groups=health", headers=li)
    assert "良好" not in health.text
    entry = client.get(
        f"/audit?archive={no}&actor=li.na&action=archive:read&outcome=allowed",
        headers=login("qian.audit"),
    ).json()["items"][-1]
    assert entry["groups"] == ["contact"]
    assert entry["purpose"] == "customer_service" and entry["grant_id"]
    mine = client.get("/requests?role=mine", headers=li).json()
    assert mine["items"][0]["state"] == "approved" and mine["notifications"]


def test_denial_needs_a_reason_and_is_final(client, login) -> None:
    no = _new(client, login("zhang.wei"))
    req = _file(
        client,
        login("li.na"),
        kind="view",
        archives=[no],
        groups=["contact"],
        purpose="other",
        reason="看看",
    )
    r = client.post(f"/requests/{req['id']}/deny", json={"reason": " "}, headers=login("head.one"))
    assert r.status_code == 422, r.text
    r = client.post(
        f"/requests/{req['id']}/deny", json={"reason": "理由不充分"}, headers=login("head.one")
    )
    assert r.status_code == 200 and r.json()["state"] == "denied"
    again = client.post(f"/requests/{req['id']}/approve", json={}, headers=login("head.one"))
    assert again.status_code == 403, again.text
    assert again.json()["rule"] == "not-pending"
    # the next stage's officer never signed it and it is off every queue: not hers to see
    assert (
        client.post(
            f"/requests/{req['id']}/approve", json={}, headers=login("chen.jing")
        ).status_code
        == 404
    )


def test_loans_returned_and_overdue(client, login, clock) -> None:
    no = _new(client, login("zhang.wei"))
    li = login("li.na")
    too_long = client.post(
        "/requests",
        headers=li,
        json={
            "kind": "loan",
            "archives": [no],
            "groups": ["contact"],
            "purpose": "contract_follow_up",
            "reason": "签约",
            "hours": 73,
            "material": "客户档案原件",
            "copies": 1,
        },
    )
    assert too_long.status_code == 403 and "72" in too_long.text
    assert too_long.json()["rule"] == "loan-limit"
    loans = []
    for _ in range(2):
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
        _approve(client, login("chen.jing"), req["id"])
    register = client.get("/loans", headers=login("chen.jing")).json()["items"]
    assert len(register) == 2
    loans = [e["id"] for e in register]
    for loan in loans:  # the borrower confirms each register line (Art 19.5)
        assert client.post(f"/loans/{loan}/confirm", headers=li).status_code == 200
    assert client.get(f"/customers/{no}?groups=contact", headers=li).status_code == 200
    r = client.post(f"/loans/{loans[0]}/return", headers=li)
    assert r.status_code == 200 and r.json()["state"] == "returned"
    assert client.post(f"/loans/{loans[0]}/return", headers=li).status_code == 403
    clock.advance(hours=25)
    overdue = client.get("/loans?overdue=true", headers=login("chen.jing")).json()["items"]
    assert [e["id"] for e in overdue] == [loans[1]]
    assert client.get(f"/customers/{no}?groups=contact", headers=login("li.na")).status_code == 403


def test_export_under_an_approved_copy_request(client, login) -> None:
    zhang = login("zhang.wei")
    numbers = [
        _new(client, zhang, profile={"name": n, "mobile_phone": m, "notes": "=HYPERLINK(1)"})
        for n, m in (("甲", "13800000001"), ("乙", "13800000002"))
    ]
    assert client.post("/exports", json={"request": "nope1234"}, headers=zhang).status_code == 403
    req = _file(
        client,
        zhang,
        kind="copy",
        archives=numbers,
        groups=["identity", "notes"],
        purpose="contract_follow_up",
        reason="合同附件",
        format="csv",
    )
    _approve(client, login("zhao.lei"), req["id"])
    r = client.post("/exports", json={"request": req["id"], "format": "csv"}, headers=zhang)
    assert r.status_code == 200, r.text
    rows = list(csv.reader(io.StringIO(r.text)))
    assert rows[0][0] == "archive_no" and "mobile_phone" not in rows[0]
    assert {row[0] for row in rows[1:]} == set(numbers)
    assert all(not cell.startswith("=") for row in rows for cell in row)
    log = client.get("/audit?action=archive:export", headers=login("qian.audit")).json()["items"]
    assert set(log[0]["archives"]) == set(numbers) and log[0]["groups"] == ["identity", "notes"]


def test_destruction_under_an_approved_destroy_request(client, login, clock) -> None:
    # Filed with a retention date ahead (a past one is refused), which then runs out.
    tomorrow = (clock.now + timedelta(days=1)).date().isoformat()
    no = _new(client, login("zhang.wei"), retention_until=tomorrow)
    clock.advance(days=3)
    officer = login("chen.jing")
    req = _file(
        client,
        officer,
        kind="destroy",
        archives=[no],
        purpose="retention_expired",
        reason="保管期满，已失去价值",
    )
    _approve(client, login("sun.li"), req["id"])
    r = client.post(f"/customers/{no}/destroy", json={"request": req["id"]}, headers=officer)
    assert r.status_code == 200, r.text
    cert = r.json()
    assert cert["archive_no"] == no and cert["wrapped_dek_sha256"]
    gone = client.get(f"/customers/{no}", headers=login("zhang.wei"))
    assert gone.status_code == 410, gone.text
    log = client.get(
        f"/audit?archive={no}&action=archive:destroy", headers=login("qian.audit")
    ).json()["items"]
    assert log[0]["detail"]["certificate"]["certificate_id"] == cert["certificate_id"]


def test_admin_manages_users_and_hands_over_a_leaver(client, login, activate) -> None:
    admin = login("admin")
    no = _new(client, login("zhang.wei"))
    r = client.post(
        "/users",
        headers=admin,
        json={
            "username": "ma.chao",
            "roles": ["salesperson"],
            "department": "销售一部",
        },
    )
    # The account is created at once; the role that reads content waits for the
    # information supervisor's signature.
    assert r.status_code == 202, r.text
    assert r.json()["roles"] == [] and r.json()["pending_roles"] == ["salesperson"]
    created = r.json()
    role_req = r.json()["request"]
    assert role_req["kind"] == "role" and role_req["next_signer"] == (
        "the customer-information supervisor"
    )
    assert client.post(f"/requests/{role_req['id']}/approve", json={}, headers=admin).status_code
    assert _approve(client, login("zhao.lei"), role_req["id"])["state"] == "approved"
    assert (
        client.post(
            "/users",
            headers=login("zhang.wei"),
            json={"username": "evil", "roles": ["admin"]},
        ).status_code
        == 403
    )
    r = client.post("/users/zhang.wei/handover", json={"to": "ma.chao"}, headers=admin)
    assert r.status_code == 202, r.text
    hand = r.json()
    assert hand["kind"] == "handover" and hand["change"]["archives"] == [no]
    assert client.get("/me", headers=login("zhang.wei")).status_code == 200  # not yet
    assert client.post(f"/requests/{hand['id']}/approve", json={}, headers=admin).status_code == 403
    # the leaver's department head, then an information officer (as for a reassignment)
    assert _approve(client, login("head.one"), hand["id"])["state"] == "pending"
    assert client.get("/me", headers=login("zhang.wei")).status_code == 200  # not yet
    done = _approve(client, login("chen.jing"), hand["id"])
    assert done["state"] == "approved" and done["change"]["applied"]["archives"] == [no]
    assert client.get("/me", headers=login("zhang.wei")).status_code == 401
    ma = activate(created)  # the administrator never knew this password
    assert client.get(f"/customers/{no}?groups=identity", headers=ma).status_code == 200


def test_a_loan_without_material_or_with_empty_optional_text_still_works(client, login) -> None:
    no = _new(client, login("zhang.wei"))
    req = _file(
        client,
        login("li.na"),
        kind="loan",
        archives=[no],
        groups=["contact"],
        purpose="revisit",
        reason="回访",
        hours=2,
        material="档案复印件",
        copies=1,
        credential_ref="",
    )
    _approve(client, login("head.one"), req["id"])
    done = _approve(client, login("chen.jing"), req["id"])
    assert done["state"] == "approved"


def test_reclassify_and_reassign_one_archive(client, login) -> None:
    no = _new(client, login("zhang.wei"))
    officer = login("chen.jing")
    assert (
        client.post(
            f"/customers/{no}/classification",
            headers=login("zhang.wei"),
            json={"classification": "secret", "reason": "重要客户"},
        ).status_code
        == 403
    )
    r = client.post(
        f"/customers/{no}/classification",
        headers=officer,
        json={"classification": "top_secret", "reason": "重要客户"},
    )
    assert r.status_code == 422 and "custodian" in r.text
    r = client.post(  # raising narrows: done at once
        f"/customers/{no}/classification",
        headers=officer,
        json={"classification": "top_secret", "custodian": "zhao.lei", "reason": "重要客户"},
    )
    assert r.status_code == 200, r.text
    assert r.json()["classification"] == "top_secret" and r.json()["remarks"] == "绝密"
    r = client.post(
        f"/customers/{no}/owner", headers=officer, json={"owner": "nobody.here", "reason": "调岗"}
    )
    assert r.status_code == 422 and "nobody.here" in r.text
    r = client.post(  # a contact from another department
        f"/customers/{no}/owner",
        headers=officer,
        json={"owner": "li.na", "contacts": ["wang.fang"], "reason": "调岗"},
    )
    assert r.status_code == 403 and r.json()["rule"] == "wrong-department"
    head = login("head.one")
    r = client.post(
        f"/customers/{no}/owner", headers=head, json={"owner": "li.na", "reason": "调岗"}
    )
    assert r.status_code == 202, r.text
    req = r.json()
    # The department head filed it, so the general manager signs in their place;
    # top-secret adds the customer-service manager and the custodian.
    assert [s["name"] for s in req["stages"]] == [
        "department_head",
        "information_officer",
        "cs_manager",
        "custodian",
    ]
    assert req["change"]["owner"] == {"from": "zhang.wei", "to": "li.na"}
    for signer in ("zhou.gm", "chen.jing", "sun.li", "zhao.lei"):
        done = _approve(client, login(signer), req["id"])
    assert done["state"] == "approved"
    assert done["change"]["applied"] == {"owner": "li.na", "contacts": []}


def test_the_service_sweep_expires_grants_and_tells_the_requester(client, login, clock) -> None:
    no = _new(client, login("zhang.wei"))
    req = _file(
        client,
        login("li.na"),
        kind="view",
        archives=[no],
        groups=["contact"],
        purpose="customer_service",
        reason="回电",
    )
    _approve(client, login("head.one"), req["id"])
    _approve(client, login("chen.jing"), req["id"])
    clock.advance(hours=25)
    result = client.app.state.services.sweep()
    assert result.expired_grants
    notes = client.get("/requests?role=mine", headers=login("li.na")).json()["notifications"]
    assert any(n["event"] == "grant_expired" for n in notes), notes


def test_an_external_visitor_reads_under_an_approved_view_request(client, login, api_vault) -> None:

    with transaction(api_vault.engine) as session:
        visitor = add_user(
            session,
            username="visitor.wu",
            roles=["external"],
            department="外部",
            external=True,
            credential_ref="介绍信 2026-017",
        )
        visitor.password_hash = _HASH
        session.add(visitor)
    no = _new(client, login("zhang.wei"))
    wu = login("visitor.wu")
    assert client.get(f"/customers/{no}", headers=wu).status_code == 403
    req = _file(
        client,
        wu,
        kind="view",
        archives=[no],
        groups=["identity"],
        purpose="contract_follow_up",
        reason="律师事务所核对合同",
        credential_ref="介绍信 2026-017",
    )
    assert [s["name"] for s in req["stages"]] == ["information_officer"]  # no department head
    _approve(client, login("chen.jing"), req["id"])
    r = client.get(f"/customers/{no}?groups=identity", headers=wu)
    assert r.status_code == 200 and r.json()["content"]["identity"]["name"] == "王小明"
    outside = client.get(f"/customers/{no}?groups=contact", headers=wu)
    assert outside.status_code == 403, outside.text
    assert "13800138000" not in outside.text


def test_a_statistical_report_needs_cs_manager_then_general_manager(client, login) -> None:
    _new(client, login("zhang.wei"))
    head = login("head.one")
    assert client.get("/reports/summary", headers=head).status_code == 403
    req = _file(client, head, kind="report", purpose="statistics", reason="季度客户统计")
    assert [s["name"] for s in req["stages"]] == ["cs_manager", "general_manager"]
    _approve(client, login("sun.li"), req["id"])
    assert client.get("/reports/summary", headers=head).status_code == 403  # not yet
    _approve(client, login("zhou.gm"), req["id"])
    r = client.get("/reports/summary", headers=head)
    assert r.status_code == 200, r.text
    assert r.json()["total"] == 1 and r.json()["grade"] == {"B": 1}
    assert "王小明" not in r.text
