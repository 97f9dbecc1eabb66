"""One working day of the vault, in Chromium, every step through the pages.

A salesperson finds a client by phone and opens the contact group; a colleague
is refused, files a view request from the refusal; the department head and an
information officer approve it from their queues; the colleague now reads it. A
loan is filed, approved, confirmed and left out past its due time (the served
app's clock is moved, as the API tests move it) and shows highlighted at the top
of the information officer's register. Compliance then finds each of these steps
in the audit search. Every page on the way is checked with axe-core.
"""

from __future__ import annotations

import re

from tests.web.browser.conftest import axe_clean, shot
from tests.web.test_requests import _new

MOBILE = "13800138000"
REQUEST = re.compile(r".*/ui/requests/(R-[0-9A-F]+)$")


def _nav(page, name: str) -> None:
    """Follow a link of the main navigation, as a person would."""
    page.get_by_role("navigation", name="主导航").get_by_role("link", name=name).click()


def _approve(open_as, who: str, uid: str) -> None:
    page = open_as(who)
    _nav(page, "待我审批")
    assert uid in page.content()
    axe_clean(page)
    page.get_by_role("link", name=f"审批 {uid}").click()
    page.wait_for_url(f"**/ui/requests/{uid}")
    assert page.locator("[data-marking]").count() >= 1
    page.click(f"form[action='/ui/requests/{uid}/approve'] button[type=submit]")
    page.wait_for_url("**/ui/queue")
    assert page.locator("p.flash").is_visible()


def _file(page, no: str, kind: str, reason: str, **extra: str) -> str:
    page.goto(f"/ui/requests/new?archives={no}&kind={kind}")
    page.select_option("#f-kind", kind)
    page.check("#g-contact")
    page.select_option("#f-purpose", extra.pop("purpose", "customer_service"))
    page.fill("#f-reason", reason)
    for field, value in extra.items():
        page.fill(f"#f-{field}", value)
    axe_clean(page)
    page.get_by_role("button", name="提交申请").click()
    page.wait_for_url(REQUEST)
    return REQUEST.match(page.url).group(1)


def test_a_day_in_the_vault(open_as, client, login, clock) -> None:
    no = _new(client, login("zhang.wei"))

    # The salesperson finds the client by phone and opens the contact group.
    sales = open_as("zhang.wei")
    _nav(sales, "查找")
    sales.select_option("#f-by", "mobile")
    sales.fill("#f-value", MOBILE)
    sales.get_by_role("button", name="查找", exact=True).click()
    sales.get_by_role("link", name=no).click()
    sales.wait_for_url(f"**/ui/clients/{no}")
    assert sales.locator(".marking").get_attribute("data-marking") == "internal"
    sales.get_by_role("button", name="打开 联系方式").click()
    assert sales.get_by_text(MOBILE).is_visible()
    axe_clean(sales)

    # A colleague is refused, and files a view request from the refusal.
    colleague = open_as("li.na")
    colleague.goto(f"/ui/clients/{no}?group=contact")
    assert MOBILE not in colleague.content()
    axe_clean(colleague)
    colleague.get_by_role("link", name="提交查阅申请").click()
    view = _file(colleague, no, "view", "客户来电，需回电")

    # The department head, then an information officer, approve from their queues.
    _approve(open_as, "head.one", view)
    _approve(open_as, "chen.jing", view)

    # The colleague now reads it.
    colleague = open_as("li.na")
    colleague.goto(f"/ui/clients/{no}?group=contact")
    assert colleague.get_by_text(MOBILE).is_visible()

    # A loan, approved, confirmed, then out past its due time.
    loan_request = _file(
        colleague,
        no,
        "loan",
        "签约需查阅原件",
        purpose="contract_follow_up",
        hours="24",
        material="客户档案复印件",
        copies="1",
    )
    _approve(open_as, "head.one", loan_request)
    _approve(open_as, "chen.jing", loan_request)
    colleague = open_as("li.na")
    _nav(colleague, "我的借阅")
    colleague.locator("button", has_text="确认领取").first.click()
    colleague.wait_for_url("**/ui/loans")
    clock.advance(hours=25)
    client.app.state.services.sweep()

    officer = open_as("chen.jing")
    _nav(officer, "借阅登记簿")
    first = officer.locator("table.register tbody tr").first
    assert "overdue" in (first.get_attribute("class") or "")
    assert "li.na" in first.inner_text()
    assert officer.locator("[data-marking]").count() == 1
    axe_clean(officer)
    shot(officer, "story-register")

    # Compliance finds each step in the audit search.
    audit = open_as("qian.audit")
    _nav(audit, "审计日志")
    audit.fill("#f-archive", no)
    audit.get_by_role("button", name="查找", exact=True).click()
    audit.wait_for_url(f"**/ui/audit?*archive={no}*")
    rows = audit.locator("table.audit tbody tr").all_inner_texts()
    seen = {(r.split("\t")[2].split(" ")[0], r.split("\t")[3], r.split("\t")[4]) for r in rows}
    for step in (
        ("zhang.wei", "archive:read", "允许"),
        ("li.na", "archive:read", "拒绝"),
        ("li.na", "request:file", "允许"),
        ("head.one", "request:approve", "允许"),
        ("chen.jing", "request:approve", "允许"),
        ("li.na", "archive:read", "允许"),
        ("li.na", "loan:open", "允许"),
    ):
        assert step in seen, (step, sorted(seen))
    axe_clean(audit)
    shot(audit, "story-audit")
