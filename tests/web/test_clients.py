"""The salesperson's pages: list, search, profile by group, forms, records; and refusals."""

from __future__ import annotations

import re

from tests.auditlog import entries
from tests.factories import archive

MOBILE = "13800138000"
NAME = "王小明"


def _new(client, headers, **over) -> str:
    body = archive(**over)
    body.pop("owner", None)
    r = client.post("/customers", json=body, headers=headers)
    assert r.status_code == 201, r.text
    return r.json()["archive"]["archive_no"]


def _log(api_vault, archive_no: str, action: str | None = None):
    return [
        e
        for e in entries(api_vault.audit_log())
        if archive_no in e.archives and (action is None or e.action == action)
    ]


def _masked_cells(html: str) -> dict[str, str]:
    """The masked-name column of the client table, by archive number."""
    rows = re.findall(
        r'<a href="/ui/clients/(KH-[\d-]+)">[^<]*</a></td>\s*<td class="masked">([^<]*)</td>', html
    )
    return dict(rows)


def test_my_clients_lists_metadata_and_masked_names_only_with_filters(
    browser, client, login
) -> None:
    no = _new(client, login("zhang.wei"), grade="A", contacts=["li.na"])
    other = _new(client, login("zhang.wei"), grade="C", profile={"mobile_phone": MOBILE})
    mine_not = _new(client, login("wang.fang"), department="销售二部")
    page = browser("zhang.wei").get("/ui/clients")
    assert page.status_code == 200
    assert no in page.text and other in page.text and mine_not not in page.text
    assert MOBILE not in page.text and NAME not in page.text and "小明" not in page.text
    assert _masked_cells(page.text) == {no: "王**", other: "—"}
    assert "客户（脱敏姓名）" in page.text
    filtered = browser("zhang.wei").get("/ui/clients?grade=A")
    assert no in filtered.text and other not in filtered.text
    assert browser("zhang.wei").get("/ui/clients?grade=Z").status_code == 422
    assert browser("zhang.wei").get("/ui/clients?offset=-1").status_code == 422


def test_department_head_sees_the_department(browser, client, login) -> None:
    no = _new(client, login("zhang.wei"))
    theirs = _new(client, login("wang.fang"), department="销售二部")
    page = browser("head.one").get("/ui/clients")
    assert no in page.text and theirs not in page.text


def test_strangers_and_the_administrator_get_no_list(browser, client, login) -> None:
    _new(client, login("zhang.wei"))
    r = browser().get("/ui/clients")
    assert r.status_code == 303 and r.headers["location"].startswith("/login")
    assert browser("admin").get("/ui/clients").status_code == 403


def test_search_by_post_finds_the_client_and_is_audited(browser, client, login, api_vault) -> None:
    no = _new(client, login("zhang.wei"))
    b = browser("zhang.wei")
    assert b.get("/ui/search").status_code == 200
    r = b.post("/ui/search", {"by": "mobile", "value": MOBILE})
    assert r.status_code == 200 and no in r.text
    assert _masked_cells(r.text) == {no: "王**"} and NAME not in r.text
    searches = [e for e in entries(api_vault.audit_log()) if e.action == "archive:search"]
    assert searches and searches[-1].actor == "zhang.wei"
    assert MOBILE not in repr(searches[-1])
    other = browser("li.na").post("/ui/search", {"by": "mobile", "value": MOBILE})
    assert other.status_code == 200 and no not in other.text


def test_search_refuses_bad_input_and_missing_csrf(browser) -> None:
    b = browser("zhang.wei")
    b.get("/ui/search")
    assert b.post("/ui/search", {"by": "mobile", "value": ""}).status_code == 422
    assert b.post("/ui/search", {"by": "blood", "value": "x"}).status_code == 422
    assert b.post("/ui/search", {"by": "plate", "value": "x" * 30}).status_code == 422
    assert b.post("/ui/search", {"by": "mobile", "value": MOBILE}, csrf=False).status_code == 403
    assert browser("admin").post("/ui/search", {"by": "mobile", "value": MOBILE}).status_code == 403


