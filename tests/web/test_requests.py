"""Requests, approvals and loans through the pages: the API's services, the API's refusals.

Each refusal is tried by the wrong person (another salesperson, a head of another
department, the requester themself, a form without its CSRF token) and the request
is checked unchanged through the API afterwards.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta

from tests.factories import archive

UID = re.compile(r"/ui/requests/(R-[0-9A-F]+)")


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


def _view(client, login, no: str, **over) -> dict:
    body = {
        "kind": "view",
        "archives": [no],
        "groups": ["contact"],
        "purpose": "customer_service",
        "reason": "客户来电，需回电",
    } | over
    return _file(client, login("li.na"), **body)


def _state(client, login, uid: str) -> dict:
    r = client.get(f"/requests/{uid}", headers=login("zhao.lei"))
    assert r.status_code == 200, r.text
    return r.json()


def _denied(client, login, actor: str, action: str) -> list[dict]:
    r = client.get(
        f"/audit?actor={actor}&action={action}&outcome=denied", headers=login("qian.audit")
    )
    assert r.status_code == 200, r.text
    return r.json()["items"]


# -- filing ------------------------------------------------------------------------------


def test_the_form_is_prefilled_and_files_a_view_request(browser, client, login) -> None:
    no = _new(client, login("zhang.wei"))
    b = browser("li.na")
    form = b.get(f"/ui/requests/new?archives={no}&kind=view")
    assert form.status_code == 200
    assert no in form.text and "客户服务 / customer service" in form.text
    r = b.post(
        "/ui/requests/new",
        {
            "kind": "view",
            "archives": no,
            "groups": ["contact"],
            "purpose": "customer_service",
            "reason": "客户来电，需回电",
            "material": "ignored for a view",
        },
    )
    assert r.status_code == 303, r.text
    uid = UID.match(r.headers["location"]).group(1)
    page = b.get(f"/ui/requests/{uid}")
    assert page.status_code == 200
    assert 'data-marking="internal"' in page.text  # the banner of the highest marking
    assert no in page.text and "您的部门负责人" in page.text and "head.one" in page.text
    assert "已提交" in page.text or "filed" in page.text.lower()
    req = _state(client, login, uid)
    assert req["kind"] == "view" and req["requester"] == "li.na" and req["groups"] == ["contact"]


def test_bad_input_shows_the_form_again_naming_the_field(browser, client, login) -> None:
    no = _new(client, login("zhang.wei"))
    b = browser("li.na")
    b.get("/ui/requests/new")
    r = b.post(
        "/ui/requests/new",
        {"kind": "view", "archives": no, "purpose": "customer_service", "reason": ""},
    )
    assert r.status_code == 422
    assert 'id="e-reason"' in r.text and "理由" in r.text
    r = b.post(
        "/ui/requests/new",
        {
            "kind": "view",
            "archives": "KH-1",
            "purpose": "customer_service",
            "reason": "x",
            "hours": "soon",
        },
    )
    assert r.status_code == 422 and 'id="e-archives"' in r.text and 'id="e-hours"' in r.text
    r = b.post(
        "/ui/requests/new",
        {"kind": "view", "archives": no, "purpose": "no_such_purpose", "reason": "x"},
    )
    assert r.status_code == 422
    r = b.post(
        "/ui/requests/new",
        {
            "kind": "loan",
            "archives": no,
            "purpose": "contract_follow_up",
            "reason": "签约",
            "hours": "73",
            "material": "客户档案原件",
            "copies": "1",
        },
    )
    assert r.status_code == 403 and "72" in r.text  # the loan limit (Art 19.5)
    assert client.get("/requests?role=mine", headers=login("li.na")).json()["items"] == []


def test_a_kind_the_caller_may_not_file_is_refused(browser, client, login) -> None:
    no = _new(client, login("zhang.wei"))
    b = browser("li.na")
    b.get("/ui/requests/new")
    r = b.post(
        "/ui/requests/new",
        {"kind": "destroy", "archives": no, "purpose": "retention_expired", "reason": "到期"},
    )
    assert r.status_code == 403
    assert client.get("/requests?role=mine", headers=login("li.na")).json()["items"] == []


def test_an_unfinishable_chain_is_refused_with_its_fix(browser, client, login) -> None:
    no = _new(client, login("zhang.wei"))
    for name in ("chen.jing", "zhao.lei"):  # every information officer and their alternate
        r = client.patch(f"/users/{name}", json={"disabled": True}, headers=login("admin"))
        assert r.status_code == 200, r.text
    b = browser("li.na")
    b.get("/ui/requests/new")
    r = b.post(
        "/ui/requests/new",
        {"kind": "view", "archives": no, "purpose": "customer_service", "reason": "回电"},
    )
    assert r.status_code == 409
    assert "information_officer" in r.text and "fix" in r.text
    assert 'name="reason"' in r.text  # the form again, with what was typed
    assert client.get("/requests?role=mine", headers=login("li.na")).json()["items"] == []


# -- my requests and one request ---------------------------------------------------------


def test_my_requests_show_the_chain_and_filter_by_state(browser, client, login) -> None:
    no = _new(client, login("zhang.wei"))
    req = _view(client, login, no)
    r = client.post(f"/requests/{req['id']}/approve", json={}, headers=login("head.one"))
    assert r.status_code == 200, r.text
    b = browser("li.na")
    page = b.get("/ui/requests")
    assert page.status_code == 200
    assert req["id"] in page.text and 'data-marking="internal"' in page.text
    assert "head.one" in page.text  # who signed
    assert "chen.jing" in page.text  # who may sign the stage waiting now
    assert 'class="done"' in page.text and 'class="next"' in page.text
    assert req["id"] in b.get("/ui/requests?state=pending").text
    assert req["id"] not in b.get("/ui/requests?state=approved").text
    assert b.get("/ui/requests?state=lost").status_code == 422
    assert b.get("/ui/requests?offset=-1").status_code == 422
    assert req["id"] not in browser("zhang.wei").get("/ui/requests").text


def test_another_salesperson_cannot_see_the_request_page(browser, client, login) -> None:
    no = _new(client, login("zhang.wei"))
    req = _view(client, login, no)
    for name in ("zhang.wei", "wang.fang", "head.two", "admin"):
        r = browser(name).get(f"/ui/requests/{req['id']}")
        assert r.status_code == 404, name
        assert "客户来电" not in r.text
    assert browser("li.na").get(f"/ui/requests/{req['id']}").status_code == 200
    assert browser().get(f"/ui/requests/{req['id']}").status_code == 303


# -- the queue and the decisions ---------------------------------------------------------


def test_the_queue_shows_every_fact_the_signer_judges(browser, client, login) -> None:
    no = _new(client, login("zhang.wei"), classification="secret", custodian="chen.jing")
    loan = _file(
        client,
        login("li.na"),
        kind="loan",
        archives=[no],
        groups=["contact"],
        purpose="contract_follow_up",
        reason="签约需原件",
        hours=24,
        material="客户档案复印件",
        copies=2,
    )
    b = browser("head.one")
    page = b.get("/ui/queue")
    assert page.status_code == 200
    text = page.text
    assert loan["id"] in text and "li.na" in text and "销售一部" in text
    assert "合同跟进" in text and "签约需原件" in text
    assert no in text and "tag-secret" in text and 'data-marking="secret"' in text
    assert "客户档案复印件" in text and "<dd>2</dd>" in text
    assert "head.one" in text  # who may sign now
    export = _file(
        client,
        login("zhang.wei"),
        kind="external",
        archives=[no],
        groups=["contact"],
        purpose="audit",
        reason="外部审计",
        format="csv",
        copies=3,
        recipient="某会计师事务所",
    )
    text = browser("zhao.lei").get("/ui/queue").text
    assert (
        export["id"] in text and "CSV" in text and "某会计师事务所" in text and "<dd>3</dd>" in text
    )
    assert loan["id"] not in browser("head.two").get("/ui/queue").text


def test_someone_not_in_the_chain_cannot_approve(browser, client, login) -> None:
    no = _new(client, login("zhang.wei"))
    req = _view(client, login, no)
    for name in ("head.two", "chen.jing", "wang.fang"):
        b = browser(name)
        b.get("/ui/queue")
        r = b.post(f"/ui/requests/{req['id']}/approve", {})
        assert r.status_code in (403, 404, 409), name
        assert "<h1>" in r.text and "Traceback" not in r.text
    assert _denied(client, login, "head.two", "request:approve")  # audited as the API does
    after = _state(client, login, req["id"])
    assert after["state"] == "pending" and after["next_stage"] == 0
    assert after["signatures"] == []


def test_the_requester_cannot_approve_their_own_request(browser, client, login) -> None:
    no = _new(client, login("zhang.wei"))
    req = _view(client, login, no)
    b = browser("li.na")
    page = b.get(f"/ui/requests/{req['id']}")
    assert 'action="/ui/requests/' + req["id"] + '/approve"' not in page.text
    r = b.post(f"/ui/requests/{req['id']}/approve", {})
    assert r.status_code == 403
    assert _state(client, login, req["id"])["signatures"] == []
    assert _denied(client, login, "li.na", "request:approve")


def test_deny_needs_a_reason(browser, client, login) -> None:
    no = _new(client, login("zhang.wei"))
    req = _view(client, login, no)
    b = browser("head.one")
    page = b.get(f"/ui/requests/{req['id']}")
    assert 'action="/ui/requests/' + req["id"] + '/deny"' in page.text
    r = b.post(f"/ui/requests/{req['id']}/deny", {"reason": "   "})
    assert r.status_code == 422 and 'id="e-deny-reason"' in r.text
    assert _state(client, login, req["id"])["state"] == "pending"
    r = b.post(f"/ui/requests/{req['id']}/deny", {"reason": "理由不充分"})
    assert r.status_code == 303 and r.headers["location"] == "/ui/queue"
    after = _state(client, login, req["id"])
    assert after["state"] == "denied" and after["signatures"][0]["reason"] == "理由不充分"
    assert "理由不充分" in browser("li.na").get(f"/ui/requests/{req['id']}").text


def test_approve_with_narrowed_hours_grants_those_hours(browser, client, login, clock) -> None:
    no = _new(client, login("zhang.wei"))
    req = _view(client, login, no, groups=["contact", "identity"], hours=24)
    head = browser("head.one")
    head.get(f"/ui/requests/{req['id']}")
    r = head.post(
        f"/ui/requests/{req['id']}/approve",
        {"hours": "2", "narrow_groups": "1", "groups": ["contact"], "note": "只看联系方式"},
    )
    assert r.status_code == 303, r.text
    officer = browser("chen.jing")
    assert req["id"] in officer.get("/ui/queue").text
    officer.get(f"/ui/requests/{req['id']}")
    r = officer.post(
        f"/ui/requests/{req['id']}/approve", {"narrow_groups": "1", "groups": ["contact"]}
    )
    assert r.status_code == 303, r.text
    done = _state(client, login, req["id"])
    assert done["state"] == "approved" and done["hours"] == 2 and done["groups"] == ["contact"]
    li = login("li.na")
    read = client.get(f"/customers/{no}?groups=contact", headers=li)
    assert read.status_code == 200, read.text
    until = datetime.fromisoformat(read.json()["decision"]["valid_until"])
    assert abs(until - (clock.now + timedelta(hours=2))) < timedelta(minutes=1)
    clock.advance(hours=3)
    assert client.get(f"/customers/{no}?groups=contact", headers=login("li.na")).status_code == 403


def test_an_approver_may_not_widen_or_untick_every_group(browser, client, login) -> None:
    no = _new(client, login("zhang.wei"))
    req = _view(client, login, no, hours=4)
    b = browser("head.one")
    b.get(f"/ui/requests/{req['id']}")
    r = b.post(f"/ui/requests/{req['id']}/approve", {"narrow_groups": "1"})
    assert r.status_code == 422 and 'id="e-groups"' in r.text
    r = b.post(f"/ui/requests/{req['id']}/approve", {"hours": "5"})
    assert r.status_code == 403  # longer than asked: the service's "widen" refusal
    r = b.post(
        f"/ui/requests/{req['id']}/approve", {"narrow_groups": "1", "groups": ["contact", "health"]}
    )
    assert r.status_code == 403
    assert _state(client, login, req["id"])["signatures"] == []


def test_withdraw_by_its_requester_only(browser, client, login) -> None:
    no = _new(client, login("zhang.wei"))
    req = _view(client, login, no)
    for name in ("head.one", "zhang.wei"):
        b = browser(name)
        b.get("/ui/queue")
        r = b.post(f"/ui/requests/{req['id']}/withdraw", {})
        assert r.status_code in (403, 404), name
    assert _state(client, login, req["id"])["state"] == "pending"
    li = browser("li.na")
    page = li.get(f"/ui/requests/{req['id']}")
    assert f"/ui/requests/{req['id']}/withdraw" in page.text
    r = li.post(f"/ui/requests/{req['id']}/withdraw", {})
    assert r.status_code == 303
    assert _state(client, login, req["id"])["state"] == "withdrawn"


def test_forms_without_csrf_are_refused(browser, client, login) -> None:
    no = _new(client, login("zhang.wei"))
    req = _view(client, login, no)
    li = browser("li.na")
    li.get("/ui/requests")
    assert li.post(f"/ui/requests/{req['id']}/withdraw", {}, csrf=False).status_code == 403
    forged = {"csrf": "0" * 64}
    assert li.post(f"/ui/requests/{req['id']}/withdraw", forged, csrf=False).status_code == 403
    r = li.post(
        "/ui/requests/new",
        {"kind": "view", "archives": no, "purpose": "other", "reason": "x"},
        csrf=False,
    )
    assert r.status_code == 403
    head = browser("head.one")
    head.get("/ui/queue")
    assert head.post(f"/ui/requests/{req['id']}/approve", {}, csrf=False).status_code == 403
    assert (
        head.post(f"/ui/requests/{req['id']}/deny", {"reason": "x"}, csrf=False).status_code == 403
    )
    after = _state(client, login, req["id"])
    assert after["state"] == "pending" and after["signatures"] == []
    assert len(client.get("/requests?role=mine", headers=login("li.na")).json()["items"]) == 1


def test_pages_need_a_session(browser) -> None:
    b = browser()
    for url in ("/ui/requests", "/ui/requests/new", "/ui/queue", "/ui/loans"):
        r = b.get(url)
        assert r.status_code == 303 and r.headers["location"].startswith("/login"), url


# -- loans -------------------------------------------------------------------------------


def _loan(client, login, no: str, hours: int = 24) -> str:
    req = _file(
        client,
        login("li.na"),
        kind="loan",
        archives=[no],
        groups=["contact"],
        purpose="contract_follow_up",
        reason="签约",
        hours=hours,
        material="客户档案复印件",
        copies=1,
    )
    for signer in ("head.one", "chen.jing"):
        r = client.post(f"/requests/{req['id']}/approve", json={}, headers=login(signer))
        assert r.status_code == 200, r.text
    return client.get("/loans", headers=login("li.na")).json()["items"][-1]["id"]


def test_loans_are_confirmed_returned_and_overdue(browser, client, login, clock) -> None:
    no = _new(client, login("zhang.wei"))
    first = _loan(client, login, no)
    second = _loan(client, login, no)
    b = browser("li.na")
    page = b.get("/ui/loans")
    assert page.status_code == 200 and first in page.text and second in page.text
    assert "北京时间" in page.text and 'data-marking="internal"' in page.text
    assert 'class="overdue"' not in page.text
    for loan in (first, second):
        r = b.post(f"/ui/loans/{loan}/confirm", {})
        assert r.status_code == 303
    lines = {e["id"]: e for e in client.get("/loans", headers=login("li.na")).json()["items"]}
    assert lines[first]["confirmed_at"] and lines[second]["confirmed_at"]
    assert b.post(f"/ui/loans/{first}/return", {}).status_code == 303
    clock.advance(hours=25)
    client.app.state.services.sweep()
    page = browser("li.na").get("/ui/loans")  # a new session: the old one idled out
    assert page.status_code == 200
    overdue = re.findall(r'<tr class="overdue">\s*<td class="mono">(L-[0-9A-F]+)', page.text)
    assert overdue == [second]
    lines = {e["id"]: e for e in client.get("/loans", headers=login("li.na")).json()["items"]}
    assert lines[first]["state"] == "returned" and lines[second]["state"] == "overdue"


def test_only_the_borrower_confirms_or_returns(browser, client, login) -> None:
    no = _new(client, login("zhang.wei"))
    loan = _loan(client, login, no)
    for name in ("zhang.wei", "head.one", "chen.jing"):
        b = browser(name)
        assert loan not in b.get("/ui/loans").text  # my loans: the caller's own lines
        assert b.post(f"/ui/loans/{loan}/confirm", {}).status_code in (403, 404), name
        if name != "chen.jing":  # an information officer registers a return (Art 20)
            assert b.post(f"/ui/loans/{loan}/return", {}).status_code in (403, 404), name
    li = browser("li.na")
    li.get("/ui/loans")
    assert li.post(f"/ui/loans/{loan}/return", {}, csrf=False).status_code == 403
    line = client.get("/loans", headers=login("li.na")).json()["items"][0]
    assert line["state"] == "out" and line["confirmed_at"] is None
