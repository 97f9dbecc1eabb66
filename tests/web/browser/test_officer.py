"""The information officer's, compliance's and the administrator's main flows in Chromium."""

from __future__ import annotations

from tests.web.browser.conftest import axe_clean, shot
from tests.web.officer_setup import new_archive, overdue_and_open, past_retention


def test_officer_sees_the_overdue_loan_first(open_as, client, login, clock) -> None:
    past_retention(client, login, clock)  # moves the clock three days on: first
    late, on_time = overdue_and_open(client, login, clock)
    page = open_as("chen.jing")
    page.get_by_role("navigation").get_by_role("link", name="借阅登记簿").click()
    page.wait_for_url("**/ui/register")
    rows = page.locator("table.register tbody tr")
    assert rows.first.get_attribute("data-loan") == late
    assert "overdue" in (rows.first.get_attribute("class") or "")
    assert page.locator(f'tr[data-loan="{on_time}"]').get_attribute("class") != "overdue"
    axe_clean(page)
    shot(page, "officer-register")
    page.locator(f'tr[data-loan="{late}"] button').click()
    page.wait_for_url("**/ui/register")
    assert page.locator("p.flash").is_visible()
    page.goto("/ui/retention")
    assert page.locator("table tbody tr").count() == 1
    axe_clean(page)
    page.goto("/ui/custodians")
    axe_clean(page)


def test_compliance_searches_the_audit_and_opens_a_proof(open_as, client, login) -> None:
    no = new_archive(client, login("zhang.wei"))
    page = open_as("qian.audit", lang="en")
    page.goto("/ui/audit")
    page.get_by_role("button", name="Verify the whole log now").click()
    page.wait_for_url("**/ui/audit")
    assert page.locator("p.verified").is_visible()
    axe_clean(page)
    page.fill("#f-actor", "zhang.wei")
    page.get_by_role("button", name="Search", exact=True).click()
    page.wait_for_url("**/ui/audit?*actor=zhang.wei*")
    actors = page.locator("table.audit tbody tr td:nth-child(3)").all_inner_texts()
    assert actors and all(a.startswith("zhang.wei") for a in actors)
    page.fill("#f-actor", "")
    page.fill("#f-archive", no)
    page.get_by_role("button", name="Search", exact=True).click()
    page.wait_for_url(f"**/ui/audit?*archive={no}*")
    assert page.locator("table.audit tbody tr").count() >= 1
    axe_clean(page)
    shot(page, "audit-search")
    page.locator("table.audit tbody tr a").first.click()
    page.wait_for_url("**/ui/audit/*")
    assert page.get_by_role("heading", name="Inclusion proof").is_visible()
    assert no in page.content()
    axe_clean(page)


def test_administrator_adds_a_user_and_disables_one(open_as, client, login) -> None:
    page = open_as("admin", lang="en")
    page.goto("/ui/users")
    axe_clean(page)
    shot(page, "admin-users")
    page.get_by_role("link", name="Add a user").click()
    page.wait_for_url("**/ui/users/new")
    axe_clean(page)
    page.fill("#f-username", "xu.new")
    page.fill("#f-display_name", "许新")
    page.fill("#f-department", "销售一部")
    page.check("#r-salesperson")
    page.fill("#f-reason", "新入职销售")
    page.get_by_role("button", name="Add the user").click()
    assert page.locator("code[data-code]").is_visible()
    assert page.locator(".pending-roles").inner_text() == "Salesperson"
    axe_clean(page)
    page.goto("/ui/users")
    page.locator('tr[data-user="wang.fang"] form[action$="/disable"] button').click()
    page.wait_for_url("**/ui/users")
    assert "Disabled" in page.locator('tr[data-user="wang.fang"]').inner_text()
    page.goto("/ui/handover")
    axe_clean(page)
    users = client.get("/users?limit=200", headers=login("admin")).json()["items"]
    assert next(u for u in users if u["username"] == "wang.fang")["disabled"] is True
    assert next(u for u in users if u["username"] == "xu.new")["roles"] == []
