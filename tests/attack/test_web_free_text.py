"""Free text typed into a page is checked as the API checks it.

The services trust their callers with the text of a reason, a name or a
department: the API's body models (``PlainText``) refuse control characters and
bidirectional overrides before a service sees them. The administrator's pages
and the retention page built their calls from the raw form, so one person could
put a right-to-left override into a role request's or a handover's reason, a
destruction proposal or a user's display name (shown to every signer of that
user's requests), all of which the API refuses; a control character in a
destruction reason even got as far as the audit log, which refused it (503).
"""

from __future__ import annotations

import pytest

from tests.web.officer_setup import new_archive, past_retention

RLO = "\u202e"  # RIGHT-TO-LEFT OVERRIDE: "fdp.exe" shown as "exe.pdf"


def _users(client, login) -> dict[str, dict]:
    items = client.get("/users?limit=200", headers=login("admin")).json()["items"]
    return {u["username"]: u for u in items}


def _requests(client, login, kind: str) -> int:
    r = client.get(f"/requests?role=all&kind={kind}", headers=login("zhao.lei"))
    assert r.status_code == 200, r.text
    return int(r.json()["total"])


@pytest.mark.parametrize(
    "field,value",
    [("display_name", "许" + RLO + "新"), ("department", "销售一部" + RLO), ("reason", "a\x1bb")],
)
def test_a_new_account_with_a_forbidden_character_is_refused(
    browser, client, login, field, value
) -> None:
    body = {
        "username": "xu.new",
        "display_name": "许新",
        "department": "销售一部",
        "clearance": "internal",
        "roles": ["salesperson"],
        "reason": "新入职",
    } | {field: value}
    api = client.post("/users", json=body, headers=login("admin"))
    assert api.status_code == 422, api.text
    b = browser("admin")
    b.get("/ui/users/new")
    r = b.post("/ui/users/new", body)
    assert r.status_code == 422, r.text
    assert 'role="alert"' in r.text and RLO not in r.text.split('role="alert"')[1][:300]
    assert "xu.new" not in _users(client, login)
    assert _requests(client, login, "role") == 0


def test_a_role_change_or_disabling_with_a_forbidden_reason_is_refused(
    browser, client, login
) -> None:
    b = browser("admin")
    b.get("/ui/users")
    r = b.post("/ui/users/li.na/roles", {"roles": ["salesperson", "compliance"], "reason": RLO})
    assert r.status_code == 422, r.text
    assert _requests(client, login, "role") == 0
    r = b.post("/ui/users/li.na/disable", {"reason": "离职\x07"})
    assert r.status_code == 422, r.text
    assert _users(client, login)["li.na"]["disabled"] is False
    # The same forms with plain reasons still work.
    assert b.post("/ui/users/li.na/disable", {"reason": "离职"}).status_code == 303
    assert _users(client, login)["li.na"]["disabled"] is True


def test_a_handover_with_a_forbidden_reason_is_refused(browser, client, login) -> None:
    new_archive(client, login("zhang.wei"))
    b = browser("admin")
    b.get("/ui/handover")
    r = b.post("/ui/handover", {"leaver": "zhang.wei", "to": "li.na", "reason": "离职" + RLO})
    assert r.status_code == 422, r.text
    assert _requests(client, login, "handover") == 0


@pytest.mark.parametrize("reason", ["保管期满" + RLO + "废作", "保管期满\x01"])
def test_a_destruction_proposal_with_a_forbidden_reason_is_refused(
    browser, client, login, clock, reason
) -> None:
    no = past_retention(client, login, clock)
    api = client.post(
        "/requests",
        json={
            "kind": "destroy",
            "archives": [no],
            "purpose": "retention_expired",
            "reason": reason,
        },
        headers=login("chen.jing"),
    )
    assert api.status_code == 422, api.text
    b = browser("chen.jing")
    b.get("/ui/retention")
    r = b.post(f"/ui/retention/{no}/destroy", {"reason": reason})
    assert r.status_code == 422, r.text
    assert _requests(client, login, "destroy") == 0