def test_profile_shows_groups_and_one_open_is_one_audited_read(
    browser, client, login, api_vault
) -> None:
    secret = _new(client, login("zhang.wei"), classification="secret", custodian="chen.jing")
    b = browser("zhang.wei")
    marked = b.get(f"/ui/clients/{secret}")
    assert 'data-marking="secret"' in marked.text and "机密" in marked.text
    no = _new(client, login("zhang.wei"))
    landing = b.get(f"/ui/clients/{no}")
    assert landing.status_code == 200 and 'data-marking="internal"' in landing.text
    assert MOBILE not in landing.text and NAME not in landing.text
    assert 'name="group" value="contact"' in landing.text
    assert _log(api_vault, no, "archive:read") == []
    opened = b.get(f"/ui/clients/{no}?group=contact")
    assert opened.status_code == 200 and MOBILE in opened.text and NAME not in opened.text
    reads = _log(api_vault, no, "archive:read")
    assert len(reads) == 1
    assert reads[0].groups == ("contact",) and reads[0].actor == "zhang.wei"
    assert b.get(f"/ui/clients/{no}?group=nonsense").status_code == 422
    assert b.get(f"/ui/clients/{no}?group=Bad!").status_code == 422


def test_another_salesperson_is_refused_and_the_refusal_audited(
    browser, client, login, api_vault
) -> None:
    no = _new(client, login("zhang.wei"))
    r = browser("li.na").get(f"/ui/clients/{no}?group=contact")
    assert r.status_code == 403
    assert MOBILE not in r.text and NAME not in r.text
    assert f"/ui/requests/new?archives={no}&amp;kind=view" in r.text
    denied = [e for e in _log(api_vault, no, "archive:read") if e.outcome == "denied"]
    assert [e.actor for e in denied] == ["li.na"] and denied[0].groups == ("contact",)


def test_administrator_and_compliance_see_no_content(browser, client, login) -> None:
    no = _new(client, login("zhang.wei"))
    for user in ("admin", "qian.audit"):
        b = browser(user)
        for url in (
            f"/ui/clients/{no}?group=contact",
            f"/ui/clients/{no}?group=identity",
            f"/ui/clients/{no}/interactions",
            f"/ui/clients/{no}/attachments",
            f"/ui/clients/{no}/edit?group=contact",
        ):
            r = b.get(url)
            assert r.status_code == 403, (user, url)
            assert MOBILE not in r.text and NAME not in r.text
    assert browser("admin").get(f"/ui/clients/{no}").status_code == 403


def test_masked_group_is_shown_masked(browser, client, login) -> None:
    no = _new(client, login("zhang.wei"))
    r = browser("chen.jing").get(f"/ui/clients/{no}?group=contact")
    assert r.status_code == 200
    assert MOBILE not in r.text and 'class="masked"' in r.text and "138" in r.text


def _create_form(**over: str) -> dict[str, object]:
    data: dict[str, object] = {
        "category": "general",
        "grade": "B",
        "classification": "internal",
        "p.name": NAME,
        "p.mobile_phone": MOBILE,
        "consent.notice": "隐私告知书 v3",
        "consent.at": "2026-01-02T09:00",
        "consent.channel": "书面",
        "consent.groups": ["identity", "contact"],
    }
    data.update(over)
    return data


def test_create_through_the_form(browser, api_vault) -> None:
    b = browser("zhang.wei")
    form = b.get("/ui/clients/new")
    assert form.status_code == 200
    assert 'id="f-p.mobile_phone"' in form.text and 'name="consent.groups"' in form.text
    r = b.post("/ui/clients/new", _create_form())
    assert r.status_code == 303, r.text
    no = r.headers["location"].rsplit("/", 1)[1]
    assert re.fullmatch(r"KH-\d{4}-\d{6}", no)
    assert [e.action for e in _log(api_vault, no)] == ["archive:create"]
    assert MOBILE in b.get(f"/ui/clients/{no}?group=contact").text


def test_create_shows_the_services_problems_next_to_the_fields(browser, api_vault) -> None:
    b = browser("zhang.wei")
    b.get("/ui/clients/new")
    before = len(entries(api_vault.audit_log()))
    r = b.post("/ui/clients/new", _create_form(**{"p.mobile_phone": "12345"}))
    assert r.status_code == 422
    assert 'id="e-p.mobile_phone"' in r.text and "field &#39;mobile_phone&#39;" in r.text
    assert NAME in r.text  # the input is kept
    r = b.post("/ui/clients/new", _create_form(**{"consent.groups": ["identity"]}))
    assert r.status_code == 422 and 'id="e-consent.groups"' in r.text
    r = b.post("/ui/clients/new", _create_form(grade="Z"))
    assert r.status_code == 422 and 'id="e-grade"' in r.text
    assert b.post("/ui/clients/new", _create_form(), csrf=False).status_code == 403
    assert not [e for e in entries(api_vault.audit_log())[before:] if e.action == "archive:create"]


