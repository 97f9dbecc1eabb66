"""A view request and a loan end to end in Chromium: filed on the form, approved from
the approvers' "waiting for me" queues, read through the API, then a loan confirmed
and left out past its due time."""

from __future__ import annotations

import re

from tests.web.browser.conftest import axe_clean, shot
from tests.web.test_requests import _new

UID = re.compile(r"/ui/requests/(R-[0-9A-F]+)$")


def _approve_from_queue(open_as, username: str, uid: str) -> None:
    page = open_as(username)
    page.goto("/ui/queue")
    assert page.get_by_role("heading", name="待我审批").is_visible()
    assert uid in page.content()
    axe_clean(page)
    if username == "head.one":
        shot(page, "requests-queue")
    page.get_by_role("link", name=f"审批 {uid}").click()
    page.wait_for_url(f"**/ui/requests/{uid}")
    axe_clean(page)
    page.click(f"form[action='/ui/requests/{uid}/approve'] button[type=submit]")
    page.wait_for_url("**/ui/queue")
    assert page.locator("p.flash").is_visible()


def test_a_view_request_filed_and_approved_in_the_browser(open_as, client, login) -> None:
    no = _new(client, login("zhang.wei"))
    assert client.get(f"/customers/{no}?groups=contact", headers=login("li.na")).status_code == 403

    page = open_as("li.na")
    page.goto(f"/ui/requests/new?archives={no}&kind=view")
    assert page.get_by_role("heading", name="提交申请").is_visible()
    assert page.input_value("#f-archives") == no
    page.check("#g-contact")
    page.select_option("#f-purpose", "customer_service")
    page.fill("#f-reason", "客户来电，需回电")
    axe_clean(page)
    shot(page, "requests-new")
    page.get_by_role("button", name="提交申请").click()
    page.wait_for_url(re.compile(r".*/ui/requests/R-[0-9A-F]+$"))
    uid = UID.search(page.url).group(1)
    assert page.locator("[data-marking=internal]").is_visible()
    assert "head.one" in page.content()  # who may sign the first stage now
    axe_clean(page)
    shot(page, "requests-show")

    # A view of an internal archive: the department head, then an information officer.
    _approve_from_queue(open_as, "head.one", uid)
    _approve_from_queue(open_as, "chen.jing", uid)

    page.goto("/ui/requests")
    assert "已批准" in page.content()
    axe_clean(page)
    read = client.get(f"/customers/{no}?groups=contact", headers=login("li.na"))
    assert read.status_code == 200, read.text
    assert read.json()["decision"]["basis"] == "grant"


def test_a_loan_confirmed_then_overdue(open_as, client, login, clock) -> None:
    no = _new(client, login("zhang.wei"))
    page = open_as("li.na")
    page.goto(f"/ui/requests/new?archives={no}&kind=loan")
    page.select_option("#f-kind", "loan")
    page.check("#g-contact")
    page.select_option("#f-purpose", "contract_follow_up")
    page.fill("#f-reason", "签约需查阅原件")
    page.fill("#f-hours", "24")
    page.fill("#f-material", "客户档案复印件")
    page.fill("#f-copies", "1")
    page.get_by_role("button", name="提交申请").click()
    page.wait_for_url(re.compile(r".*/ui/requests/R-[0-9A-F]+$"))
    uid = UID.search(page.url).group(1)
    assert "客户档案复印件" in page.content()
    for signer in ("head.one", "chen.jing"):
        r = client.post(f"/requests/{uid}/approve", json={}, headers=login(signer))
        assert r.status_code == 200, r.text

    page.goto("/ui/loans")
    loan = client.get("/loans", headers=login("li.na")).json()["items"][0]["id"]
    page.get_by_role("button", name=f"确认领取 {loan}").click()
    page.wait_for_url("**/ui/loans")
    assert page.locator("p.flash").is_visible()
    assert page.locator("tr.overdue").count() == 0
    axe_clean(page)

    clock.advance(hours=25)
    client.app.state.services.sweep()
    page = open_as("li.na")  # the earlier session idled out while the clock moved
    page.goto("/ui/loans")
    assert page.locator("tr.overdue").count() == 1
    assert loan in page.locator("tr.overdue").inner_text()
    axe_clean(page)
    shot(page, "requests-loans")
