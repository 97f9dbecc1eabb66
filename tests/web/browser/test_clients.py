"""The salesperson's main flow in Chromium: find a client, open a group, file an archive."""

from __future__ import annotations

from tests.factories import archive
from tests.web.browser.conftest import axe_clean, shot

MOBILE = "13800138000"


def _field(page, key: str):
    return page.locator(f'[id="f-{key}"]')


def test_zhang_wei_finds_a_client_and_opens_the_contact_group(open_as, client, login) -> None:
    body = archive()
    body.pop("owner")
    r = client.post("/customers", json=body, headers=login("zhang.wei"))
    assert r.status_code == 201, r.text
    no = r.json()["archive"]["archive_no"]
    page = open_as("zhang.wei")

    page.get_by_role("link", name="我的客户").first.click()
    page.wait_for_url("**/ui/clients")
    assert page.get_by_role("link", name=no).is_visible()
    assert MOBILE not in page.content()
    axe_clean(page)
    shot(page, "clients-list")

    page.goto("/ui/search")
    page.select_option("#f-by", "mobile")
    page.fill("#f-value", MOBILE)
    page.get_by_role("button", name="查找", exact=True).click()
    assert "/ui/search" in page.url and MOBILE not in page.url
    assert page.get_by_role("link", name=no).is_visible()
    axe_clean(page)
    shot(page, "clients-search")

    page.get_by_role("link", name=no).click()
    page.wait_for_url(f"**/ui/clients/{no}")
    assert page.locator(".marking").get_attribute("data-marking") == "internal"
    assert MOBILE not in page.content()
    axe_clean(page)
    page.get_by_role("button", name="打开 联系方式").click()
    page.wait_for_url(f"**/ui/clients/{no}?group=contact")
    assert page.get_by_text(MOBILE).is_visible()
    axe_clean(page)
    shot(page, "clients-profile")

    for sub in ("interactions", "attachments", "edit", "edit?group=contact"):
        page.goto(f"/ui/clients/{no}/{sub}")
        axe_clean(page)

    page.goto(f"/ui/clients/{no}/attachments")
    page.set_input_files(
        "#f-file",
        files=[{"name": "合同.pdf", "mimeType": "application/pdf", "buffer": b"%PDF-1.4 x"}],
    )
    page.get_by_role("button", name="上传").click()
    page.wait_for_url(f"**/ui/clients/{no}/attachments")
    assert page.locator(".flash").is_visible()
    assert page.get_by_role("link", name="下载").count() == 1


def test_zhang_wei_files_an_archive_through_the_form(open_as) -> None:
    page = open_as("zhang.wei")
    page.goto("/ui/clients/new")
    axe_clean(page)
    page.select_option("#f-grade", "B")
    _field(page, "p.name").fill("王小明")
    _field(page, "p.mobile_phone").fill("12345")
    _field(page, "consent.notice").fill("隐私告知书 v3")
    _field(page, "consent.at").fill("2026-01-02T09:00")
    _field(page, "consent.channel").fill("书面")
    _field(page, "consent.groups-identity").check()
    _field(page, "consent.groups-contact").check()
    page.get_by_role("button", name="保存").click()
    error = page.locator('[id="e-p.mobile_phone"]')
    assert error.is_visible() and "mobile_phone" in error.inner_text()
    assert _field(page, "p.name").input_value() == "王小明"  # the input is kept
    assert _field(page, "p.mobile_phone").get_attribute("aria-invalid") == "true"
    axe_clean(page)
    shot(page, "clients-form-error")

    _field(page, "p.mobile_phone").fill(MOBILE)
    page.get_by_role("button", name="保存").click()
    page.wait_for_url("**/ui/clients/KH-*")
    assert page.locator(".flash").is_visible()
    axe_clean(page)
