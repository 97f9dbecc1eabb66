"""A leak report in the browser: a salesperson files it, the supervisor takes it up."""

from __future__ import annotations

from tests.web.browser.conftest import axe_clean, shot


def test_a_report_reaches_the_supervisor_who_moves_it_on(open_as) -> None:
    page = open_as("zhang.wei")
    page.goto("/ui/leaks")
    axe_clean(page)
    page.get_by_role("link", name="报告泄密").click()
    page.get_by_label("所见情况").fill("客户名单的照片出现在外部群聊中")
    page.get_by_label("可疑渠道").select_option("messaging")
    axe_clean(page)
    shot(page, "leaks-new")
    page.get_by_role("button", name="提交报告").click()
    page.wait_for_url("**/ui/leaks/LK-*")
    uid = page.url.rsplit("/", 1)[1]
    assert "已报告" in page.content()
    axe_clean(page)

    handler = open_as("zhao.lei")
    handler.goto("/ui/notifications")
    assert uid in handler.content()
    handler.goto(f"/ui/leaks/{uid}")
    handler.get_by_label("新状态").select_option("investigating")
    handler.get_by_label("原因").fill("核对审计记录")
    handler.get_by_role("button", name="推进").click()
    handler.wait_for_url(f"**/ui/leaks/{uid}")
    assert "调查中" in handler.content()
    axe_clean(handler)
    shot(handler, "leaks-case")
