"""The three dead ends over HTTP: refused when filed with a 409 that names the stage
and the fix, audited as a denied filing; then, once the fix is made, finished with
the stage's alternate signing (and saying so in the request's signatures)."""

from __future__ import annotations

from foundation.db import transaction
from policies.directory import add_user, disable_user
from tests.api.conftest import _HASH
from tests.factories import archive


def _new(client, headers, **over) -> str:
    body = archive(**over)
    body.pop("owner", None)
    r = client.post("/customers", json=body, headers=headers)
    assert r.status_code == 201, r.text
    return r.json()["archive"]["archive_no"]


def _disable(api_vault, *names: str) -> None:
    with transaction(api_vault.engine) as session:
        for name in names:
            disable_user(session, name)


def _hire(api_vault, name: str, role: str) -> None:
    with transaction(api_vault.engine) as session:
        user = add_user(
            session, username=name, roles=[role], department="客户服务部", clearance="top_secret"
        )
        user.password_hash = _HASH
        session.add(user)


def _file(client, headers, expect=201, **body) -> dict:
    body = {"purpose": "customer_service", "reason": "客户来电，需回电", **body}
    r = client.post("/requests", json=body, headers=headers)
    assert r.status_code == expect, r.text
    return r.json()


def _sign(client, headers, uid) -> dict:
    r = client.post(f"/requests/{uid}/approve", json={}, headers=headers)
    assert r.status_code == 200, r.text
    return r.json()


def _refused_filings(client, login, who: str) -> list[dict]:
    r = client.get(
        f"/audit?actor={who}&action=request:file&outcome=denied", headers=login("qian.audit")
    )
    assert r.status_code == 200, r.text
    return r.json()["items"]


def _signatures(client, headers, uid) -> list[tuple[str, str]]:
    got = client.get(f"/requests/{uid}", headers=headers).json()
    return [(s["signer"], s["role"]) for s in got["signatures"]]


def test_the_only_officer_keeping_a_top_secret_archive_no_longer_dead_ends(
    client, login, api_vault
) -> None:
    no = _new(client, login("zhang.wei"), classification="top_secret", custodian="chen.jing")
    _disable(api_vault, "zhao.lei")  # no supervisor to sign instead of chen.jing
    li = login("li.na")
    problem = _file(client, li, 409, kind="view", archives=[no])
    assert problem["type"] == "urn:archive-vault:unfinishable"
    assert problem["stage"] == "custodian" and problem["rule"] == "unfinishable"
    assert problem["detail"].startswith(
        "no one could sign stage custodian (the archive's custodian) of this top_secret "
        "view request: chen.jing is the custodian and is the only one who can sign stage "
        "information_officer"
    )
    assert f"fix: name another custodian (POST /customers/{no}/custodian)" in problem["detail"]
    assert "give a second account the information_officer role" in problem["detail"]
    refused = _refused_filings(client, login, "li.na")
    assert len(refused) == 1 and refused[0]["detail"]["stage"] == "custodian"
    assert refused[0]["archives"] == [no]
    mine = client.get("/requests?role=mine", headers=li).json()
    assert mine["items"] == []  # nothing was filed

    _hire(api_vault, "ma.sup", "info_supervisor")
    req = _file(client, li, kind="view", archives=[no])
    for signer in ("head.one", "chen.jing", "sun.li"):
        _sign(client, login(signer), req["id"])
    queue = client.get("/requests?role=to_approve", headers=login("ma.sup")).json()["items"]
    assert [q["id"] for q in queue] == [req["id"]]
    done = _sign(client, login("ma.sup"), req["id"])
    assert done["state"] == "approved"
    assert _signatures(client, li, req["id"])[-1] == ("ma.sup", "info_supervisor (alternate)")


def test_a_department_heads_own_view_is_signed_by_an_alternate(client, login, api_vault) -> None:
    no = _new(client, login("zhang.wei"))
    head = login("head.one")
    _disable(api_vault, "sun.li", "zhou.gm")
    problem = _file(client, head, 409, kind="view", archives=[no])
    assert problem["stage"] == "department_head"
    assert "head.one filed it" in problem["detail"]
    assert (
        "fix: give another enabled account of department 销售一部 the department_head role"
        in (problem["detail"])
    )
    assert "cs_manager or general_manager role (who signs instead)" in problem["detail"]

    _hire(api_vault, "qin.csm", "cs_manager")
    req = _file(client, head, kind="view", archives=[no])
    # the head reads who signs in their place, by name, not "your department head"
    assert req["next_signer"].startswith("the customer-service manager or the general manager")
    assert req["facts"]["next"]["alternate"] is True
    assert req["facts"]["next"]["signers"] == ["qin.csm"]
    # the other department's head is no usual signer and no alternate: an unknown id
    r = client.post(f"/requests/{req['id']}/approve", json={}, headers=login("head.two"))
    assert r.status_code == 404
    _sign(client, login("qin.csm"), req["id"])
    done = _sign(client, login("chen.jing"), req["id"])
    assert done["state"] == "approved"
    assert _signatures(client, head, req["id"]) == [
        ("qin.csm", "cs_manager (alternate)"),
        ("chen.jing", "information_officer"),
    ]


def test_the_customer_service_managers_own_report_is_signed_by_an_alternate(
    client, login, api_vault
) -> None:
    manager = login("sun.li")
    _disable(api_vault, "zhao.lei")
    problem = _file(client, manager, 409, kind="report", purpose="statistics")
    assert problem["stage"] == "cs_manager" and "sun.li filed it" in problem["detail"]

    _hire(api_vault, "ma.sup", "info_supervisor")
    req = _file(client, manager, kind="report", purpose="statistics")
    notes = client.get("/requests?role=mine", headers=login("ma.sup")).json()["notifications"]
    assert [n["event"] for n in notes] == ["stage_waiting"] and req["id"] in notes[0]["message"]
    _sign(client, login("ma.sup"), req["id"])
    done = _sign(client, login("zhou.gm"), req["id"])
    assert done["state"] == "approved"
    assert _signatures(client, manager, req["id"]) == [
        ("ma.sup", "info_supervisor (alternate)"),
        ("zhou.gm", "general_manager"),
    ]
