"""The administrator's pages: users, adding, disabling, roles, password resets, handover."""

from __future__ import annotations

import re

from tests.web.officer_setup import new_archive


def _user(client, login, name: str) -> dict:
    items = client.get("/users?limit=200", headers=login("admin")).json()["items"]
    return next(u for u in items if u["username"] == name)


def test_users_list(browser) -> None:
    page = browser("admin").get("/ui/users")
    assert page.status_code == 200, page.text
    assert 'data-user="zhang.wei"' in page.text and 'data-user="qian.audit"' in page.text
    assert "password_hash" not in page.text


def test_add_a_user_shows_the_code_once_and_files_the_content_role(browser, client, login) -> None:
    b = browser("admin")
    assert b.get("/ui/users/new").status_code == 200
    r = b.post(
        "/ui/users/new",
        {
            "username": "xu.new",
            "display_name": "许新",
            "department": "销售一部",
            "clearance": "internal",
            "roles": ["salesperson"],
            "reason": "新入职销售",
        },
    )
    assert r.status_code == 201, r.text
    code = re.search(r"<code data-code>([^<]+)</code>", r.text).group(1)
    assert len(code) >= 8 and "head.one" in r.text
    assert 'class="pending-roles"' in r.text
    user = _user(client, login, "xu.new")
    assert user["roles"] == []  # nothing is given until the supervisor signs
    queue = client.get("/requests?role=to_approve", headers=login("zhao.lei")).json()["items"]
    assert any(q["kind"] == "role" for q in queue)
    assert code not in b.get("/ui/users").text  # never shown again


def test_bad_new_user_input_is_a_422_form(browser, client, login) -> None:
    b = browser("admin")
    r = b.post("/ui/users/new", {"username": "Bad Name!", "roles": ["salesperson"]})
    assert r.status_code == 422 and 'role="alert"' in r.text
    r = b.post("/ui/users/new", {"username": "ok.name"})
    assert r.status_code == 422
    r = b.post("/ui/users/new", {"username": "ok.name", "roles": ["admin"], "clearance": "x"})
    assert r.status_code == 422
    names = [
        u["username"]
        for u in client.get("/users?limit=200", headers=login("admin")).json()["items"]
    ]
    assert "ok.name" not in names


def test_disable_a_user(browser, client, login) -> None:
    b = browser("admin")
    b.get("/ui/users")
    r = b.post("/ui/users/wang.fang/disable")
    assert r.status_code == 303 and r.headers["location"] == "/ui/users"
    assert _user(client, login, "wang.fang")["disabled"] is True


def test_a_custodian_is_not_disabled(browser, client, login) -> None:
    body_no = new_archive(
        client, login("zhang.wei"), classification="secret", custodian="chen.jing"
    )
    assert body_no
    r = browser("admin").post("/ui/users/chen.jing/disable")
    assert r.status_code == 409
    assert _user(client, login, "chen.jing")["disabled"] is False


def test_a_content_role_becomes_a_pending_role_request(browser, client, login) -> None:
    b = browser("admin")
    b.get("/ui/users")
    r = b.post("/ui/users/qian.audit/roles", {"roles": ["compliance", "salesperson"]})
    assert r.status_code == 200, r.text
    assert 'class="pending-roles"' in r.text and "/ui/requests/" in r.text
    assert _user(client, login, "qian.audit")["roles"] == ["compliance"]


def test_an_administrator_gives_themself_no_role(browser, client, login) -> None:
    b = browser("admin")
    b.get("/ui/users")
    r = b.post("/ui/users/admin/roles", {"roles": ["admin", "information_officer"]})
    assert r.status_code in (403, 422), r.status_code
    assert _user(client, login, "admin")["roles"] == ["admin"]
    queue = client.get("/requests?role=to_approve", headers=login("zhao.lei")).json()["items"]
    assert not any(q["kind"] == "role" for q in queue)


