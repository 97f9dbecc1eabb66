"""The information officer's pages: the loan register, archives past retention, custodians."""

from __future__ import annotations

from sqlmodel import select

from foundation.db import transaction
from tests.factories import archive
from tests.web.officer_setup import overdue_and_open, past_retention
from vault.models import Archive


def test_register_shows_overdue_first_and_returns_a_line(browser, client, login, clock) -> None:
    late, on_time = overdue_and_open(client, login, clock)
    b = browser("chen.jing")
    page = b.get("/ui/register")
    assert page.status_code == 200, page.text
    html = page.text
    assert html.index(late) < html.index(on_time)
    assert f'class="overdue" data-loan="{late}"' in html
    assert f'class="" data-loan="{on_time}"' in html
    assert "北京时间" in html
    r = b.post(f"/ui/register/{on_time}/return")
    assert r.status_code == 303 and r.headers["location"] == "/ui/register"
    state = {
        i["id"]: i["state"]
        for i in client.get("/loans", headers=login("chen.jing")).json()["items"]
    }
    assert state[on_time] == "returned" and state[late] == "overdue"


def test_the_supervisor_sees_the_register_but_registers_no_return(
    browser, client, login, clock
) -> None:
    late, _ = overdue_and_open(client, login, clock)
    b = browser("zhao.lei")
    page = b.get("/ui/register")
    assert page.status_code == 200 and late in page.text
    assert f"/ui/register/{late}/return" not in page.text
    r = b.post(f"/ui/register/{late}/return")
    assert r.status_code == 403
    state = {
        i["id"]: i["state"]
        for i in client.get("/loans", headers=login("chen.jing")).json()["items"]
    }
    assert state[late] == "overdue"


def test_a_salesperson_cannot_open_the_register(browser, client, login, clock) -> None:
    late, _ = overdue_and_open(client, login, clock)
    for who in ("wang.fang", "li.na", "admin"):
        b = browser(who)
        page = b.get("/ui/register")
        assert page.status_code == 403
        assert late not in page.text and "li.na" not in page.text.split("<main", 1)[1]
    # the borrower cannot return through the keepers' page either (her own is /ui/loans)
    assert browser("wang.fang").post(f"/ui/register/{late}/return").status_code == 403


def test_returning_needs_the_csrf_token(browser, client, login, clock) -> None:
    late, _ = overdue_and_open(client, login, clock)
    b = browser("chen.jing")
    assert b.post(f"/ui/register/{late}/return", csrf=False).status_code == 403
    assert b.post(f"/ui/register/{late}/return", {"csrf": "0" * 64}, csrf=False).status_code == 403
    state = {
        i["id"]: i["state"]
        for i in client.get("/loans", headers=login("chen.jing")).json()["items"]
    }
    assert state[late] == "overdue"
    assert browser().post(f"/ui/register/{late}/return").status_code in (303, 403)


def test_retention_lists_and_proposes_destruction(browser, client, login, clock) -> None:
    no = past_retention(client, login, clock)
    b = browser("chen.jing")
    page = b.get("/ui/retention")
    assert page.status_code == 200 and no in page.text
    assert 'data-marking="internal"' in page.text
    empty = b.post(f"/ui/retention/{no}/destroy", {"reason": "  "})
    assert empty.status_code == 422 and 'aria-invalid="true"' in empty.text
    # NUL: PostgreSQL cannot store it in text (SQLite can); refused by the form, not the database.
    nul = b.post(f"/ui/retention/{no}/destroy", {"reason": "保管\x00期满"})
    assert nul.status_code == 422 and "reason: contains a NUL" in nul.text
    r = b.post(f"/ui/retention/{no}/destroy", {"reason": "保管期满"})
    assert r.status_code == 303, r.text
    mine = client.get("/requests?role=mine", headers=login("chen.jing")).json()["items"]
    assert [(q["kind"], q["archives"], q["purpose"]) for q in mine] == [
        ("destroy", [no], "retention_expired")
    ]


def test_only_an_officer_proposes_destruction(browser, client, login, clock) -> None:
    no = past_retention(client, login, clock)
    for who in ("zhang.wei", "admin", "qian.audit"):
        r = browser(who).post(f"/ui/retention/{no}/destroy", {"reason": "销毁"})
        assert r.status_code == 403, (who, r.status_code)
    assert browser("admin").get("/ui/retention").status_code == 403
    assert (
        browser("chen.jing")
        .post(f"/ui/retention/{no}/destroy", {"reason": "x"}, csrf=False)
        .status_code
        == 403
    )
    assert (
        client.get("/requests?role=all&kind=destroy", headers=login("zhao.lei")).json()["total"]
        == 0
    )


def test_custodians_problems_first(browser, client, login) -> None:
    ok = client.post(
        "/customers",
        json={**_secret(), "custodian": "chen.jing"},
        headers=login("zhang.wei"),
    )
    assert ok.status_code == 201, ok.text
    broken_no = client.post(
        "/customers", json={**_secret(), "custodian": "chen.jing"}, headers=login("zhang.wei")
    ).json()["archive"]["archive_no"]
    with transaction(client.app.state.services.engine) as s:  # an old vault's archive
        row = s.exec(select(Archive).where(Archive.archive_no == broken_no)).one()
        row.custodian = None
        s.add(row)
    b = browser("chen.jing")
    page = b.get("/ui/custodians")
    assert page.status_code == 200, page.text
    html = page.text
    assert html.index(broken_no) < html.index(ok.json()["archive"]["archive_no"])
    assert 'data-marking="secret"' in html
    only = b.get("/ui/custodians?problems=true").text
    assert broken_no in only and ok.json()["archive"]["archive_no"] not in only
    for who in ("zhang.wei", "admin", "qian.audit"):
        refused = browser(who).get("/ui/custodians")
        assert refused.status_code == 403 and broken_no not in refused.text


def _secret() -> dict:
    body = archive(classification="secret")
    body.pop("owner", None)
    return body
