"""Signing in and out through the pages: session cookies, CSRF, revocation, language."""

from __future__ import annotations

from tests.web.conftest import PASSWORD


def test_root_sends_a_stranger_to_the_sign_in_page(browser) -> None:
    b = browser()
    r = b.get("/")
    assert r.status_code == 303 and r.headers["location"] == "/login"
    r = b.get("/ui/notifications")
    assert r.status_code == 303 and r.headers["location"].startswith(
        "/login?next=/ui/notifications"
    )
    page = b.get("/login")
    assert page.status_code == 200
    assert '<html lang="zh-CN">' in page.text and "登录" in page.text


def test_sign_in_sets_a_strict_http_only_cookie(browser) -> None:
    b = browser()
    b.get("/login")
    r = b.post("/login", {"username": "zhang.wei", "password": PASSWORD})
    assert r.status_code == 303
    cookie = r.headers["set-cookie"]
    assert "av_session=" in cookie
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")
    home = b.get("/ui")
    assert home.status_code == 200 and "zhang.wei" in home.text
    assert home.headers["cache-control"] == "no-store"
    assert "frame-ancestors 'none'" in home.headers["content-security-policy"]


def test_wrong_password_is_refused_as_the_api_refuses_it(browser) -> None:
    b = browser()
    b.get("/login")
    r = b.post("/login", {"username": "zhang.wei", "password": "wrong password!"})
    assert r.status_code == 401
    assert "av_session" not in r.headers.get("set-cookie", "")


def test_a_form_without_csrf_is_refused(browser) -> None:
    b = browser()
    b.get("/login")
    r = b.post("/login", {"username": "zhang.wei", "password": PASSWORD}, csrf=False)
    assert r.status_code == 403
    signed = browser("zhang.wei")
    r = signed.post("/logout", csrf=False)
    assert r.status_code == 403
    r = signed.post("/logout", {"csrf": "0" * 64}, csrf=False)
    assert r.status_code == 403
    assert signed.get("/ui").status_code == 200  # still signed in


def test_logout_ends_the_session_for_good(browser) -> None:
    b = browser("zhang.wei")
    cookie = b.http.cookies.get("av_session")
    r = b.post("/logout")
    assert r.status_code == 303
    assert b.get("/ui").status_code == 303
    b.http.cookies.set("av_session", cookie)  # the old cookie replayed
    assert b.get("/ui").status_code == 303


def test_language_switch_is_remembered(browser) -> None:
    b = browser("zhang.wei")
    assert "退出" in b.get("/ui").text
    r = b.post("/lang", {"lang": "en", "next": "/ui"})
    assert r.status_code == 303 and r.headers["location"] == "/ui"
    page = b.get("/ui")
    assert '<html lang="en">' in page.text and "Sign out" in page.text


def test_disabling_the_user_ends_their_session(browser, client, login) -> None:
    b = browser("li.na")
    assert b.get("/ui").status_code == 200
    r = client.patch("/users/li.na", json={"disabled": True}, headers=login("admin"))
    assert r.status_code == 200, r.text
    assert b.get("/ui").status_code == 303


def test_a_password_change_ends_other_sessions(browser) -> None:
    first, second = browser("li.na"), browser("li.na")
    r = second.post(
        "/ui/password",
        {
            "current_password": PASSWORD,
            "new_password": "a brand new passphrase",
            "repeat_password": "a brand new passphrase",
        },
    )
    assert r.status_code == 303, r.text
    assert first.get("/ui").status_code == 303  # signed out
    assert second.get("/ui").status_code == 200  # the one that changed it goes on


def test_an_idle_session_ends(browser, clock) -> None:
    b = browser("li.na")
    clock.advance(minutes=31)
    assert b.get("/ui").status_code == 303


def test_a_session_ends_at_its_absolute_limit_even_when_used(browser, clock) -> None:
    b = browser("li.na")
    for _ in range(26):
        clock.advance(minutes=29)
        if b.get("/ui").status_code != 200:
            break
    assert clock.now and b.get("/ui").status_code == 303


def test_next_is_only_ever_a_path_on_this_site(browser) -> None:
    b = browser()
    b.get("/login")
    r = b.post("/login", {"username": "li.na", "password": PASSWORD, "next": "//evil.example/x"})
    assert r.status_code == 303 and r.headers["location"] == "/ui"


def test_an_api_route_still_answers_json(client) -> None:
    r = client.get("/customers/KH-2026-000001")
    assert r.status_code == 401 and r.headers["content-type"].startswith("application/problem+json")


def test_an_error_on_a_page_is_a_page(browser) -> None:
    b = browser("li.na")
    r = b.get("/ui/nonexistent-page")
    assert r.status_code == 404 and r.headers["content-type"].startswith("text/html")