def test_password_reset_shows_the_code_and_the_holder(browser, client, login) -> None:
    b = browser("admin")
    b.get("/ui/users")
    r = b.post("/ui/users/li.na/password-reset")
    assert r.status_code == 201, r.text
    assert re.search(r"<code data-code>[^<]+</code>", r.text) and "head.one" in r.text
    assert "av_flash" not in r.headers.get("set-cookie", "")


def test_handover(browser, client, login) -> None:
    new_archive(client, login("zhang.wei"))
    b = browser("admin")
    assert b.get("/ui/handover").status_code == 200
    assert b.post("/ui/handover", {"leaver": ""}).status_code == 422
    r = b.post("/ui/handover", {"leaver": "zhang.wei", "to": "li.na", "reason": "离职"})
    assert r.status_code == 303, r.text
    mine = client.get("/requests?role=all&kind=handover", headers=login("zhao.lei")).json()
    assert mine["total"] == 1
    assert (
        browser("zhang.wei")
        .post("/ui/handover", {"leaver": "li.na", "to": "zhang.wei"})
        .status_code
        == 403
    )


def test_who_may_not_change_users(browser, client, login) -> None:
    for who in ("zhang.wei", "qian.audit", "zhao.lei"):
        b = browser(who)
        page = b.get("/ui/users")
        assert page.status_code == 403, who
        assert 'data-user="' not in page.text
        assert b.get("/ui/users/new").status_code == 403
        assert b.post("/ui/users/li.na/disable").status_code == 403
        assert b.post("/ui/users/li.na/roles", {"roles": ["admin"]}).status_code == 403
        assert b.post("/ui/users/li.na/password-reset").status_code == 403
        new = b.post("/ui/users/new", {"username": "x.y", "roles": ["admin"]})
        assert new.status_code == 403
    li = _user(client, login, "li.na")
    assert li["disabled"] is False and li["roles"] == ["salesperson"]
    names = [
        u["username"]
        for u in client.get("/users?limit=200", headers=login("admin")).json()["items"]
    ]
    assert "x.y" not in names


def test_admin_forms_need_the_csrf_token(browser, client, login) -> None:
    b = browser("admin")
    assert b.post("/ui/users/li.na/disable", csrf=False).status_code == 403
    assert (
        b.post("/ui/users/li.na/password-reset", {"csrf": "0" * 64}, csrf=False).status_code == 403
    )
    assert (
        b.post("/ui/users/new", {"username": "x.y", "roles": ["admin"]}, csrf=False).status_code
        == 403
    )
    assert (
        b.post("/ui/handover", {"leaver": "li.na", "to": "zhang.wei"}, csrf=False).status_code
        == 403
    )
    assert _user(client, login, "li.na")["disabled"] is False


def test_the_administrator_reads_no_archive_and_no_audit(browser, client, login) -> None:
    no = new_archive(client, login("zhang.wei"))
    b = browser("admin")
    for url in (
        "/ui/audit",
        f"/ui/audit?archive={no}",
        "/ui/register",
        "/ui/retention",
        "/ui/custodians",
    ):
        r = b.get(url)
        assert r.status_code == 403, (url, r.status_code)
        assert "王小明" not in r.text and "13800138000" not in r.text


def test_a_nul_in_a_form_field_is_a_422_naming_it_and_nothing_is_filed(
    browser, client, login
) -> None:
    """PostgreSQL cannot store NUL in text (SQLite can): the form refuses it, not the database."""
    b = browser("admin")
    for field in ("display_name", "department", "reason"):
        form = {"username": "xu.nul", "roles": ["salesperson"], field: "a\x00b"}
        r = b.post("/ui/users/new", form)
        assert r.status_code == 422 and f"{field}: contains a NUL" in r.text, (field, r.status_code)
    assert all(
        u["username"] != "xu.nul"
        for u in client.get("/users?limit=200", headers=login("admin")).json()["items"]
    )
    new_archive(client, login("zhang.wei"))
    r = b.post("/ui/handover", {"leaver": "zhang.wei", "to": "li.na", "reason": "离\x00职"})
    assert r.status_code == 422 and "reason: contains a NUL" in r.text
    mine = client.get("/requests?role=all&kind=handover", headers=login("zhao.lei")).json()
    assert mine["total"] == 0
