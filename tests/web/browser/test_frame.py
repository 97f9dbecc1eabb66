"""The frame of every page, in a real browser: sign-in, language, keyboard, axe-core."""

from __future__ import annotations

from tests.web.browser.conftest import axe_clean, shot


def test_sign_in_page_is_chinese_and_accessible(open_as) -> None:
    page = open_as()
    assert page.locator("html").get_attribute("lang") == "zh-CN"
    assert page.get_by_role("heading", name="登录").is_visible()
    axe_clean(page)
    shot(page, "login")


def test_sign_in_by_keyboard_alone(open_as) -> None:
    page = open_as()
    page.focus("#f-username")
    page.keyboard.type("zhang.wei")
    page.keyboard.press("Tab")
    page.keyboard.type("correct horse battery staple")
    page.keyboard.press("Enter")
    page.wait_for_url("**/ui")
    assert "zhang.wei" in page.content()
    axe_clean(page)


def test_language_switch_is_remembered_across_pages(open_as) -> None:
    page = open_as("zhang.wei")
    page.get_by_role("button", name="English").click()
    page.wait_for_load_state()
    assert page.locator("html").get_attribute("lang") == "en"
    page.goto("/ui/notifications")
    assert page.get_by_role("heading", name="Notifications").is_visible()
    axe_clean(page)