def test_cookies_are_secure_when_served_over_tls(api_vault, clock) -> None:
    from api.app import create_app
    from tests.web.conftest import Browser

    api_vault.settings.web_secure_cookies = True
    b = Browser(create_app(vault=api_vault, clock=clock), base_url="https://testserver")
    b.get("/login")
    r = b.post("/login", {"username": "li.na", "password": PASSWORD})
    assert r.status_code == 303
    assert "; Secure" in r.headers["set-cookie"] or "; secure" in r.headers["set-cookie"]
    # __Host- names: a sibling host of the domain cannot set them for this one.
    assert r.headers["set-cookie"].startswith("__Host-av_session=")
    assert b.get("/ui").status_code == 200
    secret = b.http.cookies.get("__Host-av_session")
    assert secret
    # A session planted under the plain name (as a sibling host could) is not one.
    planted = Browser(create_app(vault=api_vault, clock=clock), base_url="https://testserver")
    planted.http.cookies.set("av_session", secret)
    assert planted.get("/ui").status_code == 303
    out = b.post("/logout")
    assert out.status_code == 303 and "__Host-av_session=" in out.headers["set-cookie"]
    assert b.get("/ui").status_code == 303


def test_the_form_and_the_api_share_one_failure_count(browser, client, api_vault) -> None:
    b = browser()
    b.get("/login")
    for _ in range(api_vault.settings.login_max_failures):
        assert (
            b.post("/login", {"username": "li.na", "password": "not the password"}).status_code
            == 401
        )
    # Locked now, through either door, even with the right password.
    r = client.post("/auth/token", data={"username": "li.na", "password": PASSWORD})
    assert r.status_code == 401
    assert b.post("/login", {"username": "li.na", "password": PASSWORD}).status_code == 401


def test_sign_in_and_out_are_audited(browser, client, login) -> None:
    b = browser("li.na")
    b.post("/logout")
    r = client.get("/audit", params={"actor": "li.na"}, headers=login("qian.audit"))
    assert r.status_code == 200, r.text
    actions = [e["action"] for e in r.json()["items"]]
    assert "auth:login" in actions and "auth:logout" in actions


def test_demo_accounts_are_listed_only_on_a_demo_vault(browser) -> None:
    page = browser().get("/login")
    assert "zhang.wei" not in page.text  # not a demo vault


def test_an_unexpected_error_on_a_page_is_a_page_without_details(
    api_vault, clock, monkeypatch
) -> None:
    from api.app import create_app
    from api.web import notices
    from tests.web.conftest import Browser

    def broken(*_a, **_k):
        raise RuntimeError("secret detail 4242")

    monkeypatch.setattr(notices.notifications, "page_for", broken)
    b = Browser(create_app(vault=api_vault, clock=clock))
    b.sign_in("li.na")
    r = b.get("/ui/notifications")
    assert r.status_code == 500 and r.headers["content-type"].startswith("text/html")
    assert "4242" not in r.text and "Something went wrong" in r.text


def test_a_demo_vault_lists_its_accounts_on_the_sign_in_page(api_vault, clock) -> None:
    from api.app import create_app
    from foundation.db import transaction
    from tests.web.conftest import Browser
    from vault.demo import mark_demo

    with transaction(api_vault.engine) as session:
        mark_demo(session, api_vault.keys)
    b = Browser(create_app(vault=api_vault, clock=clock))
    page = b.get("/login")
    assert page.status_code == 200
    assert "演示账户" in page.text and "zhang.wei" in page.text and "qian.audit" in page.text
    assert "correct horse" not in page.text  # names the accounts, never a password


def test_signing_in_as_someone_else_ends_the_earlier_session(browser, web_app) -> None:
    b = browser("li.na")
    old = b.http.cookies.get("av_session")
    b.sign_in("zhang.wei")
    from tests.web.conftest import Browser

    replay = Browser(web_app)
    replay.http.cookies.set("av_session", old)
    assert replay.get("/ui").status_code == 303  # li.na's session ended at the new sign-in


def test_a_browser_whose_session_was_revoked_signs_in_again(browser, client, login) -> None:
    """The session row is still open, but the password changed elsewhere: the browser is
    signed out, and its sign-in form (bound to the pre-session cookie) is accepted."""
    b = browser("li.na")
    r = client.post(
        "/auth/password",
        json={"current_password": PASSWORD, "new_password": "another long passphrase"},
        headers=login("li.na"),
    )
    assert r.status_code == 200, r.text
    assert b.get("/ui").status_code == 303
    b.get("/login")
    r = b.post("/login", {"username": "li.na", "password": "another long passphrase"})
    assert r.status_code == 303, r.text
    assert b.get("/ui").status_code == 200
