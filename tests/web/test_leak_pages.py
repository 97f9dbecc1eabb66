"""Leak reports through the pages: anyone files, the handlers act, compliance reads,
the reporter sees the state only, and nobody else learns anything."""

from __future__ import annotations

import re

UID = re.compile(r"/ui/leaks/(LK-[0-9A-F]{10})")


def _file(b, **extra) -> str:
    data = {"what_seen": "名单截图出现在群聊 canary-7731", "channel": "messaging"} | extra
    r = b.post("/ui/leaks/new", data)
    assert r.status_code == 303, r.text
    return UID.search(r.headers["location"]).group(1)


def test_a_salesperson_files_and_sees_only_the_state(browser) -> None:
    sales = browser("zhang.wei")
    assert sales.get("/ui/leaks/new").status_code == 200
    uid = _file(sales, noticed_at="2026-11-27T09:30", archives="KH-2026-000001")
    page = sales.get(f"/ui/leaks/{uid}")
    assert page.status_code == 200 and "canary-7731" not in page.text
    assert uid in sales.get("/ui/leaks").text


def test_the_handlers_see_and_move_it_compliance_only_reads(browser) -> None:
    uid = _file(browser("zhang.wei"))
    handler = browser("zhao.lei")
    page = handler.get(f"/ui/leaks/{uid}")
    assert "canary-7731" in page.text and 'action="/ui/leaks/' in page.text
    r = handler.post(f"/ui/leaks/{uid}/state", {"state": "investigating", "reason": "checking"})
    assert r.status_code == 303
    r = handler.post(f"/ui/leaks/{uid}/actions", {"action": "customers_told", "reason": "phoned"})
    assert r.status_code == 303
    review = browser("qian.audit")
    page = review.get(f"/ui/leaks/{uid}")
    assert "canary-7731" in page.text and f'action="/ui/leaks/{uid}/state"' not in page.text
    r = review.post(f"/ui/leaks/{uid}/state", {"state": "contained", "reason": "x"})
    assert r.status_code == 403
    assert "调查中" in browser("sun.li").get(f"/ui/leaks/{uid}").text


def test_strangers_learn_nothing(browser) -> None:
    uid = _file(browser("zhang.wei"))
    for who in ("li.na", "head.one", "chen.jing", "admin", "zhou.gm"):
        b = browser(who)
        assert b.get(f"/ui/leaks/{uid}").status_code == 404, who
        assert uid not in b.get("/ui/leaks").text
        r = b.post(f"/ui/leaks/{uid}/state", {"state": "investigating", "reason": "x"})
        assert r.status_code == 404, who


def test_bad_input_is_shown_on_the_form(browser) -> None:
    b = browser("zhang.wei")
    r = b.post("/ui/leaks/new", {"what_seen": ""})
    assert r.status_code == 422
    r = b.post("/ui/leaks/new", {"what_seen": "x", "archives": "not-a-number"})
    assert r.status_code == 422 and "archive number" in r.text
    r = b.post("/ui/leaks/new", {"what_seen": "x", "noticed_at": "yesterday"})
    assert r.status_code == 422
    r = b.post("/ui/leaks/new", {"what_seen": "x"}, csrf=False)
    assert r.status_code == 403
    assert b.get("/ui/leaks/LK-ZZ").status_code == 422