def test_edit_prefills_through_one_audited_read(browser, client, login, api_vault) -> None:
    no = _new(client, login("zhang.wei"))
    b = browser("zhang.wei")
    chooser = b.get(f"/ui/clients/{no}/edit")
    assert chooser.status_code == 200 and MOBILE not in chooser.text
    assert _log(api_vault, no, "archive:read") == []
    form = b.get(f"/ui/clients/{no}/edit?group=contact")
    assert form.status_code == 200 and f'value="{MOBILE}"' in form.text
    assert len(_log(api_vault, no, "archive:read")) == 1
    r = b.post(
        f"/ui/clients/{no}/edit",
        {"group": "contact", "had": "company,mobile_phone", "p.mobile_phone": "13900139000"},
    )
    assert r.status_code == 303, r.text
    body = client.get(f"/customers/{no}?groups=contact", headers=login("zhang.wei")).json()
    assert body["content"]["contact"] == {"mobile_phone": "13900139000"}
    bad = b.post(f"/ui/clients/{no}/edit", {"group": "contact", "p.mobile_phone": "1"})
    assert bad.status_code == 422 and 'id="e-p.mobile_phone"' in bad.text
    other = browser("li.na")
    other.get("/ui/clients")
    r = other.post(f"/ui/clients/{no}/edit", {"group": "contact", "p.mobile_phone": "13700137000"})
    assert r.status_code == 403
    r = b.post(f"/ui/clients/{no}/edit", {"group": "contact", "p.home_phone": "x"}, csrf=False)
    assert r.status_code == 403


def test_interactions_list_and_add(browser, client, login) -> None:
    no = _new(client, login("zhang.wei"))
    b = browser("zhang.wei")
    assert b.get(f"/ui/clients/{no}/interactions").status_code == 200
    r = b.post(
        f"/ui/clients/{no}/interactions",
        {"occurred_on": "2026-01-05", "channel": "revisit", "text": "回访：满意"},
    )
    assert r.status_code == 303, r.text
    assert "回访：满意" in b.get(f"/ui/clients/{no}/interactions").text
    bad = b.post(f"/ui/clients/{no}/interactions", {"occurred_on": "x", "channel": "call"})
    assert bad.status_code == 422 and 'id="e-occurred_on"' in bad.text
    nope = b.post(f"/ui/clients/{no}/interactions", {"channel": "call", "text": "x"}, csrf=False)
    assert nope.status_code == 403
    other = browser("li.na")
    r = other.get(f"/ui/clients/{no}/interactions")
    assert r.status_code == 403 and "回访" not in r.text
    r = other.post(
        f"/ui/clients/{no}/interactions",
        {"occurred_on": "2026-01-05", "channel": "call", "text": "forged"},
    )
    assert r.status_code == 403
    assert "forged" not in b.get(f"/ui/clients/{no}/interactions").text


def _upload(b, no: str, csrf: str | None, payload: bytes = b"%PDF-1.4 hello"):
    data = {"csrf": csrf} if csrf is not None else {}
    return b.http.post(
        f"/ui/clients/{no}/attachments",
        data=data,
        files={"file": ("合同.pdf", payload, "application/pdf")},
    )


def test_attachments_upload_and_download(browser, client, login, api_vault) -> None:
    no = _new(client, login("zhang.wei"))
    b = browser("zhang.wei")
    page = b.get(f"/ui/clients/{no}/attachments")
    assert page.status_code == 200 and 'enctype="multipart/form-data"' in page.text
    assert page.text.index('name="csrf"', page.text.index("enctype")) < page.text.index(
        'name="file"'
    )
    r = _upload(b, no, b.csrf)
    assert r.status_code == 303, r.text
    listed = client.get(f"/customers/{no}/attachments", headers=login("zhang.wei")).json()
    assert len(listed) == 1
    uid = listed[0]["uid"]
    assert uid in b.get(f"/ui/clients/{no}/attachments").text
    got = b.get(f"/ui/clients/{no}/attachments/{uid}")
    assert got.status_code == 200 and got.content == b"%PDF-1.4 hello"
    assert got.headers["content-disposition"].startswith("attachment;")
    reads = _log(api_vault, no, "archive:attachment-read")
    assert [e.actor for e in reads] == ["zhang.wei"]
    assert browser("li.na").get(f"/ui/clients/{no}/attachments/{uid}").status_code == 403


def test_an_upload_without_a_valid_csrf_stores_nothing(browser, client, login) -> None:
    no = _new(client, login("zhang.wei"))
    b = browser("zhang.wei")
    b.get(f"/ui/clients/{no}/attachments")
    assert _upload(b, no, None).status_code == 403
    assert _upload(b, no, "0" * 64).status_code == 403
    other = browser("li.na")
    other.get("/ui/clients")
    assert _upload(other, no, other.csrf).status_code == 403
    assert client.get(f"/customers/{no}/attachments", headers=login("zhang.wei")).json() == []
