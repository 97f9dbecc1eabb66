"""A form never stores less than was typed without saying so.

``field_text(…, limit=N)`` cuts a field to N characters before the API's model
sees it, so a text the API refuses as too long (422) is stored cut short by the
page: an interaction record of 20,001+ characters loses its end, silently
(``client_records.add_interaction``; the leak form does the same with its
4,000-character texts, so ``policies.leaks``' own length check never fires).
"""

from __future__ import annotations

from tests.web.officer_setup import new_archive


def test_an_interaction_longer_than_the_api_allows_is_refused_not_cut(
    browser, client, login
) -> None:
    no = new_archive(client, login("zhang.wei"))
    b = browser("zhang.wei")
    b.get(f"/ui/clients/{no}/interactions")
    text = "回访记录" * 5_000 + "结论：客户不同意续约"  # 20,010 characters
    r = b.post(
        f"/ui/clients/{no}/interactions",
        {"occurred_on": "2026-01-05", "channel": "revisit", "text": text},
    )
    assert r.status_code == 422, "the page stored the record cut to 20,000 characters"
    api = client.post(
        f"/customers/{no}/interactions",
        json={"occurred_on": "2026-01-05", "channel": "revisit", "text": text},
        headers=login("zhang.wei"),
    )
    assert api.status_code == 422


def test_a_leak_report_longer_than_its_limit_is_refused_not_cut(browser) -> None:
    b = browser("li.na")
    b.get("/ui/leaks/new")
    r = b.post("/ui/leaks/new", {"what_seen": "x" * 4_000 + " and the rest"})
    assert r.status_code == 422, "the report was filed cut to 4,000 characters"
